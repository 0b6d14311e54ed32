//! What the tests against a real S3 store share.
//!
//! They run against the store that `TESSERA_TEST_S3_ENDPOINT`, `TESSERA_TEST_S3_REGION`,
//! `TESSERA_TEST_S3_ACCESS_KEY`, `TESSERA_TEST_S3_SECRET_KEY` and `TESSERA_TEST_S3_BUCKET`
//! name (`eval "$(bash scripts/garage.sh)"` starts a local Garage and prints them). When
//! they are unset the tests skip, unless `TESSERA_REQUIRE_ALL=1`, which makes them fail.
#![allow(dead_code)]

use std::io::{self, Read};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tessera_s3::{BlockingS3, S3Client, S3Config, Secret};
use tokio::runtime::Runtime;

pub struct S3Env {
    pub config: S3Config,
    pub bucket: String,
}

/// The store to test against, or `None` (the test then returns early: skipped).
pub fn s3_env() -> Option<S3Env> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let Some(endpoint) = var("TESSERA_TEST_S3_ENDPOINT") else {
        let why =
            "TESSERA_TEST_S3_ENDPOINT is not set (eval \"$(bash scripts/garage.sh)\" sets it)";
        if std::env::var("TESSERA_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("{why}; TESSERA_REQUIRE_ALL=1 requires the S3 tests");
        }
        eprintln!("skipped: {why}");
        return None;
    };
    let need = |name: &str| var(name).unwrap_or_else(|| panic!("{name} is not set"));
    Some(S3Env {
        config: S3Config {
            endpoint: Some(endpoint),
            region: var("TESSERA_TEST_S3_REGION").unwrap_or_else(|| "garage".into()),
            access_key_id: need("TESSERA_TEST_S3_ACCESS_KEY"),
            secret_access_key: Secret::new(need("TESSERA_TEST_S3_SECRET_KEY")),
            path_style: true,
        },
        bucket: var("TESSERA_TEST_S3_BUCKET").unwrap_or_else(|| "tessera-test".into()),
    })
}

/// The runtime the blocking clients of a test binary run their requests on.
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

pub fn blocking(config: S3Config) -> BlockingS3 {
    BlockingS3::new(S3Client::new(config).unwrap(), runtime().handle().clone()).unwrap()
}

/// A prefix no other test run uses.
pub fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("objstore-tests/{test}-{}-{nanos}/", std::process::id())
}

/// `len` pseudo-random bytes (xorshift64*, from `seed`), generated as they are read,
/// hashed on the way.
pub struct Generator {
    state: u64,
    left: u64,
    pub hasher: Sha256,
}

impl Generator {
    pub fn new(seed: u64, len: u64) -> Self {
        Self {
            state: seed | 1,
            left: len,
            hasher: Sha256::new(),
        }
    }

    pub fn digest(self) -> Vec<u8> {
        self.hasher.finalize().to_vec()
    }
}

impl Read for Generator {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let v = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        self.hasher.update(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// Reads `reader` to its end in 256 KiB steps; returns the byte count and SHA-256.
pub fn hash_reader(mut reader: impl Read) -> io::Result<(u64, Vec<u8>)> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok((total, hasher.finalize().to_vec()));
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`).
pub fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}
