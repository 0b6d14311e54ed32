//! Stage-in throughput from a real S3 store: one large object (1 GiB by default) copied
//! into a task's workspace through the built-in `filer-s3` plugin, next to plain copies
//! of the same bytes from the same server in the same run.
//!
//! ```sh
//! eval "$(bash scripts/garage.sh)"                  # a local Garage, TESSERA_TEST_S3_*
//! bash builtin-plugins/build.sh                             # builtin-plugins/dist/filer-s3.wasm
//! cargo run --release -p tessera-s3 --example filer_s3_bench [-- MIB [ROUNDS]]
//! ```
//!
//! Defaults: 1024 MiB, 3 rounds. Each round, in turn:
//! - `plain GET`: a presigned URL fetched with a bare HTTP/1.1 GET over a `TcpStream`,
//!   read into a 1 MiB buffer and written to the file (no SDK): the floor for this store
//!   on this machine;
//! - `client`: the host's S3 client ([`BlockingS3::get`]) copied to the file;
//! - `filer-s3`: `FilerPlugin::stage_in` with the host's object store behind the
//!   plugin's `object-store` capability (the [`BlockingS3`] itself), exactly as the server
//!   links it: the plugin heads the object, opens it and the workspace file, and splices
//!   one stream into the other host-side in `chunk-bytes` steps.
//!
//! Every variant writes the whole file (in a temporary directory, under
//! `FILER_BENCH_DIR` when set, e.g. `/dev/shm` to leave the disk out), and the order of
//! the variants turns from round to round. Figures are MB/s (10^6 bytes per second);
//! ratios are by the median of the rounds.

mod common;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::presigning::PresigningConfig;
use common::{MIB, Pseudorandom, median, plain_get, s3_from_env};
use tessera_plugin_runtime::{FileKind, FilerWorkspace, Manifest, PluginConfig, PluginRuntime};
use tessera_plugin_runtime::{FilerPlugin, Grants};
use tessera_s3::{BlockingS3, S3Client};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().map_or(Ok(1024), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(3), |a| a.parse())?;
    let size = mib * MIB;
    let (config, bucket) = s3_from_env()?;
    let key = format!("filer-s3-bench/{}-{mib}MiB.bin", std::process::id());

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let wasm = root.join("builtin-plugins/dist/filer-s3.wasm");
    let component = std::fs::read(&wasm).map_err(|e| {
        format!(
            "{}: {e} (run `bash builtin-plugins/build.sh`)",
            wasm.display()
        )
    })?;
    let manifest: Manifest = toml::from_str(&std::fs::read_to_string(
        root.join("builtin-plugins/filer-s3/manifest.toml"),
    )?)?;
    let chunk = std::env::var("FILER_BENCH_CHUNK").unwrap_or_else(|_| MIB.to_string());

    // As the server: a multi-thread runtime for the S3 client, plugin calls on plain
    // (blocking) threads.
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let store = S3Client::new(config)?;
    let blocking = BlockingS3::new(store.clone(), tokio.handle().clone())?;
    let runtime = PluginRuntime::new(Default::default())?;
    let filer = runtime.load::<FilerPlugin>(
        manifest,
        &component,
        Grants {
            config: PluginConfig::new().value("chunk-bytes", &chunk),
            allowed_hosts: Vec::new(),
            object_store: Some(Arc::new(blocking.clone())),
            buckets: vec![bucket.clone()],
        },
    )?;

    let stored = blocking.put(&bucket, &key, size, Pseudorandom::new(size))?;
    assert_eq!(stored, size);
    let presigned = tokio.block_on(async {
        let presigning =
            PresigningConfig::expires_in(Duration::from_secs(3600)).map_err(|e| e.to_string())?;
        store
            .sdk_client()
            .get_object()
            .bucket(&bucket)
            .key(&key)
            .presigned(presigning)
            .await
            .map_err(|e| e.to_string())
    })?;
    let url = format!("s3://{bucket}/{key}");

    let tmp = match std::env::var_os("FILER_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let dir = tmp.path().join("in");
    std::fs::create_dir_all(&dir)?;
    let ws = FilerWorkspace::new().mount("/data/in", &dir)?;
    let dest = dir.join("big.bin");

    println!(
        "stage-in of a {mib} MiB object from S3 (Garage on loopback), {rounds} rounds \
         (chunk-bytes {chunk}); MB/s:"
    );
    // [plain GET, client, filer-s3]
    let mut results: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..rounds {
        for k in 0..3 {
            let which = (round + k) % 3;
            let t = Instant::now();
            let got = match which {
                0 => plain_get(presigned.uri(), &mut std::fs::File::create(&dest)?)?,
                1 => {
                    let mut reader = blocking.get(&bucket, &key)?;
                    io::copy(&mut reader, &mut std::fs::File::create(&dest)?)?
                }
                _ => {
                    let staged = filer.stage_in(&ws, &url, "/data/in/big.bin", FileKind::File)?;
                    staged.first().map_or(0, |s| s.size)
                }
            };
            let d = t.elapsed();
            assert_eq!(got, size, "variant {which}");
            assert_eq!(std::fs::metadata(&dest)?.len(), size);
            std::fs::remove_file(&dest)?;
            results[which].push(size as f64 / d.as_secs_f64() / 1e6);
        }
        println!(
            "  round {}: plain GET {:6.0}  client {:6.0}  filer-s3 {:6.0}",
            round + 1,
            results[0][round],
            results[1][round],
            results[2][round]
        );
    }
    blocking.delete(&bucket, &key)?;
    let [plain, client, filer_s3] = results;
    let (p, c, f) = (median(plain), median(client), median(filer_s3));
    println!("median:   plain GET {p:6.0}  client {c:6.0}  filer-s3 {f:6.0}");
    println!(
        "filer-s3 / plain GET = {:.0}%, filer-s3 / client = {:.0}%",
        100.0 * f / p,
        100.0 * f / c
    );
    let m = filer.metrics().snapshot();
    println!("plugin calls {}, errors {}", m.calls, m.errors);
    Ok(())
}
