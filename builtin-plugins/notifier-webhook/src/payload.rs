//! The webhook's request and what its answer means: the JSON body, its signature, the
//! URL it goes to, and the verdict on a status code.

use alloc::string::String;
use core::fmt::Write as _;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "X-Tessera-Signature";

/// One state change, as far as the webhook tells it.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// The task id.
    pub task_id: &'a str,
    /// The task's name, if it has one.
    pub name: Option<&'a str>,
    /// The task's tags.
    pub tags: &'a [(String, String)],
    /// The state before (TES names, e.g. `QUEUED`), if any.
    pub from_state: Option<&'a str>,
    /// The state now.
    pub to_state: &'a str,
    /// When, RFC 3339.
    pub at: &'a str,
    /// Why, in words.
    pub reason: Option<&'a str>,
}

/// The JSON body: one object, keys always present (absent values are `null`), tags as
/// an object:
///
/// ```json
/// {"task_id":"t-1","name":"nightly","tags":{"team":"lab"},"from_state":"QUEUED",
///  "to_state":"RUNNING","at":"2026-05-01T12:00:00Z","reason":null}
/// ```
pub fn body(e: &Event<'_>) -> String {
    let mut out = String::with_capacity(160 + e.tags.len() * 32);
    out.push_str("{\"task_id\":");
    string(&mut out, e.task_id);
    out.push_str(",\"name\":");
    optional(&mut out, e.name);
    out.push_str(",\"tags\":{");
    for (i, (k, v)) in e.tags.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(&mut out, k);
        out.push(':');
        string(&mut out, v);
    }
    out.push_str("},\"from_state\":");
    optional(&mut out, e.from_state);
    out.push_str(",\"to_state\":");
    string(&mut out, e.to_state);
    out.push_str(",\"at\":");
    string(&mut out, e.at);
    out.push_str(",\"reason\":");
    optional(&mut out, e.reason);
    out.push('}');
    out
}

fn optional(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.push_str("null"),
    }
}

/// `s` as a JSON string literal.
fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The value of [`SIGNATURE_HEADER`]: `sha256=` and the lower-case hex HMAC-SHA256 of
/// `body` under `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts any key length"),
    };
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Where the event goes: the configured `url` when set (and not blank), else the task's
/// notification URL.
pub fn target<'a>(configured: Option<&'a str>, task: Option<&'a str>) -> Option<&'a str> {
    let set = |u: Option<&'a str>| u.map(str::trim).filter(|u| !u.is_empty());
    set(configured).or(set(task))
}

/// What an answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: delivered.
    Delivered,
    /// 401, 403, 407: the receiver refuses us (a `denied` error; retrying will not help).
    Denied,
    /// Any other 4xx, and 1xx/3xx (redirects are not followed): the request or the URL
    /// is wrong (an `invalid-input` error; retrying will not help).
    Invalid,
    /// 5xx, 408 and 429: the receiver cannot take it now (an `unavailable` error; the
    /// host retries).
    Unavailable,
}

/// The verdict on an answer with `status`.
pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 429 => Verdict::Unavailable,
        401 | 403 | 407 => Verdict::Denied,
        400..=499 => Verdict::Invalid,
        500..=599 => Verdict::Unavailable,
        _ => Verdict::Invalid,
    }
}

/// Up to `max` bytes of a response body for an error message: UTF-8 (lossy), whitespace
/// runs as one space, trimmed.
pub fn snippet(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(max)]);
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn the_body_is_json_with_every_field() {
        let tags = vec![
            ("team".to_string(), "lab".to_string()),
            ("note".to_string(), "a \"q\" \\ b\n\u{1}é".to_string()),
        ];
        let e = Event {
            task_id: "t-1",
            name: Some("nightly"),
            tags: &tags,
            from_state: Some("QUEUED"),
            to_state: "RUNNING",
            at: "2026-05-01T12:00:00Z",
            reason: Some("started on node-3"),
        };
        assert_eq!(
            body(&e),
            r#"{"task_id":"t-1","name":"nightly","tags":{"team":"lab","note":"a \"q\" \\ b\n\u0001é"},"from_state":"QUEUED","to_state":"RUNNING","at":"2026-05-01T12:00:00Z","reason":"started on node-3"}"#
        );
        let e = Event {
            task_id: "t-2",
            name: None,
            tags: &[],
            from_state: None,
            to_state: "QUEUED",
            at: "2026-05-01T12:00:00Z",
            reason: None,
        };
        assert_eq!(
            body(&e),
            r#"{"task_id":"t-2","name":null,"tags":{},"from_state":null,"to_state":"QUEUED","at":"2026-05-01T12:00:00Z","reason":null}"#
        );
    }

    #[test]
    fn signature_is_hex_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Keys longer than a block are hashed first (RFC 4231, test case 6).
        assert_eq!(
            signature(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "sha256=60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert_eq!(signature(b"", b"").len(), 7 + 64);
    }

    #[test]
    fn the_configured_url_comes_first() {
        assert_eq!(
            target(Some("https://a/"), Some("https://b/")),
            Some("https://a/")
        );
        assert_eq!(target(Some("  "), Some("https://b/")), Some("https://b/"));
        assert_eq!(target(None, Some(" https://b/ ")), Some("https://b/"));
        assert_eq!(target(None, None), None);
        assert_eq!(target(Some(""), Some("")), None);
    }

    #[test]
    fn verdicts() {
        for (status, v) in [
            (200, Verdict::Delivered),
            (204, Verdict::Delivered),
            (301, Verdict::Invalid),
            (400, Verdict::Invalid),
            (401, Verdict::Denied),
            (403, Verdict::Denied),
            (404, Verdict::Invalid),
            (408, Verdict::Unavailable),
            (429, Verdict::Unavailable),
            (500, Verdict::Unavailable),
            (503, Verdict::Unavailable),
            (600, Verdict::Invalid),
        ] {
            assert_eq!(verdict(status), v, "{status}");
        }
    }

    #[test]
    fn snippets_are_short_and_flat() {
        assert_eq!(snippet(b"  no\n\n such\thook ", 100), "no such hook");
        assert_eq!(snippet(b"abcdef", 3), "abc");
        assert_eq!(snippet(&[0xff, b'x'], 10), "\u{fffd}x");
    }
}
