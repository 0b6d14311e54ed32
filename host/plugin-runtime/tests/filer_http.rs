//! The built-in HTTP filer (builtin-plugins/dist/filer-http.wasm, built by `bash
//! builtin-plugins/build.sh`; skipped when missing) against a local HTTP server: stage-in by GET
//! into a mounted path, stage-out by PUT (files and directories), status mapping, and
//! the grants.

mod common;

use std::path::Path;
use std::time::Duration;

use common::files::FileServer;
use common::server::{Reply, Server};
use common::*;
use tessera_plugin_runtime::Grants;
use tessera_plugin_runtime::{
    CallError, Capability, FileKind, FilerPlugin, FilerWorkspace, LoadError, Manifest,
    PluginConfig, PluginError, PluginRuntime, StagedFile, World,
};

/// The manifest the host installs it with, with a test-sized timeout.
fn http_manifest() -> Manifest {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../builtin-plugins/filer-http/manifest.toml"
    ))
    .unwrap();
    let mut m: Manifest = toml::from_str(&text).unwrap();
    assert_eq!(
        (m.name.as_str(), m.version.as_str()),
        ("filer-http", "0.1.0")
    );
    assert_eq!(m.world, World::Filer);
    assert_eq!(
        m.capabilities,
        [Capability::Config, Capability::Http, Capability::Workspace]
    );
    assert_eq!(m.limits.timeout, Some(Duration::from_secs(600)));
    assert_eq!(m.limits.memory_bytes, Some(32 << 20));
    m.limits.timeout = Some(Duration::from_secs(20));
    m
}

fn filer(rt: &PluginRuntime, config: PluginConfig, hosts: &[&str]) -> Option<FilerPlugin> {
    let bytes = built_plugin("filer-http")?;
    let hosts = hosts.iter().map(|h| h.to_string()).collect();
    Some(
        rt.load::<FilerPlugin>(
            http_manifest(),
            &bytes,
            Grants {
                config,
                allowed_hosts: hosts,
                object_store: None,
                buckets: Vec::new(),
            },
        )
        .unwrap(),
    )
}

/// `/data/in` and `/data/out` mounted from `root/in` and `root/out`.
fn workspace(root: &Path) -> FilerWorkspace {
    for d in ["in", "out"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    FilerWorkspace::new()
        .with_task("t-1")
        .mount("/data/in", root.join("in"))
        .unwrap()
        .mount("/data/out", root.join("out"))
        .unwrap()
}

/// `n` bytes that are not all alike.
fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[2] ^ seed)
        .collect()
}

fn staged(url: &str, path: &str, size: u64) -> StagedFile {
    StagedFile {
        url: url.into(),
        path: path.into(),
        size,
    }
}

fn plugin_error(r: Result<Vec<StagedFile>, CallError>) -> PluginError {
    match r {
        Err(CallError::Plugin(e)) => e,
        other => panic!("not a plugin error: {other:?}"),
    }
}

#[test]
fn stage_in_gets_a_file_into_a_mounted_path() {
    let server = FileServer::start();
    let body = bytes(3 << 20 | 12345, 1);
    server.put_file("/files/data.bin", body.clone());
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace(tmp.path());
    // Small steps, to go through many of them.
    let config = PluginConfig::new().value("chunk-bytes", "65536");
    let Some(p) = filer(&rt, config, &[&server.authority()]) else {
        return;
    };
    // An empty file is a file too. (Captured too: the host's log call sites get
    // registered while a capture is on, perhaps by another test's thread, which tracing
    // then leaves disabled; the next capture rebuilds that, so the one below sees them.)
    server.put_file("/files/empty", Vec::new());
    let (r, _) = logged(|| {
        p.stage_in(
            &ws,
            &server.url("/files/empty"),
            "/data/in/empty",
            FileKind::File,
        )
    });
    assert_eq!(
        r,
        Ok(vec![staged(
            &server.url("/files/empty"),
            "/data/in/empty",
            0
        )])
    );
    assert_eq!(std::fs::read(tmp.path().join("in/empty")).unwrap(), b"");

    let url = server.url("/files/data.bin?token=abc");
    let (r, logs) = logged(|| p.stage_in(&ws, &url, "/data/in/sub/data.bin", FileKind::File));
    assert_eq!(
        r,
        Ok(vec![staged(
            &url,
            "/data/in/sub/data.bin",
            body.len() as u64
        )])
    );
    assert!(std::fs::read(tmp.path().join("in/sub/data.bin")).unwrap() == body);
    let got = server.requests();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].method, "GET");
    assert_eq!(got[1].path, "/files/data.bin?token=abc");
    assert_eq!(
        got[1].header("user-agent"),
        Some("tessera-filer-http/0.1.0")
    );
    assert!(logs.contains("staged in http://"), "{logs}");
    assert!(logs.contains("task=\"t-1\""), "{logs}");
    assert!(!logs.contains("token=abc"), "{logs}");
}

#[test]
fn stage_in_follows_redirects() {
    let server = FileServer::start();
    server.put_file("/files/new.txt", b"moved here".to_vec());
    server.answer("/old.txt", 302, Some("/files/new.txt"));
    server.answer("/loop", 307, Some("/loop"));
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace(tmp.path());
    let config = PluginConfig::new().value("max-redirects", "3");
    let Some(p) = filer(&rt, config, &[&server.authority()]) else {
        return;
    };
    let url = server.url("/old.txt");
    assert_eq!(
        p.stage_in(&ws, &url, "/data/in/x.txt", FileKind::File),
        Ok(vec![staged(&url, "/data/in/x.txt", 10)])
    );
    assert_eq!(
        std::fs::read(tmp.path().join("in/x.txt")).unwrap(),
        b"moved here"
    );
    match plugin_error(p.stage_in(&ws, &server.url("/loop"), "/data/in/l", FileKind::File)) {
        PluginError::InvalidInput(m) => assert!(m.contains("answered 307"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.requests().len(), 2 + 4);
}

#[test]
fn stage_out_puts_a_file_with_content_length() {
    let server = FileServer::start();
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace(tmp.path());
    let body = bytes(5 << 20 | 777, 2);
    std::fs::write(tmp.path().join("out/result.bin"), &body).unwrap();
    let Some(p) = filer(&rt, PluginConfig::new(), &[&server.authority()]) else {
        return;
    };
    let url = server.url("/up/result.bin");
    assert_eq!(
        p.stage_out(&ws, "/data/out/result.bin", &url, FileKind::File),
        Ok(vec![staged(
            &url,
            "/data/out/result.bin",
            body.len() as u64
        )])
    );
    let got = server.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "PUT");
    assert_eq!(
        got[0].header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(got[0].header("transfer-encoding"), None);
    assert!(server.file("/up/result.bin").unwrap() == body);

    // A directory given as a FILE, and a file given as a DIRECTORY, are refused.
    std::fs::create_dir_all(tmp.path().join("out/d")).unwrap();
    assert!(matches!(
        plugin_error(p.stage_out(&ws, "/data/out/d", &url, FileKind::File)),
        PluginError::InvalidInput(_)
    ));
    assert!(matches!(
        plugin_error(p.stage_out(&ws, "/data/out/result.bin", &url, FileKind::Directory)),
        PluginError::InvalidInput(_)
    ));
    match plugin_error(p.stage_out(&ws, "/data/out/missing", &url, FileKind::File)) {
        PluginError::NotFound(m) => assert!(m.contains("/data/out/missing"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn stage_out_of_a_directory_puts_every_file() {
    let server = FileServer::start();
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace(tmp.path());
    let dir = tmp.path().join("out/results");
    std::fs::create_dir_all(dir.join("sub dir")).unwrap();
    std::fs::write(dir.join("a.txt"), b"alpha").unwrap();
    std::fs::write(dir.join("sub dir/b#1.csv"), b"b,c\n1,2\n").unwrap();
    std::fs::write(dir.join("sub dir/empty"), b"").unwrap();
    let Some(p) = filer(&rt, PluginConfig::new(), &[&server.authority()]) else {
        return;
    };
    let base = server.url("/up/run-1/");
    let r = p.stage_out(&ws, "/data/out/results", &base, FileKind::Directory);
    let u = |rel: &str| server.url(&format!("/up/run-1/{rel}"));
    assert_eq!(
        r,
        Ok(vec![
            staged(&u("a.txt"), "/data/out/results/a.txt", 5),
            staged(
                &u("sub%20dir/b%231.csv"),
                "/data/out/results/sub dir/b#1.csv",
                8
            ),
            staged(&u("sub%20dir/empty"), "/data/out/results/sub dir/empty", 0),
        ])
    );
    assert_eq!(server.file("/up/run-1/a.txt").unwrap(), b"alpha");
    assert_eq!(
        server.file("/up/run-1/sub%20dir/b%231.csv").unwrap(),
        b"b,c\n1,2\n"
    );
    assert_eq!(server.file("/up/run-1/sub%20dir/empty").unwrap(), b"");
}

#[test]
fn statuses_map_to_typed_errors() {
    let server = FileServer::start();
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace(tmp.path());
    std::fs::write(tmp.path().join("out/f"), b"x").unwrap();
    let Some(p) = filer(&rt, PluginConfig::new(), &[&server.authority()]) else {
        return;
    };
    let a = server.authority();
    for (status, want) in [
        (404, "not-found"),
        (410, "not-found"),
        (401, "denied"),
        (403, "denied"),
        (500, "unavailable"),
        (503, "unavailable"),
        (429, "unavailable"),
        (400, "invalid-input"),
    ] {
        let path = format!("/s{status}");
        server.answer(&path, status, None);
        let url = server.url(&format!("{path}?sig=secret-token"));
        for (method, r) in [
            ("GET", p.stage_in(&ws, &url, "/data/in/f", FileKind::File)),
            ("PUT", p.stage_out(&ws, "/data/out/f", &url, FileKind::File)),
        ] {
            let e = plugin_error(r);
            let text = tessera_plugin_runtime::DisplayPluginError(&e).to_string();
            assert!(text.starts_with(&format!("{want}: ")), "{status}: {text}");
            assert!(
                text.contains(&format!("{method} http://{a} answered {status}")),
                "{text}"
            );
            assert!(
                text.contains(&format!("answer {status} for this")),
                "{text}"
            );
            assert!(
                !text.contains("secret-token") && !text.contains("/s"),
                "{text}"
            );
        }
    }
    // Plain HTTP cannot list a directory.
    match plugin_error(p.stage_in(&ws, &server.url("/d/"), "/data/in/d", FileKind::Directory)) {
        PluginError::InvalidInput(m) => assert!(m.contains("no directory listing"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Nothing outside the mounts, even after a successful GET.
    server.put_file("/ok", b"ok".to_vec());
    assert!(matches!(
        plugin_error(p.stage_in(&ws, &server.url("/ok"), "/etc/cron.d/x", FileKind::File)),
        PluginError::Denied(_)
    ));
}

#[test]
fn a_host_the_binding_does_not_allow_is_denied() {
    let server = FileServer::start();
    server.put_file("/f", b"x".to_vec());
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace(tmp.path());
    let Some(p) = filer(&rt, PluginConfig::new(), &["files.example.com"]) else {
        return;
    };
    match plugin_error(p.stage_in(&ws, &server.url("/f"), "/data/in/f", FileKind::File)) {
        PluginError::Denied(m) => assert!(m.contains("does not allow"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.connections(), 0);
    assert!(!tmp.path().join("in/f").exists());
}

#[test]
fn the_wrong_grant_is_refused_at_load() {
    let Some(bytes) = built_plugin("filer-http") else {
        return;
    };
    let rt = runtime();
    for missing in [Capability::Workspace, Capability::Http] {
        let mut m = http_manifest();
        m.capabilities.retain(|c| *c != missing);
        match rt.load::<FilerPlugin>(
            m,
            &bytes,
            Grants {
                config: PluginConfig::new(),
                allowed_hosts: vec![],
                object_store: None,
                buckets: vec![],
            },
        ) {
            Err(LoadError::World(msg)) => {
                assert!(msg.contains(&format!("`{missing}`")), "{msg}")
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("loaded without {missing}"),
        }
    }
    // Allowed hosts that are not hosts.
    assert!(matches!(
        rt.load::<FilerPlugin>(
            http_manifest(),
            &bytes,
            Grants {
                config: PluginConfig::new(),
                allowed_hosts: vec!["http://x/".into()],
                object_store: None,
                buckets: vec![]
            }
        ),
        Err(LoadError::Settings(_))
    ));
}

#[test]
fn a_server_that_does_not_answer_ends_at_the_deadline() {
    let server = Server::start(Reply::Hang);
    let rt = runtime();
    let Some(bytes) = built_plugin("filer-http") else {
        return;
    };
    let mut m = http_manifest();
    m.limits.timeout = Some(Duration::from_millis(300));
    let p = rt
        .load::<FilerPlugin>(
            m,
            &bytes,
            Grants {
                config: PluginConfig::new(),
                allowed_hosts: vec![server.authority()],
                object_store: None,
                buckets: vec![],
            },
        )
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace(tmp.path());
    let start = std::time::Instant::now();
    let url = format!("http://{}/slow", server.authority());
    let r = p.stage_in(&ws, &url, "/data/in/slow", FileKind::File);
    assert!(
        matches!(
            r,
            Err(CallError::Timeout) | Err(CallError::Plugin(PluginError::Unavailable(_)))
        ),
        "{r:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}
