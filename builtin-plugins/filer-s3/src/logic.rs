//! What the S3 filer decides without doing I/O: the bucket and key of a URL, the keys
//! and paths of the files of a directory.

use alloc::format;
use alloc::string::String;

/// The default step of a copy, in bytes (config `chunk-bytes`).
pub const DEFAULT_CHUNK: u64 = 1 << 20;
/// Objects asked for per listing call.
pub const PAGE: u32 = 1000;

/// An `s3://BUCKET/KEY` URL, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url<'a> {
    /// The bucket: not empty, no `/`.
    pub bucket: &'a str,
    /// The key: not empty (it may contain `/`).
    pub key: &'a str,
}

impl S3Url<'_> {
    /// The URL of `key` in the same bucket.
    pub fn with_key(&self, key: &str) -> String {
        url(self.bucket, key)
    }
}

/// `s3://bucket/key`.
pub fn url(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

/// The bucket and key of `url` (`s3://BUCKET/KEY`, the scheme in any case), or why it is
/// not one, in words.
pub fn parse(url: &str) -> Result<S3Url<'_>, String> {
    let rest = url
        .get(..5)
        .filter(|scheme| scheme.eq_ignore_ascii_case("s3://"))
        .map(|_| &url[5..])
        .ok_or_else(|| format!("`{url}` is not an s3:// URL (s3://BUCKET/KEY)"))?;
    let (bucket, key) = rest
        .split_once('/')
        .ok_or_else(|| format!("`{url}` names no key (s3://BUCKET/KEY)"))?;
    if bucket.is_empty() {
        return Err(format!("`{url}` names no bucket (s3://BUCKET/KEY)"));
    }
    if bucket.contains(|c: char| c.is_whitespace() || c.is_control())
        || bucket.contains(['?', '#', '@', ':'])
    {
        return Err(format!("`{url}`: `{bucket}` is not a bucket name"));
    }
    if key.is_empty() || key.chars().all(|c| c == '/') {
        return Err(format!("`{url}` names no key (s3://BUCKET/KEY)"));
    }
    if key.contains(char::is_control) {
        return Err(format!("`{url}`: the key has control characters"));
    }
    Ok(S3Url { bucket, key })
}

/// The key of a FILE: not one that ends in `/` (a folder, not an object).
pub fn file_key(url: &S3Url<'_>) -> Result<(), String> {
    if url.key.ends_with('/') {
        return Err(format!(
            "{}: a key that ends in `/` names a folder, not a file",
            url.with_key(url.key)
        ));
    }
    Ok(())
}

/// The prefix of the objects of a DIRECTORY `key`: `key` + `/` (one `/`).
pub fn dir_prefix(key: &str) -> String {
    format!("{}/", key.trim_end_matches('/'))
}

/// The key of one file of a directory: `key` + `/` + `relative` (`key` itself when
/// `relative` is empty).
pub fn join_key(key: &str, relative: &str) -> String {
    if relative.is_empty() {
        return String::from(key);
    }
    format!("{}/{relative}", key.trim_end_matches('/'))
}

/// The container path of one file of a directory: `dir` + `/` + `relative`.
pub fn join_path(dir: &str, relative: &str) -> String {
    if relative.is_empty() {
        return String::from(dir);
    }
    format!("{}/{relative}", dir.trim_end_matches('/'))
}

/// What to do with one listed object of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed<'a> {
    /// Stage it at the directory's path + `/` + this.
    File(&'a str),
    /// A folder marker (a key ending in `/`): nothing to stage.
    Skip,
}

/// Where the object `key`, listed under `prefix`, goes in the staged directory; an error
/// (in words) for a key outside the prefix or with a segment that is not a file name
/// (empty, `.`, `..`), which could not be staged where it belongs.
pub fn relative<'a>(prefix: &str, key: &'a str) -> Result<Listed<'a>, String> {
    let rest = key
        .strip_prefix(prefix)
        .ok_or_else(|| format!("the listing of `{prefix}` returned `{key}`, outside it"))?;
    if rest.is_empty() || rest.ends_with('/') {
        return Ok(Listed::Skip);
    }
    if rest
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(format!(
            "the key `{key}` cannot be staged as a file (an empty, `.` or `..` segment)"
        ));
    }
    Ok(Listed::File(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_key() {
        assert_eq!(
            parse("s3://data/in/reads.fq"),
            Ok(S3Url {
                bucket: "data",
                key: "in/reads.fq"
            })
        );
        assert_eq!(
            parse("S3://data/a"),
            Ok(S3Url {
                bucket: "data",
                key: "a"
            })
        );
        // Directory keys may end in `/`.
        assert_eq!(parse("s3://b/dir/").unwrap().key, "dir/");
        // Keys keep what S3 allows in them.
        assert_eq!(parse("s3://b/a b?c#d").unwrap().key, "a b?c#d");
    }

    #[test]
    fn refuses_what_is_not_bucket_and_key() {
        for bad in [
            "",
            "s3:/",
            "s3://",
            "s3://bucket",
            "s3://bucket/",
            "s3://bucket//",
            "s3:///key",
            "http://bucket/key",
            "gs://bucket/key",
            "s3:bucket/key",
            "s3://user@bucket/key",
            "s3://bu cket/key",
            "s3://b/k\nx",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            parse("https://x/y").unwrap_err(),
            "`https://x/y` is not an s3:// URL (s3://BUCKET/KEY)"
        );
        // Not a char boundary at 5: no panic.
        assert!(parse("s3:/é").is_err());
    }

    #[test]
    fn file_keys_do_not_end_in_a_slash() {
        assert!(file_key(&parse("s3://b/a/b").unwrap()).is_ok());
        assert_eq!(
            file_key(&parse("s3://b/a/").unwrap()).unwrap_err(),
            "s3://b/a/: a key that ends in `/` names a folder, not a file"
        );
    }

    #[test]
    fn joins_keys_and_paths() {
        assert_eq!(dir_prefix("out"), "out/");
        assert_eq!(dir_prefix("out/"), "out/");
        assert_eq!(dir_prefix("out//"), "out/");
        assert_eq!(join_key("out", "a/b.txt"), "out/a/b.txt");
        assert_eq!(join_key("out/", "b.txt"), "out/b.txt");
        assert_eq!(join_key("out", ""), "out");
        assert_eq!(join_path("/data/out", "a/b"), "/data/out/a/b");
        assert_eq!(join_path("/data/out/", "b"), "/data/out/b");
        assert_eq!(join_path("/data/f", ""), "/data/f");
        assert_eq!(url("b", "k/x"), "s3://b/k/x");
        assert_eq!(parse("s3://b/k").unwrap().with_key("k/y"), "s3://b/k/y");
    }

    #[test]
    fn places_listed_objects() {
        assert_eq!(relative("in/", "in/a.txt"), Ok(Listed::File("a.txt")));
        assert_eq!(relative("in/", "in/x/y/z"), Ok(Listed::File("x/y/z")));
        assert_eq!(relative("in/", "in/"), Ok(Listed::Skip));
        assert_eq!(relative("in/", "in/sub/"), Ok(Listed::Skip));
        assert!(relative("in/", "other/a").is_err());
        assert!(relative("in/", "in/../etc/passwd").is_err());
        assert!(relative("in/", "in/a//b").is_err());
        assert!(relative("in/", "in/./a").is_err());
        assert!(relative("in/", "in//a").is_err());
    }
}
