//! Shared by the S3 benchmarks: the store from the environment, incompressible bytes,
//! and a plain HTTP/1.1 GET over a bare socket (the floor to compare against).
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use tessera_s3::{S3Config, Secret};

pub const MIB: u64 = 1 << 20;

/// The store and bucket from the `TESSERA_TEST_S3_*` variables `scripts/garage.sh`
/// prints.
pub fn s3_from_env() -> Result<(S3Config, String), String> {
    let var = |name: &str| {
        std::env::var(name)
            .map_err(|_| format!("{name} is not set: run `eval \"$(bash scripts/garage.sh)\"`"))
    };
    let config = S3Config {
        endpoint: Some(var("TESSERA_TEST_S3_ENDPOINT")?),
        region: var("TESSERA_TEST_S3_REGION")?,
        access_key_id: var("TESSERA_TEST_S3_ACCESS_KEY")?,
        secret_access_key: Secret::new(var("TESSERA_TEST_S3_SECRET_KEY")?),
        path_style: true,
    };
    Ok((config, var("TESSERA_TEST_S3_BUCKET")?))
}

/// GETs an `http://host:port/path?query` URL with HTTP/1.1 over a bare socket and copies
/// the body into `sink` through a 1 MiB buffer (until the server closes); returns its
/// length.
pub fn plain_get(url: &str, sink: &mut impl Write) -> io::Result<u64> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| io::Error::other("an http:// endpoint is needed"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = TcpStream::connect(authority)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut reader = BufReader::with_capacity(MIB as usize, stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if !line.starts_with("HTTP/1.1 200") {
        return Err(io::Error::other(format!("plain GET: {}", line.trim())));
    }
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    copy(&mut reader, sink)
}

/// Copies `reader` into `sink` through a 1 MiB buffer; returns the byte count.
pub fn copy(reader: &mut impl Read, sink: &mut impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; MIB as usize];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        sink.write_all(&buf[..n])?;
        total += n as u64;
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `len` incompressible bytes (xorshift64*), generated as they are read.
pub struct Pseudorandom {
    state: u64,
    left: u64,
}

impl Pseudorandom {
    pub fn new(len: u64) -> Self {
        Self {
            state: 0x9e37_79b9_7f4a_7c15,
            left: len,
        }
    }
}

impl Read for Pseudorandom {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let v = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}
