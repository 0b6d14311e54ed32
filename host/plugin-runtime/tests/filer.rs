//! Filers against test components (tests/components/filer-*.wat): the task's workspace
//! as mounts (paths outside refused, symbolic links never followed), the object store
//! behind its trait and bucket grants, grants checked at load, and deadlines.

mod common;

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tessera_objstore::{ObjectError, ObjectInfo, ObjectRead, ObjectStore, ObjectUpload};
use tessera_plugin_runtime::{
    CallError, Capability, Contract, ErrorKind, FileKind, FilerPlugin, FilerWorkspace, LoadError,
    Manifest, PluginConfig, PluginError, PluginRuntime, StagedFile, UrlInfo, World,
};

use Capability::{ObjectStore as Objects, Workspace};
use tessera_plugin_runtime::Grants;

const SECOND: Duration = Duration::from_secs(1);

fn filer_manifest(name: &str, caps: &[Capability], timeout: Duration) -> Manifest {
    let mut m = Manifest::new(name, "1.0.0", World::Filer);
    m.capabilities = caps.to_vec();
    m.limits.timeout = Some(timeout);
    m
}

fn load(
    rt: &PluginRuntime,
    component_name: &str,
    m: Manifest,
    store: Option<Arc<dyn ObjectStore>>,
    buckets: &[&str],
) -> Result<FilerPlugin, LoadError> {
    let buckets = buckets.iter().map(|b| b.to_string()).collect();
    rt.load::<FilerPlugin>(
        m,
        &component(component_name),
        Grants {
            config: PluginConfig::new(),
            allowed_hosts: Vec::new(),
            object_store: store,
            buckets,
        },
    )
}

fn probe(rt: &PluginRuntime) -> FilerPlugin {
    load(
        rt,
        "filer-probe",
        filer_manifest("probe", &[Workspace], SECOND),
        None,
        &[],
    )
    .unwrap()
}

/// A task workspace with `/data/in` and `/data/out` mounted from `root/in` and
/// `root/out`.
fn workspace(root: &Path) -> FilerWorkspace {
    for d in ["in", "out"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    FilerWorkspace::new()
        .with_task("t-9")
        .mount("/data/in", root.join("in"))
        .unwrap()
        .mount("/data/out", root.join("out"))
        .unwrap()
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
fn stage_in_writes_into_a_mounted_path() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace(tmp.path());
    let p = probe(&rt);
    let (r, logs) =
        logged(|| p.stage_in(&ws, "hello filer", "/data/in/sub/dir/x.txt", FileKind::File));
    assert_eq!(
        r,
        Ok(vec![staged("hello filer", "/data/in/sub/dir/x.txt", 11)])
    );
    // Parent directories were made inside the mount.
    assert_eq!(
        std::fs::read(tmp.path().join("in/sub/dir/x.txt")).unwrap(),
        b"hello filer"
    );
    // Replacing a file writes a new one.
    let r = p.stage_in(&ws, "2nd", "/data/in/sub/dir/x.txt", FileKind::File);
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(
        std::fs::read(tmp.path().join("in/sub/dir/x.txt")).unwrap(),
        b"2nd"
    );
    assert!(!logs.contains(tmp.path().to_str().unwrap()), "{logs}");
    let m = p.metrics().snapshot();
    assert_eq!((m.calls, m.errors), (2, 0));
    assert_eq!(p.manifest().world, World::Filer);
}

#[test]
fn stage_out_reads_files_and_walks_directories() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace(tmp.path());
    let out = tmp.path().join("out");
    std::fs::create_dir_all(out.join("res/deep")).unwrap();
    std::fs::write(out.join("res/a.txt"), b"alpha").unwrap();
    std::fs::write(out.join("res/deep/b.bin"), vec![7u8; 5000]).unwrap();
    std::fs::write(out.join("empty"), b"").unwrap();
    let p = probe(&rt);

    let r = p.stage_out(&ws, "/data/out/res/a.txt", "ignored://", FileKind::File);
    assert_eq!(r, Ok(vec![staged("alpha", "/data/out/res/a.txt", 5)]));
    let r = p.stage_out(&ws, "/data/out/empty", "ignored://", FileKind::File);
    assert_eq!(r, Ok(vec![staged("", "/data/out/empty", 0)]));
    let r = p.stage_out(&ws, "/data/out/res", "ignored://", FileKind::Directory);
    assert_eq!(
        r,
        Ok(vec![
            staged("a.txt", "/data/out/res", 5),
            staged("deep/b.bin", "/data/out/res", 5000),
        ])
    );
    // A walk of a file is that file, with an empty relative path (its size, for
    // content-length).
    let r = p.stage_out(
        &ws,
        "/data/out/res/a.txt",
        "ignored://",
        FileKind::Directory,
    );
    assert_eq!(r, Ok(vec![staged("", "/data/out/res/a.txt", 5)]));
    match plugin_error(p.stage_out(&ws, "/data/out/nope", "x://", FileKind::File)) {
        PluginError::NotFound(m) => assert_eq!(m, "`/data/out/nope` does not exist"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_path_outside_the_mounts_is_refused() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace(tmp.path());
    let p = probe(&rt);
    for path in ["/etc/passwd", "/data/input/x", "/data", "/"] {
        match plugin_error(p.stage_in(&ws, "x", path, FileKind::File)) {
            PluginError::Denied(m) => assert!(m.contains("outside the task's workspace"), "{m}"),
            other => panic!("{path}: {other:?}"),
        }
        match plugin_error(p.stage_out(&ws, path, "x://", FileKind::Directory)) {
            PluginError::Denied(m) => assert!(m.contains("outside the task's workspace"), "{m}"),
            other => panic!("{path}: {other:?}"),
        }
    }
    for path in [
        "/data/in/../../escape",
        "/data/in/a/../../../x",
        "data/in/x",
    ] {
        match plugin_error(p.stage_in(&ws, "x", path, FileKind::File)) {
            PluginError::InvalidInput(m) => assert!(m.contains(path), "{m}"),
            other => panic!("{path}: {other:?}"),
        }
    }
    assert!(!tmp.path().join("escape").exists());
    // The mount itself is a directory, not a file to write.
    assert!(matches!(
        plugin_error(p.stage_in(&ws, "x", "/data/in", FileKind::File)),
        PluginError::InvalidInput(_)
    ));
    // No mounts at all: everything is outside.
    assert!(matches!(
        plugin_error(p.stage_in(&FilerWorkspace::new(), "x", "/data/in/a", FileKind::File)),
        PluginError::Denied(_)
    ));
}

#[test]
fn a_symlink_in_the_workspace_pointing_outside_is_not_followed() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace(tmp.path());
    let outside = tmp.path().join("host-secrets");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("key"), b"s3cret").unwrap();
    // What a task's container could plant in its output directory.
    let out = tmp.path().join("out");
    std::os::unix::fs::symlink(&outside, out.join("dir-link")).unwrap();
    std::os::unix::fs::symlink(outside.join("key"), out.join("key-link")).unwrap();
    std::os::unix::fs::symlink("/etc", out.join("etc")).unwrap();
    std::fs::write(out.join("real.txt"), b"real").unwrap();
    let p = probe(&rt);

    for path in [
        "/data/out/key-link",
        "/data/out/dir-link/key",
        "/data/out/etc/passwd",
    ] {
        match plugin_error(p.stage_out(&ws, path, "x://", FileKind::File)) {
            PluginError::Denied(m) => assert!(m.contains("symbolic link"), "{path}: {m}"),
            other => panic!("{path}: {other:?}"),
        }
    }
    // Writing through a linked directory is refused; nothing lands outside.
    match plugin_error(p.stage_in(&ws, "pwned", "/data/out/dir-link/new", FileKind::File)) {
        PluginError::Denied(m) => assert!(m.contains("symbolic link"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(!outside.join("new").exists());
    // Writing at a link's own path replaces the link; its target keeps its bytes.
    assert!(
        p.stage_in(&ws, "mine", "/data/out/key-link", FileKind::File)
            .is_ok()
    );
    assert_eq!(std::fs::read(outside.join("key")).unwrap(), b"s3cret");
    // A walk lists regular files only, and does not descend into linked directories.
    let r = p.stage_out(&ws, "/data/out", "x://", FileKind::Directory);
    assert_eq!(
        r,
        Ok(vec![
            staged("key-link", "/data/out", 4),
            staged("real.txt", "/data/out", 4),
        ])
    );
    assert!(matches!(
        plugin_error(p.stage_out(&ws, "/data/out/dir-link", "x://", FileKind::Directory)),
        PluginError::Denied(_)
    ));
}

#[test]
fn the_wrong_grant_is_refused_at_load() {
    let rt = runtime();
    // Imports the workspace, not granted.
    match load(
        &rt,
        "filer-probe",
        filer_manifest("p", &[], SECOND),
        None,
        &[],
    ) {
        Err(LoadError::World(m)) => assert!(
            m.contains("tessera:plugin/workspace@0.1.0")
                && m.contains("needs the `workspace` capability"),
            "{m}"
        ),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("loaded"),
    }
    // Imports the object store; only the workspace is granted.
    match load(
        &rt,
        "filer-store",
        filer_manifest("s", &[Workspace], SECOND),
        None,
        &[],
    ) {
        Err(LoadError::World(m)) => assert!(m.contains("tessera:plugin/object-store"), "{m}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("loaded"),
    }
    // A notifier manifest for a filer component.
    let mut m = filer_manifest("p", &[Workspace], SECOND);
    m.world = World::Notifier;
    m.capabilities = vec![];
    assert!(matches!(
        load(&rt, "filer-probe", m, None, &[]),
        Err(LoadError::Manifest(_))
    ));
    // A bucket that is not a name.
    assert!(matches!(
        load(
            &rt,
            "filer-store",
            filer_manifest("s", &[Objects], SECOND),
            None,
            &["a/b"]
        ),
        Err(LoadError::Settings(_))
    ));
}

#[test]
fn a_filer_that_loops_times_out() {
    let rt = runtime();
    // No grants at all: the stream types `filing` uses are linked anyway.
    let p = load(
        &rt,
        "filer-spin",
        filer_manifest("spin", &[], Duration::from_millis(30)),
        None,
        &[],
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace(tmp.path());
    let start = Instant::now();
    assert_eq!(
        p.stage_in(&ws, "http://x/", "/data/in/a", FileKind::File),
        Err(CallError::Timeout)
    );
    assert_eq!(
        p.stage_out(&ws, "/data/out/a", "http://x/", FileKind::File),
        Err(CallError::Timeout)
    );
    assert!(start.elapsed() < 2 * SECOND, "{:?}", start.elapsed());
    assert_eq!(p.metrics().snapshot().errors_of(ErrorKind::Timeout), 2);
}

/// An object store in memory, optionally slow.
#[derive(Default)]
struct MemStore {
    objects: Mutex<BTreeMap<(String, String), Vec<u8>>>,
    delay: Option<Duration>,
}

struct MemUpload {
    store: Arc<MemStore>,
    at: (String, String),
    bytes: Vec<u8>,
}

impl Write for MemUpload {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ObjectUpload for MemUpload {
    fn finish(self: Box<Self>) -> Result<u64, ObjectError> {
        let n = self.bytes.len() as u64;
        self.store
            .objects
            .lock()
            .unwrap()
            .insert(self.at, self.bytes);
        Ok(n)
    }
}

/// The store behind an `Arc`, so uploads can reach it.
struct Shared(Arc<MemStore>);

impl ObjectStore for Shared {
    fn head(&self, bucket: &str, key: &str, _: Instant) -> Result<ObjectInfo, ObjectError> {
        if let Some(d) = self.0.delay {
            std::thread::sleep(d);
        }
        let objects = self.0.objects.lock().unwrap();
        let o = objects
            .get(&(bucket.into(), key.into()))
            .ok_or(ObjectError::NotFound)?;
        Ok(ObjectInfo {
            key: key.into(),
            size: o.len() as u64,
            meta: Default::default(),
            etag: None,
            modified_ms: None,
            sha256: None,
        })
    }

    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
        _: Instant,
    ) -> Result<Vec<ObjectInfo>, ObjectError> {
        let objects = self.0.objects.lock().unwrap();
        Ok(objects
            .iter()
            .filter(|((b, k), _)| {
                b == bucket && k.starts_with(prefix) && after.is_none_or(|a| k.as_str() > a)
            })
            .take(limit as usize)
            .map(|((_, k), o)| ObjectInfo {
                key: k.clone(),
                size: o.len() as u64,
                meta: Default::default(),
                etag: None,
                modified_ms: Some(1_700_000_000_000 + o.len() as u64),
                sha256: None,
            })
            .collect())
    }

    fn get(&self, bucket: &str, key: &str, _: Instant) -> Result<ObjectRead, ObjectError> {
        let objects = self.0.objects.lock().unwrap();
        let o = objects
            .get(&(bucket.into(), key.into()))
            .ok_or(ObjectError::NotFound)?;
        Ok(ObjectRead {
            info: ObjectInfo {
                key: key.into(),
                size: o.len() as u64,
                meta: Default::default(),
                etag: None,
                modified_ms: None,
                sha256: None,
            },
            body: Box::new(Cursor::new(o.clone())),
        })
    }

    fn put(
        &self,
        bucket: &str,
        key: &str,
        _size: u64,
        _: &tessera_objstore::ObjectMeta,
        _: Instant,
    ) -> Result<Box<dyn ObjectUpload>, ObjectError> {
        if bucket == "read-only" {
            return Err(ObjectError::Denied("the bucket is read-only".into()));
        }
        Ok(Box::new(MemUpload {
            store: self.0.clone(),
            at: (bucket.into(), key.into()),
            bytes: Vec::new(),
        }))
    }

    fn describe(&self) -> String {
        "in memory".into()
    }

    fn delete(&self, bucket: &str, key: &str, _: Instant) -> Result<(), ObjectError> {
        let mut objects = self.0.objects.lock().unwrap();
        objects
            .remove(&(bucket.into(), key.into()))
            .map(|_| ())
            .ok_or(ObjectError::NotFound)
    }

    fn buckets(&self, _: Instant) -> Result<Vec<String>, ObjectError> {
        let objects = self.0.objects.lock().unwrap();
        let mut b: Vec<String> = objects.keys().map(|(b, _)| b.clone()).collect();
        b.dedup();
        Ok(b)
    }
}

#[test]
fn without_an_object_store_calls_are_unavailable() {
    let rt = runtime();
    let p = load(
        &rt,
        "filer-store",
        filer_manifest("s", &[Objects], SECOND),
        None,
        &["data"],
    )
    .unwrap();
    let ws = FilerWorkspace::new();
    for r in [
        p.stage_in(&ws, "data", "k", FileKind::File),
        p.stage_out(&ws, "k", "data", FileKind::File),
    ] {
        assert_eq!(
            plugin_error(r),
            PluginError::Unavailable("no object store is configured".into())
        );
    }
}

#[test]
fn object_store_calls_reach_only_granted_buckets() {
    let rt = runtime();
    let mem = Arc::new(MemStore::default());
    mem.objects
        .lock()
        .unwrap()
        .insert(("data".into(), "in/a.txt".into()), b"object bytes".to_vec());
    mem.objects
        .lock()
        .unwrap()
        .insert(("other".into(), "x".into()), b"not yours".to_vec());
    let store: Arc<dyn ObjectStore> = Arc::new(Shared(mem.clone()));
    let p = load(
        &rt,
        "filer-store",
        filer_manifest("s", &[Objects], SECOND),
        Some(store),
        &["data", "read-only"],
    )
    .unwrap();
    assert_eq!(p.buckets(), ["data", "read-only"]);
    let ws = FilerWorkspace::new();

    // head
    assert_eq!(
        p.stage_in(&ws, "data", "in/a.txt", FileKind::File),
        Ok(vec![staged("in/a.txt", "in/a.txt", 12)])
    );
    assert_eq!(
        plugin_error(p.stage_in(&ws, "data", "missing", FileKind::File)),
        PluginError::NotFound("not-found".into())
    );
    match plugin_error(p.stage_in(&ws, "other", "x", FileKind::File)) {
        PluginError::Denied(m) => assert!(m.contains("does not grant bucket `other`"), "{m}"),
        other => panic!("{other:?}"),
    }
    // get, streamed
    assert_eq!(
        p.stage_out(&ws, "in/a.txt", "data", FileKind::File),
        Ok(vec![staged("object bytes", "in/a.txt", 12)])
    );
    assert!(matches!(
        plugin_error(p.stage_out(&ws, "x", "other", FileKind::File)),
        PluginError::Denied(_)
    ));
    // put, then read back
    assert_eq!(
        p.stage_in(&ws, "data", "out/new.txt", FileKind::Directory),
        Ok(vec![staged("out/new.txt", "out/new.txt", 11)])
    );
    assert_eq!(
        mem.objects.lock().unwrap()[&("data".to_string(), "out/new.txt".to_string())],
        b"out/new.txt"
    );
    assert_eq!(
        plugin_error(p.stage_in(&ws, "read-only", "k", FileKind::Directory)),
        PluginError::Denied("the bucket is read-only".into())
    );
}

#[test]
fn a_store_that_does_not_answer_ends_the_call_at_its_deadline() {
    let rt = runtime();
    let mem = Arc::new(MemStore {
        delay: Some(Duration::from_secs(3)),
        ..MemStore::default()
    });
    let store: Arc<dyn ObjectStore> = Arc::new(Shared(mem));
    let p = load(
        &rt,
        "filer-store",
        filer_manifest("s", &[Objects], Duration::from_millis(100)),
        Some(store),
        &["*"],
    )
    .unwrap();
    let start = Instant::now();
    assert_eq!(
        p.stage_in(&FilerWorkspace::new(), "any", "k", FileKind::File),
        Err(CallError::Timeout)
    );
    assert!(start.elapsed() < SECOND, "{:?}", start.elapsed());
}

/// `stat` (tessera:plugin@0.2.0) through the built-in S3 filer: an object, a prefix as a
/// directory (sizes summed), nothing; and a 0.1.0 filer, which has no `stat`, is told so
/// without being called.
#[test]
fn stat_says_what_a_url_holds_and_a_0_1_filer_has_none() {
    let rt = runtime();
    let v0_1 = probe(&rt);
    assert_eq!(v0_1.contract(), Contract::V0_1);
    assert!(matches!(
        v0_1.stat("probe://x"),
        Err(CallError::Unsupported(m)) if m.contains("tessera:plugin@0.1.0")
    ));
    assert_eq!(v0_1.metrics().snapshot().calls, 0);

    let Some(bytes) = built_plugin("filer-s3") else {
        return;
    };
    let mem = Arc::new(MemStore::default());
    for (key, body) in [
        ("runs/r1/a.txt", &b"12345"[..]),
        ("runs/r1/sub/b.txt", b"123"),
        ("runs/r10/c.txt", b"1"),
    ] {
        mem.objects
            .lock()
            .unwrap()
            .insert(("data".into(), key.into()), body.to_vec());
    }
    let store: Arc<dyn ObjectStore> = Arc::new(Shared(mem));
    let p = rt
        .load::<FilerPlugin>(
            filer_manifest(
                "filer-s3",
                &[Capability::Config, Workspace, Objects],
                SECOND,
            ),
            &bytes,
            Grants {
                config: PluginConfig::new(),
                allowed_hosts: Vec::new(),
                object_store: Some(store),
                buckets: vec!["data".into()],
            },
        )
        .unwrap();
    assert_eq!(p.contract(), Contract::V0_2);
    assert_eq!(
        p.stat("s3://data/runs/r1/a.txt"),
        Ok(UrlInfo {
            kind: FileKind::File,
            size: 5,
            modified_ms: None,
        })
    );
    // A prefix is a directory: `runs/r1/` and not `runs/r10/`.
    assert_eq!(
        p.stat("s3://data/runs/r1"),
        Ok(UrlInfo {
            kind: FileKind::Directory,
            size: 8,
            modified_ms: Some(1_700_000_000_005),
        })
    );
    assert!(matches!(
        p.stat("s3://data/runs/r2"),
        Err(CallError::Plugin(PluginError::NotFound(_)))
    ));
    assert!(matches!(
        p.stat("s3://elsewhere/x"),
        Err(CallError::Plugin(PluginError::Denied(_)))
    ));
}
