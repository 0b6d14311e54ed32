//! API version negotiation.
//!
//! bollard addresses every request to `/v{client version}/...` and its own default (1.49)
//! is refused by older engines ("client version 1.49 is too new. Maximum supported API
//! version is 1.41" on Docker 20.10), while new engines refuse old versions (Docker 29
//! requires at least 1.44). bollard's `negotiate_version` itself sends a versioned request,
//! so it cannot recover from the first case. Instead we ask the unversioned `GET /version`
//! once, with a minimal HTTP/1.0 exchange over the unix socket, and pick the highest
//! version both sides speak.

use std::time::Duration;

use bollard::ClientVersion;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::error::DockerError;

/// The answer is a few hundred bytes; anything past this is not a Docker engine.
const MAX_RESPONSE: u64 = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
struct VersionBody {
    #[serde(rename = "ApiVersion")]
    api_version: String,
    #[serde(rename = "MinAPIVersion", default)]
    min_api_version: Option<String>,
}

/// Asks the engine at `socket` which API versions it speaks and returns the one to use.
pub(crate) async fn negotiate(socket: &str) -> Result<ClientVersion, DockerError> {
    let raw = tokio::time::timeout(TIMEOUT, fetch_version(socket))
        .await
        .map_err(|_| {
            DockerError::Unreachable(format!("no answer from the engine at {socket} in time"))
        })??;
    let body = parse_http_response(&raw)?;
    let version: VersionBody = serde_json::from_slice(&body).map_err(|e| {
        DockerError::Other(format!(
            "unexpected answer to GET /version from {socket}: {e}"
        ))
    })?;
    choose(
        &version.api_version,
        version.min_api_version.as_deref(),
        bollard::API_DEFAULT_VERSION,
    )
}

async fn fetch_version(socket: &str) -> Result<Vec<u8>, DockerError> {
    let unreachable = |e: std::io::Error| DockerError::Unreachable(format!("{socket}: {e}"));
    let mut stream = UnixStream::connect(socket).await.map_err(unreachable)?;
    stream
        .write_all(b"GET /version HTTP/1.0\r\nHost: docker\r\nAccept: application/json\r\n\r\n")
        .await
        .map_err(unreachable)?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .await
        .map_err(unreachable)?;
    Ok(raw)
}

/// Splits an HTTP/1.x response, checks for 200 and returns the body (de-chunked if needed).
pub(crate) fn parse_http_response(raw: &[u8]) -> Result<Vec<u8>, DockerError> {
    let bad = |what: &str| DockerError::Other(format!("unexpected answer to GET /version: {what}"));
    let split = find(raw, b"\r\n\r\n").ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        let text = String::from_utf8_lossy(body);
        return Err(bad(&format!("{status_line}: {}", text.trim())));
    }
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        dechunk(body).ok_or_else(|| bad("malformed chunked body"))
    } else {
        Ok(body.to_vec())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(body, b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

fn parse_version(text: &str) -> Option<ClientVersion> {
    let (major, minor) = text.trim().split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

/// The highest version both sides speak: the client's own maximum, lowered to the
/// server's maximum, but never below the server's minimum.
pub(crate) fn choose(
    server_max: &str,
    server_min: Option<&str>,
    client_max: &ClientVersion,
) -> Result<ClientVersion, DockerError> {
    let key = |v: &ClientVersion| (v.major_version, v.minor_version);
    let max = parse_version(server_max).ok_or_else(|| {
        DockerError::Other(format!(
            "cannot parse the engine's API version {server_max:?}"
        ))
    })?;
    let mut chosen = if key(&max) < key(client_max) {
        max
    } else {
        ClientVersion {
            major_version: client_max.major_version,
            minor_version: client_max.minor_version,
        }
    };
    if let Some(min) = server_min.and_then(parse_version)
        && key(&chosen) < key(&min)
    {
        chosen = min;
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: usize, minor: usize) -> ClientVersion {
        ClientVersion {
            major_version: major,
            minor_version: minor,
        }
    }

    #[test]
    fn chooses_the_common_version() {
        let c = |max, min| choose(max, min, &v(1, 49)).map(|v| v.to_string());
        assert_eq!(c("1.41", Some("1.12")), Ok("1.41".to_owned()));
        assert_eq!(c("1.51", Some("1.44")), Ok("1.49".to_owned()));
        assert_eq!(c("1.49", None), Ok("1.49".to_owned()));
        assert_eq!(c("1.60", Some("1.52")), Ok("1.52".to_owned()));
        assert!(c("garbage", None).is_err());
    }

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain =
            b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"ApiVersion\":\"1.41\"}";
        assert_eq!(
            parse_http_response(plain).unwrap(),
            b"{\"ApiVersion\":\"1.41\"}"
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n";
        assert_eq!(parse_http_response(chunked).unwrap(), b"hello world");
        let refused = b"HTTP/1.1 400 Bad Request\r\n\r\n{\"message\":\"nope\"}";
        let err = parse_http_response(refused).unwrap_err();
        assert!(err.to_string().contains("400") && err.to_string().contains("nope"));
        assert!(parse_http_response(b"garbage").is_err());
        assert!(
            parse_http_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
                .is_err()
        );
    }
}
