//! What the HTTP filer decides without doing I/O: what a status means, where a redirect
//! goes, the URL of each file of a staged-out directory, and how a server is named in
//! messages.

use alloc::format;
use alloc::string::String;

/// The default step of a copy, in bytes (config `chunk-bytes`).
pub const DEFAULT_CHUNK: u64 = 1 << 20;
/// Redirects followed by default (config `max-redirects`).
pub const DEFAULT_MAX_REDIRECTS: u32 = 5;
/// Bytes of an error answer quoted in the error message.
pub const SNIPPET: usize = 200;

/// What an answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx.
    Success,
    /// 301, 302, 303, 307, 308: look at `location`.
    Redirect,
    /// 404, 410.
    NotFound,
    /// 401, 403.
    Denied,
    /// 408, 429, 5xx: may work later.
    Unavailable,
    /// Anything else (other 4xx, 1xx, other 3xx).
    Invalid,
}

/// The verdict on a status code.
pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Success,
        301 | 302 | 303 | 307 | 308 => Verdict::Redirect,
        404 | 410 => Verdict::NotFound,
        401 | 403 => Verdict::Denied,
        408 | 429 | 500..=599 => Verdict::Unavailable,
        _ => Verdict::Invalid,
    }
}

/// `scheme://authority` of an absolute URL, for messages (its path and query may carry
/// tokens). A string that is not one is named `(invalid URL)`.
pub fn origin(url: &str) -> &str {
    split_origin(url).map_or("(invalid URL)", |(origin, _)| origin)
}

/// `url` as `scheme://authority` and the rest (path, query, fragment).
fn split_origin(url: &str) -> Option<(&str, &str)> {
    let i = url.find("://")?;
    let after = i + 3;
    let end = url[after..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |j| after + j);
    Some(url.split_at(end))
}

/// Whether `url` is `http://` or `https://` (any case).
pub fn is_http(url: &str) -> bool {
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
}

/// Where a redirect from `from` with `location` goes: an absolute URL as is, `//host/…`
/// on the same scheme, `/path` on the same origin, anything else relative to the
/// directory of `from`'s path. `None` when `location` is empty or not http(s).
pub fn resolve_location(from: &str, location: &str) -> Option<String> {
    let location = location.trim();
    if location.is_empty() {
        return None;
    }
    let resolved = if location.contains("://") {
        String::from(location)
    } else if let Some(rest) = location.strip_prefix("//") {
        let scheme = from.split_once("://")?.0;
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{}{location}", split_origin(from)?.0)
    } else {
        let (o, path) = split_origin(from)?;
        let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        let dir = if dir.is_empty() { "/" } else { dir };
        format!("{o}{dir}{location}")
    };
    is_http(&resolved).then_some(resolved)
}

/// The URL of one file of a staged-out directory: `base` + `/` + `relative`, each
/// segment of `relative` percent-encoded, put before `base`'s query (if any) so the
/// query stays a query.
pub fn join_url(base: &str, relative: &str) -> String {
    let (head, query) = match base.find(['?', '#']) {
        Some(i) => base.split_at(i),
        None => (base, ""),
    };
    let mut out = String::with_capacity(base.len() + relative.len() + 8);
    out.push_str(head.trim_end_matches('/'));
    for segment in relative.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        encode_segment(segment, &mut out);
    }
    out.push_str(query);
    out
}

/// Appends `segment` percent-encoded: unreserved characters (RFC 3986) and the
/// sub-delimiters that are safe in a path stay, everything else (space, `?`, `#`, `%`,
/// non-ASCII…) becomes `%XX`.
pub fn encode_segment(segment: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in segment.as_bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
            );
        if keep {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

/// The container path of one file of a directory: `dir` + `/` + `relative`.
pub fn join_path(dir: &str, relative: &str) -> String {
    if relative.is_empty() {
        return String::from(dir);
    }
    format!("{}/{relative}", dir.trim_end_matches('/'))
}

/// The start of an answer's body for an error message: at most `max` bytes, lossy
/// UTF-8, whitespace collapsed.
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

/// `GET https://host answered 404 (not found): <snippet>`.
pub fn answer(method: &str, origin: &str, status: u16, what: &str, body: &[u8]) -> String {
    let text = snippet(body, SNIPPET);
    if text.is_empty() {
        format!("{method} {origin} answered {status} ({what})")
    } else {
        format!("{method} {origin} answered {status} ({what}): {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_verdicts() {
        use Verdict::*;
        for (status, want) in [
            (200, Success),
            (201, Success),
            (204, Success),
            (301, Redirect),
            (302, Redirect),
            (307, Redirect),
            (308, Redirect),
            (304, Invalid),
            (400, Invalid),
            (401, Denied),
            (403, Denied),
            (404, NotFound),
            (410, NotFound),
            (408, Unavailable),
            (409, Invalid),
            (429, Unavailable),
            (500, Unavailable),
            (502, Unavailable),
            (503, Unavailable),
            (599, Unavailable),
            (100, Invalid),
        ] {
            assert_eq!(verdict(status), want, "{status}");
        }
    }

    #[test]
    fn origins_hide_paths_and_queries() {
        assert_eq!(
            origin("https://h.example:8443/a/b?sig=secret"),
            "https://h.example:8443"
        );
        assert_eq!(origin("http://h?x"), "http://h");
        assert_eq!(origin("http://h"), "http://h");
        assert_eq!(origin("not a url"), "(invalid URL)");
    }

    #[test]
    fn redirects_resolve_against_the_url_they_came_from() {
        let from = "https://a.example/dir/file.bin?token=1";
        assert_eq!(
            resolve_location(from, "https://b.example/x").as_deref(),
            Some("https://b.example/x")
        );
        assert_eq!(
            resolve_location(from, "//cdn.example/y").as_deref(),
            Some("https://cdn.example/y")
        );
        assert_eq!(
            resolve_location(from, "/root?q=1").as_deref(),
            Some("https://a.example/root?q=1")
        );
        assert_eq!(
            resolve_location(from, "other.bin").as_deref(),
            Some("https://a.example/dir/other.bin")
        );
        assert_eq!(
            resolve_location("http://a.example", "x").as_deref(),
            Some("http://a.example/x")
        );
        assert_eq!(resolve_location(from, ""), None);
        assert_eq!(resolve_location("é", "x"), None);
        assert_eq!(resolve_location("é", "/x"), None);
        assert_eq!(resolve_location(from, "ftp://x/y"), None);
    }

    #[test]
    fn directory_files_get_encoded_urls_before_the_query() {
        assert_eq!(
            join_url("https://h/up/", "a b/c#1.txt"),
            "https://h/up/a%20b/c%231.txt"
        );
        assert_eq!(
            join_url("https://h/up?sig=x", "d/e.txt"),
            "https://h/up/d/e.txt?sig=x"
        );
        assert_eq!(join_url("http://h", "é"), "http://h/%C3%A9");
        assert_eq!(join_url("http://h/x", "100%"), "http://h/x/100%25");
        assert_eq!(join_path("/data/out/", "a/b"), "/data/out/a/b");
        assert_eq!(join_path("/data/out/f", ""), "/data/out/f");
    }

    #[test]
    fn answers_quote_the_body_briefly() {
        assert_eq!(
            answer("GET", "http://h", 404, "not found", b"no\n  such  file"),
            "GET http://h answered 404 (not found): no such file"
        );
        assert_eq!(
            answer("PUT", "http://h", 500, "try again later", b""),
            "PUT http://h answered 500 (try again later)"
        );
        assert_eq!(snippet(&[b'x'; 500], SNIPPET).len(), SNIPPET);
        assert!(is_http("HTTPS://x") && is_http("http://x") && !is_http("s3://b/k"));
    }
}
