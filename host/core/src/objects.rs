//! Object names: the rules for buckets and keys, and `s3://BUCKET/KEY` URLs.
//!
//! Decided once here and called by everything that names an object: task validation at
//! submit, the embedded object store (whose keys become paths on disk, so a key that
//! could leave its bucket must never reach it), and the data API.

/// The longest key, in bytes (S3's limit).
pub const MAX_KEY_BYTES: usize = 1024;
/// The longest segment of a key (between `/`), in bytes: a file name on disk.
pub const MAX_SEGMENT_BYTES: usize = 255;

/// Why a bucket, key or URL is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

fn err(msg: impl Into<String>) -> NameError {
    NameError(msg.into())
}

/// A bucket name as S3 defines it, except that it may be shorter than S3's 3 characters
/// (`s3://in/x` is a fine bucket in the embedded store; an S3 service refuses it
/// itself): 1 to 63 characters of lower-case letters, digits, `.` and `-`, beginning and
/// ending with a letter or digit, no `..`. No bucket can be `.` or `..` or begin with
/// `.`, so bucket directories cannot clash with anything else in the embedded store.
pub fn check_bucket(bucket: &str) -> Result<(), NameError> {
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !(1..=63).contains(&bucket.len())
        || !ok_chars
        || !ends_ok(bucket.bytes().next())
        || !ends_ok(bucket.bytes().last())
        || bucket.contains("..")
    {
        return Err(err(format!(
            "{bucket:?} is not a bucket name: 1 to 63 lower-case letters, digits, '.' and '-', \
             beginning and ending with a letter or digit"
        )));
    }
    Ok(())
}

/// An object key: 1 to [`MAX_KEY_BYTES`] bytes, relative (no leading `/`), segments
/// separated by single `/`s, none of them `.` or `..` or longer than
/// [`MAX_SEGMENT_BYTES`], no control characters, and no trailing `/` (that names a
/// folder, not an object).
pub fn check_key(key: &str) -> Result<(), NameError> {
    check_key_path(key, false)
}

/// The key part of a URL: as [`check_key`], but a trailing `/` is allowed (a directory
/// input or output names a prefix).
pub fn check_url_key(key: &str) -> Result<(), NameError> {
    check_key_path(key, true)
}

fn check_key_path(key: &str, trailing_slash: bool) -> Result<(), NameError> {
    if key.is_empty() {
        return Err(err("the key is empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(err(format!(
            "the key is {} bytes; at most {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    if key.starts_with('/') {
        return Err(err(format!(
            "the key {key:?} is absolute; keys are relative to their bucket"
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(err(format!("the key {key:?} has control characters")));
    }
    let body = match key.strip_suffix('/') {
        Some(b) if trailing_slash => b,
        Some(_) => {
            return Err(err(format!(
                "the key {key:?} ends in '/', which names a folder, not an object"
            )));
        }
        None => key,
    };
    for segment in body.split('/') {
        match segment {
            "" => return Err(err(format!("the key {key:?} has an empty segment ('//')"))),
            "." | ".." => {
                return Err(err(format!(
                    "the key {key:?} has a {segment:?} segment; keys cannot leave their bucket"
                )));
            }
            s if s.len() > MAX_SEGMENT_BYTES => {
                return Err(err(format!(
                    "a segment of the key {key:?} is longer than {MAX_SEGMENT_BYTES} bytes"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A key prefix for listings: empty, or a key path that may end in `/`.
pub fn check_prefix(prefix: &str) -> Result<(), NameError> {
    if prefix.is_empty() {
        return Ok(());
    }
    check_url_key(prefix)
}

/// An `s3://BUCKET/KEY` URL, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url<'a> {
    pub bucket: &'a str,
    /// May end in `/` (a prefix, for directories).
    pub key: &'a str,
}

/// The bucket and key of an `s3://` URL (scheme in any case), both checked.
pub fn parse_s3_url(url: &str) -> Result<S3Url<'_>, NameError> {
    let rest = url
        .get(..5)
        .filter(|s| s.eq_ignore_ascii_case("s3://"))
        .map(|_| &url[5..])
        .ok_or_else(|| err(format!("{url:?} is not an s3:// URL (s3://BUCKET/KEY)")))?;
    let (bucket, key) = rest
        .split_once('/')
        .ok_or_else(|| err(format!("{url:?} names no key (s3://BUCKET/KEY)")))?;
    check_bucket(bucket).map_err(|e| err(format!("{url:?}: {e}")))?;
    check_url_key(key).map_err(|e| err(format!("{url:?}: {e}")))?;
    Ok(S3Url { bucket, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_s3_rules() {
        for ok in ["in", "b", "abc", "my-bucket.v2", "0in", &"a".repeat(63)] {
            assert!(check_bucket(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "Abc",
            "a_b",
            "-ab",
            "ab-",
            "a..b",
            ".ab",
            "a/b",
            "a b",
            &"a".repeat(64),
        ] {
            assert!(check_bucket(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_stay_inside_their_bucket() {
        for ok in ["a", "a/b/c.txt", "dir/.hidden", "x..y", "sp ace/é"] {
            assert!(check_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/abs",
            "../up",
            "a/../../b",
            "a/./b",
            "..",
            ".",
            "a//b",
            "dir/",
            "nul\0",
            "new\nline",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_key(&"a".repeat(256)).is_err());
        assert!(check_key(&["a"; 600].join("/")).is_err());
        assert!(check_url_key("dir/").is_ok());
        assert!(check_url_key("dir//").is_err());
    }

    #[test]
    fn s3_urls_parse_into_checked_parts() {
        let u = parse_s3_url("S3://in/data/x.txt").unwrap();
        assert_eq!((u.bucket, u.key), ("in", "data/x.txt"));
        assert_eq!(parse_s3_url("s3://out/dir/").unwrap().key, "dir/");
        for bad in [
            "s3://in",
            "s3://in/",
            "s3://in//abs",
            "s3://in/../x",
            "s3://IN/x",
            "http://in/x",
        ] {
            assert!(parse_s3_url(bad).is_err(), "{bad}");
        }
    }
}
