//! Stage-in throughput: a large file fetched over HTTP from a local server into a task's
//! workspace through the built-in `filer-http` plugin, next to plain copies of the same
//! bytes from the same server in the same run.
//!
//! ```sh
//! CARGO_TARGET_DIR=… bash builtin-plugins/build.sh          # builtin-plugins/dist/filer-http.wasm
//! cargo run --release -p tessera-plugin-runtime --example filer_bench [-- MIB [ROUNDS]]
//! ```
//!
//! Defaults: 1024 MiB, 3 rounds. Each round, in turn:
//! - `socket`: a plain read of the socket (`GET`, then `read` into a 1 MiB buffer and
//!   `write` to the file): the most the machine does for this transfer;
//! - `hyper`: the host's own HTTP client (hyper 1 with the settings the host sends a
//!   plugin's requests with), each frame written to the file;
//! - `filer-http`: `FilerPlugin::stage_in` (the plugin GETs with wasi:http and splices the
//!   body into `workspace.open-write`, host-side, in `chunk-bytes` steps).
//!
//! Every variant writes the whole file (in a temporary directory, under `FILER_BENCH_DIR`
//! when set, e.g. `/dev/shm` to leave the disk out; removed after each run), so all pay
//! the same cost there; the order of the variants turns from round to round. The server sends from one 1 MiB
//! buffer over loopback. Figures are MB/s (10^6 bytes per second); the ratio is filer-http
//! over the best plain copy, by the median of the rounds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use tessera_plugin_runtime::{
    FileKind, FilerWorkspace, Manifest, PluginConfig, PluginRuntime, RuntimeConfig,
};
use tessera_plugin_runtime::{FilerPlugin, Grants};

const BUF: usize = 1 << 20;

/// Serves `GET /<n>` with `n` bytes (a repeating pattern), one connection per request.
fn serve() -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?.to_string();
    std::thread::spawn(move || {
        let pattern: Vec<u8> = (0..BUF).map(|i| (i * 31 % 251) as u8).collect();
        for stream in listener.incoming().flatten() {
            let pattern = pattern.clone();
            std::thread::spawn(move || {
                let _ = answer(stream, &pattern);
            });
        }
    });
    Ok(addr)
}

fn answer(stream: TcpStream, pattern: &[u8]) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let n: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.trim_start_matches('/').parse().ok())
        .unwrap_or(0);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
    }
    let mut w = stream;
    write!(
        w,
        "HTTP/1.1 200 OK\r\ncontent-length: {n}\r\ncontent-type: application/octet-stream\r\nconnection: close\r\n\r\n"
    )?;
    let mut left = n;
    while left > 0 {
        let k = left.min(pattern.len() as u64) as usize;
        w.write_all(&pattern[..k])?;
        left -= k as u64;
    }
    w.flush()
}

/// GET over a plain socket, the body written to `dest` as it comes.
fn socket_copy(addr: &str, n: u64, dest: &Path) -> std::io::Result<u64> {
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "GET /{n} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )?;
    let mut file = std::fs::File::create(dest)?;
    let mut buf = vec![0u8; BUF];
    // The head, then the rest of what came with it.
    let mut have = 0;
    let body_start = loop {
        let k = s.read(&mut buf[have..])?;
        if k == 0 {
            return Err(std::io::Error::other("closed in the head"));
        }
        have += k;
        if let Some(i) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    file.write_all(&buf[body_start..have])?;
    let mut total = (have - body_start) as u64;
    loop {
        let k = s.read(&mut buf)?;
        if k == 0 {
            break;
        }
        file.write_all(&buf[..k])?;
        total += k as u64;
    }
    Ok(total)
}

/// GET with hyper (HTTP/1.1 over a tokio TCP stream), every frame written to `dest`.
fn hyper_copy(
    rt: &tokio::runtime::Runtime,
    addr: &str,
    n: u64,
    dest: &Path,
) -> Result<u64, String> {
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            // As the host's client for plugins (outgoing.rs).
            .max_buf_size(1 << 20)
            .handshake(wasmtime_wasi_http::io::TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = http::Request::get(format!("/{n}"))
            .header("host", addr)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let mut body = sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?
            .into_body();
        let mut file = std::fs::File::create(dest).map_err(|e| e.to_string())?;
        let mut total = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Some(data) = frame.data_ref() {
                file.write_all(data).map_err(|e| e.to_string())?;
                total += data.len() as u64;
            }
        }
        Ok(total)
    })
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().map_or(Ok(1024), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(3), |a| a.parse())?;
    let n = mib << 20;

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let wasm = root.join("builtin-plugins/dist/filer-http.wasm");
    let bytes = std::fs::read(&wasm).map_err(|e| {
        format!(
            "{}: {e} (run `bash builtin-plugins/build.sh`)",
            wasm.display()
        )
    })?;
    let mut manifest: Manifest = toml::from_str(&std::fs::read_to_string(
        root.join("builtin-plugins/filer-http/manifest.toml"),
    )?)?;
    manifest.limits.timeout = Some(Duration::from_secs(600));
    let chunk = std::env::var("FILER_BENCH_CHUNK").unwrap_or_else(|_| (1u64 << 20).to_string());

    let addr = serve()?;
    let runtime = PluginRuntime::new(RuntimeConfig::default())?;
    let filer = runtime.load::<FilerPlugin>(
        manifest,
        &bytes,
        Grants {
            config: PluginConfig::new().value("chunk-bytes", &chunk),
            allowed_hosts: vec![addr.clone()],
            object_store: None,
            buckets: Vec::new(),
        },
    )?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let tmp = match std::env::var_os("FILER_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let dir = tmp.path().join("in");
    std::fs::create_dir_all(&dir)?;
    let ws = FilerWorkspace::new().mount("/data/in", &dir)?;
    let url = format!("http://{addr}/{n}");

    println!(
        "stage-in of {mib} MiB over loopback HTTP, {rounds} rounds (chunk-bytes {chunk}); MB/s:"
    );
    // [socket, hyper, filer-http]
    let mut results: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..rounds {
        // A different order each round, so none always runs first.
        for k in 0..3 {
            let which = (round + k) % 3;
            let dest = dir.join("big.bin");
            let t = Instant::now();
            let got = match which {
                0 => socket_copy(&addr, n, &dest)?,
                1 => hyper_copy(&tokio, &addr, n, &dest)?,
                _ => {
                    let staged = filer.stage_in(&ws, &url, "/data/in/big.bin", FileKind::File)?;
                    staged.first().map_or(0, |s| s.size)
                }
            };
            let d = t.elapsed();
            assert_eq!(got, n, "variant {which}");
            assert_eq!(std::fs::metadata(&dest)?.len(), n);
            std::fs::remove_file(&dest)?;
            results[which].push(mbps(n, d));
        }
        println!(
            "  round {}: socket {:8.0}  hyper {:8.0}  filer-http {:8.0}",
            round + 1,
            results[0][round],
            results[1][round],
            results[2][round]
        );
    }
    let [socket, hyper, filer_http] = results;
    let (s, h, f) = (median(socket), median(hyper), median(filer_http));
    println!("median:   socket {s:8.0}  hyper {h:8.0}  filer-http {f:8.0}");
    println!(
        "filer-http / socket = {:.0}%, filer-http / hyper = {:.0}%",
        100.0 * f / s,
        100.0 * f / h
    );
    let m = filer.metrics().snapshot();
    println!("plugin calls {}, errors {}", m.calls, m.errors);
    Ok(())
}
