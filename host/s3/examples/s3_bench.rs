//! Throughput of the client against a real store: puts one object (1 GiB by default),
//! then reads it back three ways in the same run and prints MB/s for each:
//!
//! - `client Read`: [`BlockingS3::get`], the blocking `std::io::Read` adapter
//!   (what a host call uses);
//! - `SDK stream`: the same SDK's raw byte stream, polled on the runtime (no adapter);
//! - `plain HTTP`: a presigned URL fetched with a bare HTTP/1.1 GET over a `TcpStream`
//!   (no SDK at all), the floor for this store on this machine.
//!
//! For writes it prints the client's `put` (multipart above 64 MiB) next to one presigned
//! `PutObject` sent over a bare socket.
//!
//! ```sh
//! eval "$(bash scripts/garage.sh)"
//! cargo run --release -p tessera-s3 --example s3_bench -- [MiB] [rounds]
//! ```
//!
//! It reads the store from the `TESSERA_TEST_S3_*` variables that `scripts/garage.sh`
//! prints, writes under `objstore-bench/` and deletes what it wrote.

mod common;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use aws_sdk_s3::presigning::PresigningConfig;
use common::{MIB, Pseudorandom, copy, plain_get, s3_from_env};
use tessera_s3::{BlockingS3, S3Client};

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().map_or(1024, |a| a.parse().expect("MiB"));
    let rounds: u32 = args.next().map_or(2, |a| a.parse().expect("rounds"));
    let size = mib * MIB;
    let (config, bucket) = s3_from_env().unwrap_or_else(|e| panic!("{e}"));
    let key = format!("objstore-bench/{}-{mib}MiB.bin", std::process::id());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = S3Client::new(config).unwrap();
    let blocking = BlockingS3::new(store.clone(), runtime.handle().clone()).unwrap();

    println!("object: {mib} MiB, {rounds} rounds of each read");
    // The floor for writes: one presigned PUT over a bare socket, deleted again.
    let plain_key = format!("{key}.plain");
    let presigned = runtime.block_on(async {
        store
            .sdk_client()
            .put_object()
            .bucket(&bucket)
            .key(&plain_key)
            .presigned(PresigningConfig::expires_in(Duration::from_secs(600)).unwrap())
            .await
            .unwrap()
    });
    let started = Instant::now();
    plain_http_put(presigned.uri(), size, Pseudorandom::new(size)).unwrap();
    report("put: plain HTTP (1 PUT)", size, started.elapsed());
    blocking.delete(&bucket, &plain_key).unwrap();

    let started = Instant::now();
    let stored = blocking
        .put(&bucket, &key, size, Pseudorandom::new(size))
        .unwrap();
    assert_eq!(stored, size);
    report("put: client (multipart)", size, started.elapsed());

    for round in 1..=rounds {
        println!("round {round}");
        let started = Instant::now();
        let mut reader = blocking.get(&bucket, &key).unwrap();
        let n = copy(&mut reader, &mut io::sink()).unwrap();
        assert_eq!(n, size);
        report("  get: client Read", n, started.elapsed());

        let started = Instant::now();
        let n = runtime.block_on(async {
            let out = store
                .sdk_client()
                .get_object()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .unwrap();
            let mut body = out.body;
            let mut n = 0u64;
            while let Some(chunk) = body.next().await {
                n += chunk.unwrap().len() as u64;
            }
            n
        });
        assert_eq!(n, size);
        report("  get: SDK stream", n, started.elapsed());

        let presigned = runtime.block_on(async {
            store
                .sdk_client()
                .get_object()
                .bucket(&bucket)
                .key(&key)
                .presigned(PresigningConfig::expires_in(Duration::from_secs(600)).unwrap())
                .await
                .unwrap()
        });
        let started = Instant::now();
        let n = plain_get(presigned.uri(), &mut io::sink()).unwrap();
        assert_eq!(n, size);
        report("  get: plain HTTP", n, started.elapsed());
    }

    blocking.delete(&bucket, &key).unwrap();
}

fn report(what: &str, bytes: u64, took: Duration) {
    let secs = took.as_secs_f64();
    println!(
        "{what:<26} {:>8.1} MB/s  {:>8.1} MiB/s  ({:.2} s)",
        bytes as f64 / 1e6 / secs,
        bytes as f64 / MIB as f64 / secs,
        secs
    );
}

/// PUTs `len` bytes of `body` to an `http://host:port/path?query` URL with HTTP/1.1
/// over a bare socket, in 1 MiB writes.
fn plain_http_put(url: &str, len: u64, mut body: impl Read) -> io::Result<()> {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = TcpStream::connect(authority)?;
    write!(
        stream,
        "PUT {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = vec![0u8; MIB as usize];
    loop {
        let n = body.read(&mut buf)?;
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n])?;
    }
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if !line.starts_with("HTTP/1.1 200") {
        return Err(io::Error::other(format!("plain PUT: {}", line.trim())));
    }
    Ok(())
}
