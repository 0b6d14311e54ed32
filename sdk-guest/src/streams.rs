//! Moving bytes between `wasi:io` streams: workspace files (filers), object-store objects
//! and HTTP bodies are all streams, and these helpers copy one into another in chunks.
//!
//! ```ignore
//! use tessera_plugin_sdk::filer::workspace;
//! use tessera_plugin_sdk::streams;
//!
//! let from = workspace::open_read("/data/out/result.csv")?;
//! let to = workspace::open_write("/data/out/copy.csv")?;
//! let n = streams::copy(&from, &to, streams::DEFAULT_CHUNK)?;
//! ```
//!
//! [`copy`] and [`copy_exact`] use `output-stream.blocking-splice`: the host moves each
//! chunk from one stream to the other itself, so the bytes never pass through the
//! plugin's memory (a 1 GiB file costs the plugin no more memory than a small one), and
//! every wait ends at the call's deadline. [`write_all`] and [`read_to_end`] are for
//! bytes the plugin holds or wants to look at.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::PluginError;
pub use crate::wasi::io::streams::{InputStream, OutputStream, StreamError};

/// The chunk [`copy`] moves per step unless told otherwise (the host caps a step at what
/// the destination accepts at once, e.g. 1 MiB for workspace files and HTTP bodies).
pub const DEFAULT_CHUNK: u64 = 1 << 20;

/// Why a copy (or a read or write) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyError {
    /// Reading the source failed (the host's description).
    Read(String),
    /// Writing the destination failed, or it closed (e.g. the other side hung up).
    Write(String),
    /// The source ended before the length the copy was asked for.
    Short {
        /// Bytes copied before the source ended.
        copied: u64,
        /// Bytes asked for.
        expected: u64,
    },
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyError::Read(m) => write!(f, "reading failed: {m}"),
            CopyError::Write(m) => write!(f, "writing failed: {m}"),
            CopyError::Short { copied, expected } => {
                write!(f, "the source ended after {copied} of {expected} bytes")
            }
        }
    }
}

/// `unavailable` (a stream that fails may work when tried again).
impl From<CopyError> for PluginError {
    fn from(e: CopyError) -> PluginError {
        PluginError::Unavailable(format!("{e}"))
    }
}

/// A stream error in words.
pub fn describe(e: &StreamError) -> String {
    match e {
        StreamError::LastOperationFailed(e) => e.to_debug_string(),
        StreamError::Closed => "the stream is closed".into(),
    }
}

/// After a splice failed: was it the destination? (A closed or failed destination stays
/// so; a source that ended or failed leaves the destination writable.)
fn destination_failed(to: &OutputStream, e: &StreamError) -> Option<CopyError> {
    match to.check_write() {
        Err(w) => Some(CopyError::Write(match w {
            StreamError::Closed => match e {
                StreamError::LastOperationFailed(_) => describe(e),
                StreamError::Closed => "the destination closed".into(),
            },
            w => describe(&w),
        })),
        Ok(_) => None,
    }
}

/// Copies everything from `from` into `to`, at most `chunk` bytes per step, until `from`
/// ends; then flushes `to`. Returns the bytes copied.
pub fn copy(from: &InputStream, to: &OutputStream, chunk: u64) -> Result<u64, CopyError> {
    let chunk = chunk.max(1);
    let mut copied = 0u64;
    loop {
        match to.blocking_splice(from, chunk) {
            Ok(n) => copied += n,
            Err(e) => {
                if let Some(w) = destination_failed(to, &e) {
                    return Err(w);
                }
                match e {
                    StreamError::Closed => break,
                    e => return Err(CopyError::Read(describe(&e))),
                }
            }
        }
    }
    flush(to)?;
    Ok(copied)
}

/// Copies exactly `len` bytes from `from` into `to` (at most `chunk` per step) and
/// flushes `to`; a source that ends sooner is [`CopyError::Short`]. What follows in
/// `from` is not read.
pub fn copy_exact(
    from: &InputStream,
    to: &OutputStream,
    len: u64,
    chunk: u64,
) -> Result<(), CopyError> {
    splice_exact(from, to, len, chunk)?;
    flush(to)
}

/// [`copy_exact`] without the final flush (for a destination whose end is confirmed
/// otherwise, e.g. a request body, which the server may stop taking once it has it all).
pub(crate) fn splice_exact(
    from: &InputStream,
    to: &OutputStream,
    len: u64,
    chunk: u64,
) -> Result<(), CopyError> {
    let chunk = chunk.max(1);
    let mut copied = 0u64;
    while copied < len {
        match to.blocking_splice(from, chunk.min(len - copied)) {
            Ok(n) => copied += n,
            Err(e) => {
                if let Some(w) = destination_failed(to, &e) {
                    return Err(w);
                }
                return Err(match e {
                    StreamError::Closed => CopyError::Short {
                        copied,
                        expected: len,
                    },
                    e => CopyError::Read(describe(&e)),
                });
            }
        }
    }
    Ok(())
}

/// Writes all of `bytes` to `to` (as much per write as the stream accepts, waiting when
/// it accepts nothing) and flushes it.
pub fn write_all(to: &OutputStream, bytes: &[u8]) -> Result<(), CopyError> {
    write_unflushed(to, bytes)?;
    flush(to)
}

/// [`write_all`] without the final flush.
pub(crate) fn write_unflushed(to: &OutputStream, mut bytes: &[u8]) -> Result<(), CopyError> {
    let write = |e: StreamError| CopyError::Write(describe(&e));
    while !bytes.is_empty() {
        let n = to.check_write().map_err(write)?;
        if n == 0 {
            to.subscribe().block();
            continue;
        }
        let n = usize::try_from(n).unwrap_or(usize::MAX).min(bytes.len());
        to.write(&bytes[..n]).map_err(write)?;
        bytes = &bytes[n..];
    }
    Ok(())
}

/// Flushes `to` and waits until it has taken everything written.
pub fn flush(to: &OutputStream) -> Result<(), CopyError> {
    to.blocking_flush()
        .map_err(|e| CopyError::Write(describe(&e)))
}

/// Reads `from` until it ends, keeping at most `max` bytes; returns them and whether
/// there was more (which is then not read).
pub fn read_to_end(from: &InputStream, max: usize) -> Result<(Vec<u8>, bool), CopyError> {
    let mut out = Vec::new();
    loop {
        let room = max.saturating_sub(out.len());
        if room == 0 {
            // Is there more? One byte says.
            return match from.blocking_read(1) {
                Ok(b) => Ok((out, !b.is_empty())),
                Err(StreamError::Closed) => Ok((out, false)),
                Err(e) => Err(CopyError::Read(describe(&e))),
            };
        }
        match from.blocking_read(room.min(64 << 10) as u64) {
            Ok(bytes) => out.extend_from_slice(&bytes),
            Err(StreamError::Closed) => return Ok((out, false)),
            Err(e) => return Err(CopyError::Read(describe(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn copy_errors_read_well_and_are_unavailable() {
        let e = CopyError::Short {
            copied: 3,
            expected: 10,
        };
        assert_eq!(e.to_string(), "the source ended after 3 of 10 bytes");
        let p: PluginError = e.into();
        assert_eq!(p.kind(), "unavailable");
        assert_eq!(
            CopyError::Write("disk full".into()).to_string(),
            "writing failed: disk full"
        );
    }
}
