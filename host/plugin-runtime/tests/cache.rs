//! The compile cache: a restart does not recompile, and nothing the host did not write
//! itself is ever loaded.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use tessera_plugin_runtime::{
    CacheStats, Decision, Origin, PluginConfig, PluginRuntime, RuntimeConfig,
};
use tessera_plugin_runtime::{Grants, RouterPlugin};

fn runtime_at(dir: &Path) -> PluginRuntime {
    PluginRuntime::new(RuntimeConfig {
        cache_dir: Some(dir.to_path_buf()),
        max_instances: 16,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

fn entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    v.sort();
    v
}

fn routes(rt: &PluginRuntime) -> Origin {
    let p = rt
        .load::<RouterPlugin>(
            manifest("first-fit"),
            &component("first-fit"),
            Grants::config(PluginConfig::new()),
        )
        .unwrap();
    assert_eq!(p.route(&request(1, 2)).unwrap(), vec![Decision::Assign(0)]);
    p.info().origin
}

#[test]
fn the_second_load_does_not_recompile() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path());
    assert_eq!(routes(&rt), Origin::Compiled);
    assert_eq!(
        rt.cache_stats(),
        CacheStats {
            compiled: 1,
            ..CacheStats::default()
        }
    );
    assert_eq!(entries(dir.path()).len(), 1);

    // Same process, same bytes.
    assert_eq!(routes(&rt), Origin::Cached);
    assert_eq!(
        rt.cache_stats(),
        CacheStats {
            compiled: 1,
            hits: 1,
            ..CacheStats::default()
        }
    );

    // A restart: a new runtime (new engine) on the same directory.
    drop(rt);
    let rt = runtime_at(dir.path());
    assert_eq!(routes(&rt), Origin::Cached);
    assert_eq!(
        rt.cache_stats(),
        CacheStats {
            hits: 1,
            ..CacheStats::default()
        }
    );

    // The cache directory and key are private.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir.path()), 0o700);
    assert_eq!(mode(&dir.path().join("cache-key")), 0o600);
    assert_eq!(mode(&entries(dir.path())[0]), 0o600);
}

#[test]
fn a_tampered_entry_is_rejected_and_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path());
    assert_eq!(routes(&rt), Origin::Compiled);
    let entry = entries(dir.path()).remove(0);

    // Flip one byte in the middle of the machine code.
    let mut bytes = fs::read(&entry).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&entry, &bytes).unwrap();
    let rt = runtime_at(dir.path());
    assert_eq!(routes(&rt), Origin::Compiled);
    assert_eq!(
        rt.cache_stats(),
        CacheStats {
            compiled: 1,
            rejected: 1,
            ..CacheStats::default()
        }
    );
    // The entry was rewritten, and is good again.
    let rt = runtime_at(dir.path());
    assert_eq!(routes(&rt), Origin::Cached);
}

#[test]
fn an_artifact_from_elsewhere_is_rejected() {
    // Another installation (another key) compiled the same component: its entry has the
    // right name and a well-formed artifact, but this installation did not write it.
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    routes(&runtime_at(ours.path()));
    routes(&runtime_at(theirs.path()));
    let (a, b) = (
        entries(ours.path()).remove(0),
        entries(theirs.path()).remove(0),
    );
    assert_eq!(a.file_name(), b.file_name());
    fs::copy(&b, &a).unwrap();
    let rt = runtime_at(ours.path());
    assert_eq!(routes(&rt), Origin::Compiled);
    assert_eq!(rt.cache_stats().rejected, 1);

    // Truncated to nothing, or replaced by garbage: rejected as well.
    for junk in [&b""[..], &b"TSPCWv1\0 but then nothing sensible"[..]] {
        fs::write(&a, junk).unwrap();
        let rt = runtime_at(ours.path());
        assert_eq!(routes(&rt), Origin::Compiled);
        assert_eq!(rt.cache_stats().rejected, 1);
    }
}

#[test]
fn different_bytes_are_different_entries() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path());
    routes(&rt);
    rt.load::<RouterPlugin>(
        manifest("short"),
        &component("short"),
        Grants::config(PluginConfig::new()),
    )
    .unwrap();
    assert_eq!(entries(dir.path()).len(), 2);
    assert_eq!(rt.cache_stats().compiled, 2);
}

#[test]
fn a_cache_that_cannot_be_written_still_loads() {
    // Learn the entry's name, then block it with a directory in a fresh cache.
    let probe = tempfile::tempdir().unwrap();
    routes(&runtime_at(probe.path()));
    let name = entries(probe.path()).remove(0);
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join(name.file_name().unwrap());
    fs::create_dir(&blocker).unwrap();
    fs::write(blocker.join("x"), b"x").unwrap();

    let rt = runtime_at(dir.path());
    assert_eq!(routes(&rt), Origin::Compiled);
    assert_eq!(routes(&rt), Origin::Compiled);
    let stats = rt.cache_stats();
    assert_eq!(
        (stats.compiled, stats.write_errors, stats.hits),
        (2, 2, 0),
        "{stats:?}"
    );
}
