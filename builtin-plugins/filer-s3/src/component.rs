//! The component: `tessera:plugin/filing@0.2.0` over the host's object store, with
//! [`crate::logic`].
//!
//! Configuration: `chunk-bytes` (the step of each host-side copy, default 1 MiB).

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use tessera_plugin_sdk::streams::{self, CopyError};
use tessera_plugin_sdk::v0_2::filer::object_store::{self, ObjectInfo, StoreError, Upload};
use tessera_plugin_sdk::v0_2::filer::{
    FileKind, Filer, PluginError, StagedFile, UrlInfo, workspace,
};
use tessera_plugin_sdk::{config, debug, info};

use crate::logic::{self, DEFAULT_CHUNK, Listed, PAGE, S3Url};

tessera_plugin_sdk::no_std_runtime!();

struct S3Filer;

tessera_plugin_sdk::export_filer!(S3Filer, v0_2);

fn chunk() -> Result<u64, PluginError> {
    Ok(config::parse_or("chunk-bytes", DEFAULT_CHUNK)?.max(1))
}

fn parse(url: &str) -> Result<S3Url<'_>, PluginError> {
    logic::parse(url).map_err(PluginError::invalid_input)
}

impl Filer for S3Filer {
    fn stage_in(url: String, path: String, kind: FileKind) -> Result<Vec<StagedFile>, PluginError> {
        let s3 = parse(&url)?;
        let chunk = chunk()?;
        let staged = match kind {
            FileKind::File => {
                logic::file_key(&s3).map_err(PluginError::invalid_input)?;
                let size = get(s3.bucket, s3.key, &path, None, chunk)?;
                vec![StagedFile {
                    url: url.clone(),
                    path: path.clone(),
                    size,
                }]
            }
            FileKind::Directory => {
                let prefix = logic::dir_prefix(s3.key);
                let mut staged = Vec::new();
                for_each_object(s3.bucket, &prefix, |object| {
                    let relative = logic::relative(&prefix, &object.key).map_err(|m| {
                        PluginError::invalid_input(format!(
                            "{}: {m}",
                            logic::url(s3.bucket, &prefix)
                        ))
                    })?;
                    let Listed::File(relative) = relative else {
                        return Ok(());
                    };
                    let file_path = logic::join_path(&path, relative);
                    let size = get(s3.bucket, &object.key, &file_path, Some(object.size), chunk)?;
                    staged.push(StagedFile {
                        url: s3.with_key(&object.key),
                        path: file_path,
                        size,
                    });
                    Ok(())
                })?;
                if staged.is_empty() {
                    return Err(PluginError::not_found(format!(
                        "{}: no objects under this prefix",
                        logic::url(s3.bucket, &prefix)
                    )));
                }
                staged
            }
        };
        let bytes: u64 = staged.iter().map(|s| s.size).sum();
        info!(
            "staged in {url} to {path} ({} files, {bytes} bytes)",
            staged.len()
        );
        Ok(staged)
    }

    fn stage_out(
        path: String,
        url: String,
        kind: FileKind,
    ) -> Result<Vec<StagedFile>, PluginError> {
        let s3 = parse(&url)?;
        let chunk = chunk()?;
        let entries = workspace::walk(&path)?;
        let is_file = matches!(entries.as_slice(), [one] if one.relative_path.is_empty());
        let staged = match kind {
            FileKind::File => {
                logic::file_key(&s3).map_err(PluginError::invalid_input)?;
                let [one] = entries.as_slice() else {
                    return Err(not_a_file(&path));
                };
                if !is_file {
                    return Err(not_a_file(&path));
                }
                put(&path, s3.bucket, s3.key, one.size, chunk)?;
                vec![StagedFile {
                    url: url.clone(),
                    path: path.clone(),
                    size: one.size,
                }]
            }
            FileKind::Directory => {
                if is_file {
                    return Err(PluginError::invalid_input(format!(
                        "`{path}` is a file, not a directory"
                    )));
                }
                let mut staged = Vec::with_capacity(entries.len());
                for entry in entries {
                    let key = logic::join_key(s3.key, &entry.relative_path);
                    let file_path = logic::join_path(&path, &entry.relative_path);
                    put(&file_path, s3.bucket, &key, entry.size, chunk)?;
                    staged.push(StagedFile {
                        url: s3.with_key(&key),
                        path: file_path,
                        size: entry.size,
                    });
                }
                staged
            }
        };
        let bytes: u64 = staged.iter().map(|s| s.size).sum();
        info!(
            "staged out {path} to {url} ({} files, {bytes} bytes)",
            staged.len()
        );
        Ok(staged)
    }

    fn stat(url: String) -> Result<UrlInfo, PluginError> {
        stat(&url)
    }
}

/// What an `s3://` URL holds: the object at its key, else every object under the key
/// as a directory prefix (sizes summed, the latest modification); `not-found` when
/// neither exists.
fn stat(url: &str) -> Result<UrlInfo, PluginError> {
    let s3 = parse(url)?;
    if logic::file_key(&s3).is_ok() {
        match object_store::head(s3.bucket, s3.key) {
            Ok(object) => {
                return Ok(UrlInfo {
                    kind: FileKind::File,
                    size: object.size,
                    modified_ms: object.modified_ms,
                });
            }
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(store_failed("reading", s3.bucket, s3.key, e)),
        }
    }
    let prefix = logic::dir_prefix(s3.key);
    let (mut files, mut size, mut modified_ms) = (0u64, 0u64, None::<u64>);
    for_each_object(s3.bucket, &prefix, |object| {
        files += 1;
        size = size.saturating_add(object.size);
        modified_ms = modified_ms.max(object.modified_ms);
        Ok(())
    })?;
    if files == 0 {
        return Err(PluginError::not_found(format!(
            "{}: no object, and no objects under this prefix",
            logic::url(s3.bucket, s3.key)
        )));
    }
    debug!("{url}: {files} objects, {size} bytes");
    Ok(UrlInfo {
        kind: FileKind::Directory,
        size,
        modified_ms,
    })
}

/// Calls `f` with every object under `prefix`, listed a page at a time; a store that
/// lists a key again (it would never end) is an error.
fn for_each_object(
    bucket: &str,
    prefix: &str,
    mut f: impl FnMut(&ObjectInfo) -> Result<(), PluginError>,
) -> Result<(), PluginError> {
    let mut after: Option<String> = None;
    loop {
        let page = object_store::list(bucket, prefix, after.as_deref(), PAGE)
            .map_err(|e| store_failed("listing", bucket, prefix, e))?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        if after.as_deref().is_some_and(|a| last.key.as_str() <= a) {
            return Err(PluginError::other(format!(
                "listing {}: the store repeated `{}`",
                logic::url(bucket, prefix),
                last.key
            )));
        }
        after = Some(last.key.clone());
        for object in &page {
            f(object)?;
        }
    }
}

fn not_a_file(path: &str) -> PluginError {
    PluginError::invalid_input(format!("`{path}` is a directory, not a file"))
}

/// Copies the object `key` into the workspace file at `path`; returns its size. `listed`
/// is the size a listing gave (else a `head` asks); a body of another length is
/// `unavailable` (the object changed meanwhile, or the stream broke off).
fn get(
    bucket: &str,
    key: &str,
    path: &str,
    listed: Option<u64>,
    chunk: u64,
) -> Result<u64, PluginError> {
    let expected = match listed {
        Some(size) => size,
        None => {
            object_store::head(bucket, key)
                .map_err(|e| store_failed("reading", bucket, key, e))?
                .size
        }
    };
    let body =
        object_store::get(bucket, key).map_err(|e| store_failed("reading", bucket, key, e))?;
    let file = workspace::open_write(path)?;
    let size = streams::copy(&body, &file, chunk)
        .map_err(|e| copy_failed(Way::In, bucket, key, path, e))?;
    if size != expected {
        return Err(PluginError::unavailable(format!(
            "reading {}: got {size} of {expected} bytes (did the object change?)",
            logic::url(bucket, key)
        )));
    }
    debug!("{} to {path} ({size} bytes)", logic::url(bucket, key));
    Ok(size)
}

/// Puts the workspace file at `path` (`size` bytes) as the object `key`, streamed.
fn put(path: &str, bucket: &str, key: &str, size: u64, chunk: u64) -> Result<(), PluginError> {
    let file = workspace::open_read(path)?;
    let upload = object_store::put(bucket, key, size)
        .map_err(|e| store_failed("writing", bucket, key, e))?;
    {
        // The body is a child of the upload: dropped before `finish`.
        let body = upload
            .body()
            .map_err(|e| store_failed("writing", bucket, key, e))?;
        streams::copy_exact(&file, &body, size, chunk)
            .map_err(|e| copy_failed(Way::Out, bucket, key, path, e))?;
    }
    let stored = Upload::finish(upload).map_err(|e| store_failed("writing", bucket, key, e))?;
    if stored != size {
        return Err(PluginError::unavailable(format!(
            "writing {}: the store took {stored} of {size} bytes",
            logic::url(bucket, key)
        )));
    }
    debug!("{path} to {} ({size} bytes)", logic::url(bucket, key));
    Ok(())
}

/// A store error as a plugin error of the same kind, naming the bucket and key.
fn store_failed(doing: &str, bucket: &str, key: &str, e: StoreError) -> PluginError {
    let what = logic::url(bucket, key);
    match e {
        StoreError::NotFound => PluginError::not_found(format!("{doing} {what}: not found")),
        StoreError::Denied(m) => PluginError::denied(format!("{doing} {what}: denied: {m}")),
        StoreError::InvalidInput(m) => PluginError::invalid_input(format!("{doing} {what}: {m}")),
        StoreError::Unavailable(m) => PluginError::unavailable(format!("{doing} {what}: {m}")),
        StoreError::Other(m) => PluginError::other(format!("{doing} {what}: {m}")),
    }
}

/// Which way a copy went: from the store into the workspace, or out to the store.
#[derive(Clone, Copy)]
enum Way {
    In,
    Out,
}

/// A copy between the store and the workspace that failed: the workspace side is
/// `other`, the store side `unavailable` (the host may retry).
fn copy_failed(way: Way, bucket: &str, key: &str, path: &str, e: CopyError) -> PluginError {
    let what = logic::url(bucket, key);
    match (way, e) {
        (Way::In, CopyError::Write(m)) => PluginError::other(format!("writing `{path}`: {m}")),
        (Way::Out, CopyError::Read(m)) => PluginError::other(format!("reading `{path}`: {m}")),
        (Way::Out, CopyError::Short { copied, expected }) => PluginError::other(format!(
            "reading `{path}`: it ended after {copied} of {expected} bytes (did it change?)"
        )),
        (Way::In, e) => PluginError::unavailable(format!("reading {what}: {e}")),
        (Way::Out, e) => PluginError::unavailable(format!("writing {what}: {e}")),
    }
}
