//! `tessera data …`: put, get, list and remove objects in the server's object store (the
//! one behind `s3://` URLs: embedded, or the configured S3 service), through `/v1/data`.

use clap::{Args, Subcommand};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{Client, ConnectArgs, Output, print_table, s};

#[derive(Args)]
pub struct DataArgs {
    #[command(flatten)]
    conn: ConnectArgs,
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand)]
enum DataCommand {
    /// List buckets, or the objects of s3://BUCKET[/PREFIX]
    Ls {
        url: Option<String>,
        /// At most this many objects [default: all]
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Upload a file (or, with -r, a directory's files under KEY/) to s3://BUCKET/KEY
    Put {
        source: PathBuf,
        url: String,
        #[arg(long, short = 'r')]
        recursive: bool,
    },
    /// Download s3://BUCKET/KEY to a file, or to stdout (no DEST, or -); with -r, every
    /// object under s3://BUCKET/PREFIX into the directory DEST
    Get {
        url: String,
        dest: Option<PathBuf>,
        #[arg(long, short = 'r')]
        recursive: bool,
    },
    /// Delete s3://BUCKET/KEY
    Rm { url: String },
}

pub async fn run(args: DataArgs) -> ExitCode {
    let client = Client::new(&args.conn);
    match dispatch(&client, &args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `s3://BUCKET[/KEY]` → (bucket, key), both checked as the server checks them.
fn split_url(url: &str, want_key: bool) -> Result<(String, String), String> {
    let rest = url
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("s3://"))
        .map(|_| &url[5..])
        .ok_or_else(|| format!("{url:?} is not an s3:// URL (s3://BUCKET/KEY)"))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    tessera_core::objects::check_bucket(bucket).map_err(|e| e.to_string())?;
    if want_key {
        tessera_core::objects::check_key(key).map_err(|e| format!("{url}: {e}"))?;
    } else {
        tessera_core::objects::check_prefix(key).map_err(|e| format!("{url}: {e}"))?;
    }
    Ok((bucket.to_string(), key.to_string()))
}

/// A path segment of `/v1/data/...`: each key segment percent-encoded.
fn object_path(bucket: &str, key: &str) -> String {
    let encoded: Vec<String> = key.split('/').map(crate::cli::encode_segment).collect();
    format!("/v1/data/{bucket}/{}", encoded.join("/"))
}

async fn dispatch(client: &Client, args: &DataArgs) -> Result<(), String> {
    let json = args.conn.output == Output::Json;
    match &args.command {
        DataCommand::Ls { url: None, .. } => {
            let v = client.get("/v1/data", &[]).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                for b in v["buckets"].as_array().into_iter().flatten() {
                    println!("s3://{}", s(b));
                }
            }
            Ok(())
        }
        DataCommand::Ls {
            url: Some(url),
            limit,
        } => {
            let (bucket, prefix) = split_url(url, false)?;
            let objects = list_all(client, &bucket, &prefix, *limit).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&Value::Array(objects)).unwrap_or_default()
                );
            } else {
                let rows: Vec<Vec<String>> = objects
                    .iter()
                    .map(|o| {
                        vec![
                            s(&o["url"]),
                            s(&o["size"]),
                            s(&o["modified"]),
                            o["sha256"].as_str().unwrap_or("-").to_string(),
                        ]
                    })
                    .collect();
                print_table(&["URL", "BYTES", "MODIFIED", "SHA256"], &rows);
            }
            Ok(())
        }
        DataCommand::Put {
            source,
            url,
            recursive,
        } => {
            let (bucket, key) = split_url(url, !*recursive)?;
            let mut uploads = Vec::new();
            if *recursive {
                let base = key.trim_end_matches('/');
                for (file, rel) in files_under(source)? {
                    let k = if base.is_empty() {
                        rel
                    } else {
                        format!("{base}/{rel}")
                    };
                    uploads.push((file, k));
                }
            } else {
                uploads.push((source.clone(), key));
            }
            for (file, key) in uploads {
                let stored = put_file(client, &file, &bucket, &key).await?;
                if json {
                    println!("{stored}");
                } else {
                    println!("{}  {} bytes", s(&stored["url"]), s(&stored["size"]));
                }
            }
            Ok(())
        }
        DataCommand::Get {
            url,
            dest,
            recursive: false,
        } => {
            let (bucket, key) = split_url(url, true)?;
            let to = dest.as_ref().filter(|d| d.as_os_str() != "-");
            get_object(client, &bucket, &key, to.map(PathBuf::as_path)).await
        }
        DataCommand::Get {
            url,
            dest,
            recursive: true,
        } => {
            let (bucket, prefix) = split_url(url, false)?;
            let dest = dest
                .as_ref()
                .filter(|d| d.as_os_str() != "-")
                .ok_or("get -r needs a destination directory")?;
            let dir_prefix = if prefix.is_empty() || prefix.ends_with('/') {
                prefix.clone()
            } else {
                format!("{prefix}/")
            };
            for o in list_all(client, &bucket, &dir_prefix, None).await? {
                let key = s(&o["key"]);
                let path = local_path(dest, &dir_prefix, &key)?;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("creating {}: {e}", parent.display()))?;
                }
                get_object(client, &bucket, &key, Some(&path)).await?;
                if !json {
                    println!("{}", path.display());
                }
            }
            Ok(())
        }
        DataCommand::Rm { url } => {
            let (bucket, key) = split_url(url, true)?;
            client
                .call(
                    reqwest::Method::DELETE,
                    &object_path(&bucket, &key),
                    &[],
                    None,
                )
                .await?;
            if !json {
                println!("deleted {url}");
            }
            Ok(())
        }
    }
}

/// Every object under `prefix`, page by page.
async fn list_all(
    client: &Client,
    bucket: &str,
    prefix: &str,
    limit: Option<usize>,
) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut q = vec![("prefix", prefix.to_string())];
        if let Some(a) = &after {
            q.push(("start_after", a.clone()));
        }
        let page = client.get(&format!("/v1/data/{bucket}"), &q).await?;
        out.extend(page["objects"].as_array().cloned().unwrap_or_default());
        after = page["next_start_after"].as_str().map(str::to_string);
        if after.is_none() || limit.is_some_and(|l| out.len() >= l) {
            break;
        }
    }
    if let Some(l) = limit {
        out.truncate(l);
    }
    Ok(out)
}

/// The regular files under `dir`, with their paths relative to it (`/`-separated),
/// sorted. Links and special files are refused rather than followed.
fn files_under(dir: &Path) -> Result<Vec<(PathBuf, String)>, String> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, rel)) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", d.display()))?;
            let name = entry
                .file_name()
                .into_string()
                .map_err(|n| format!("{n:?} is not UTF-8, which a key must be"))?;
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let kind = entry
                .file_type()
                .map_err(|e| format!("{}: {e}", entry.path().display()))?;
            if kind.is_dir() {
                stack.push((entry.path(), child));
            } else if kind.is_file() {
                out.push((entry.path(), child));
            } else {
                return Err(format!(
                    "{} is not a regular file or directory",
                    entry.path().display()
                ));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

async fn put_file(client: &Client, file: &Path, bucket: &str, key: &str) -> Result<Value, String> {
    let f = tokio::fs::File::open(file)
        .await
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let meta = f
        .metadata()
        .await
        .map_err(|e| format!("{}: {e}", file.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "{} is not a file (use -r for a directory)",
            file.display()
        ));
    }
    let resp = client
        .request(reqwest::Method::PUT, &object_path(bucket, key))
        .header(reqwest::header::CONTENT_LENGTH, meta.len())
        .body(reqwest::Body::from(f))
        .send()
        .await
        .map_err(|e| client.unreachable(e))?;
    Client::answer(resp).await
}

/// Download one object to `to` (written beside it, then renamed) or to stdout, checking
/// its SHA-256 when the server sends one.
async fn get_object(
    client: &Client,
    bucket: &str,
    key: &str,
    to: Option<&Path>,
) -> Result<(), String> {
    let mut resp = client
        .request(reqwest::Method::GET, &object_path(bucket, key))
        .send()
        .await
        .map_err(|e| client.unreachable(e))?;
    if !resp.status().is_success() {
        return Client::answer(resp).await.map(|_| ());
    }
    let want = resp
        .headers()
        .get("x-tessera-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let url = format!("s3://{bucket}/{key}");
    let mut hasher = Sha256::new();
    let (mut sink, partial): (Box<dyn Write>, Option<PathBuf>) = match to {
        Some(path) => {
            let mut name = path.file_name().unwrap_or_default().to_os_string();
            name.push(".part");
            let partial = path.with_file_name(name);
            let f = std::fs::File::create(&partial)
                .map_err(|e| format!("{}: {e}", partial.display()))?;
            (Box::new(std::io::BufWriter::new(f)), Some(partial))
        }
        None => (Box::new(std::io::stdout().lock()), None),
    };
    let result: Result<(), String> = async {
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("downloading {url}: {e}"))?
        {
            hasher.update(&chunk);
            sink.write_all(&chunk)
                .map_err(|e| format!("writing {url}: {e}"))?;
        }
        sink.flush().map_err(|e| format!("writing {url}: {e}"))?;
        let got: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        match want {
            Some(w) if w != got => Err(format!(
                "{url}: the download's SHA-256 is {got}, the server's {w}"
            )),
            _ => Ok(()),
        }
    }
    .await;
    drop(sink);
    match (result, partial, to) {
        (Ok(()), Some(partial), Some(path)) => {
            std::fs::rename(&partial, path).map_err(|e| format!("{}: {e}", path.display()))
        }
        (Err(e), Some(partial), _) => {
            let _ = std::fs::remove_file(partial);
            Err(e)
        }
        (r, _, _) => r,
    }
}

/// Where `get -r` writes the object `key` listed under `dir_prefix`: below `dest`, by
/// plain path components only. The listing comes from a server, which is not trusted
/// with local paths: a key outside the prefix or one that would leave `dest` is refused.
fn local_path(dest: &std::path::Path, dir_prefix: &str, key: &str) -> Result<PathBuf, String> {
    let refused = |why: &str| format!("the server listed the key {key:?}, which {why}");
    tessera_core::objects::check_key(key).map_err(|e| refused(&e.to_string()))?;
    let rel = key
        .strip_prefix(dir_prefix)
        .ok_or_else(|| refused(&format!("is not under {dir_prefix:?}")))?;
    let rel = std::path::Path::new(rel);
    let plain = rel.components().next().is_some()
        && rel
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !plain {
        return Err(refused("is not a path below the destination"));
    }
    Ok(dest.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_as_the_server_checks_them() {
        assert_eq!(
            split_url("s3://in/data/x.txt", true).unwrap(),
            ("in".into(), "data/x.txt".into())
        );
        assert_eq!(
            split_url("s3://in", false).unwrap(),
            ("in".into(), "".into())
        );
        for bad in ["s3://in/../x", "s3://in//abs", "in/x", "s3://in/"] {
            assert!(split_url(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_listing_cannot_write_outside_the_destination() {
        let dest = std::path::Path::new("/tmp/dest");
        assert_eq!(
            local_path(dest, "run/", "run/a/b.txt").unwrap(),
            dest.join("a/b.txt")
        );
        for bad in [
            "run/../../etc/passwd",
            "run//etc/passwd",
            "/etc/passwd",
            "other/x",
            "run/",
            "run/./x",
        ] {
            assert!(local_path(dest, "run/", bad).is_err(), "{bad}");
        }
        // Without a prefix, an absolute key would replace `dest` in `join`.
        assert!(local_path(dest, "", "/etc/passwd").is_err());
    }

    #[test]
    fn key_segments_are_percent_encoded() {
        assert_eq!(
            object_path("b00", "a b/ü?#%.txt"),
            "/v1/data/b00/a%20b/%C3%BC%3F%23%25.txt"
        );
    }
}
