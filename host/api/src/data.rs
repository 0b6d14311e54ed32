//! `/v1/data`: the object store behind `s3://` URLs (the embedded store, or the S3
//! service the server is configured with), so that task inputs can be put and outputs
//! read without an S3 tool.
//!
//! - `GET /v1/data`: the buckets.
//! - `GET /v1/data/{bucket}?prefix=&start_after=&limit=`: objects in key order, at most
//!   `limit` (default and largest 1000); `next_start_after` is present when the page is
//!   full and continues after its last key.
//! - `PUT /v1/data/{bucket}/{key}`: store the body (`Content-Length` required; streamed,
//!   any size), 201 with the object's size and SHA-256. Atomic: readers see the old
//!   object or the new one.
//! - `GET` and `HEAD /v1/data/{bucket}/{key}`: the bytes, with `content-length`, `etag`
//!   and `x-tessera-sha256` (where the store keeps it); one `Range: bytes=…` gives 206.
//!   `?versions` lists the object's versions, `?version=V` reads an earlier one (a put
//!   keeps the object it replaces under `.versions/KEY/V`).
//! - `DELETE /v1/data/{bucket}/{key}`: 204.
//!
//! Buckets and keys follow `tessera_core::objects` (no `..`, no absolute keys): 400
//! `invalid_parameter` otherwise.
//!
//! A bucket belongs to the group of its name (`tessera_core::identity::bucket_group`):
//! members read it, writers put and delete, and for everyone else it does not exist
//! (404, left out of the list). Instance admins use every bucket.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::StreamExt;
use serde::Serialize;
use tessera_core::ErrorCode;
use tessera_core::objects::{check_bucket, check_key, check_prefix};
use tessera_objstore::{MAX_LIST, ObjectError, ObjectInfo, ObjectMeta, ObjectStore};
use tokio::sync::mpsc;

use crate::auth::Caller;
use crate::{AppState, Error};
use tessera_core::identity::{Role, bucket_group};

/// The bucket exists for the caller and it may do what `needed` allows there.
fn check_bucket_role(caller: &Caller, bucket: &str, needed: Role) -> Result<(), Error> {
    caller.check_role(needed, bucket_group(bucket), "bucket", bucket)
}

/// How long one data request may take (a large object over a slow link).
const DEADLINE: Duration = Duration::from_secs(24 * 3600);
/// Bytes per chunk of a download, and chunks read ahead.
const CHUNK: usize = 256 << 10;
const CHUNKS_AHEAD: usize = 4;

/// The header carrying an object's SHA-256 (lower-case hex).
pub const SHA256_HEADER: &str = "x-tessera-sha256";

fn deadline() -> Instant {
    Instant::now() + DEADLINE
}

fn object_error(e: ObjectError, what: &str) -> Error {
    match e {
        ObjectError::NotFound => Error::new(ErrorCode::NotFound, format!("{what} does not exist")),
        ObjectError::InvalidInput(m) => Error::new(ErrorCode::InvalidParameter, m),
        ObjectError::Conflict(m) => Error::new(ErrorCode::Conflict, m),
        ObjectError::Denied(m) => Error::new(
            ErrorCode::Forbidden,
            format!("the object store refused: {m}"),
        ),
        ObjectError::Unavailable(m) => Error::new(
            ErrorCode::Unavailable,
            format!("the object store is unavailable: {m}"),
        ),
        ObjectError::Other(m) => Error::internal("the object store failed", m),
    }
}

fn bad(e: impl ToString) -> Error {
    Error::new(ErrorCode::InvalidParameter, e.to_string())
}

/// Runs a blocking store call off the async threads.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    what: String,
    op: impl FnOnce(&dyn ObjectStore) -> Result<T, ObjectError> + Send + 'static,
) -> Result<T, Error> {
    let store = state.objects().clone();
    tokio::task::spawn_blocking(move || op(store.as_ref()))
        .await
        .map_err(|e| Error::internal("the object store call failed", e))?
        .map_err(|e| object_error(e, &what))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BucketList {
    pub buckets: Vec<String>,
}

/// The buckets the caller may read.
#[utoipa::path(
    get,
    operation_id = "list_buckets",
    path = "/v1/data",
    tag = "data",
    responses((status = 200, body = BucketList))
)]
pub async fn buckets(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<BucketList>, Error> {
    let mut buckets = blocking(&state, "the store".into(), |s| s.buckets(deadline())).await?;
    buckets.retain(|b| caller.sees(bucket_group(b)));
    Ok(Json(BucketList { buckets }))
}

/// One object as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ObjectView {
    pub bucket: String,
    pub key: String,
    pub url: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
}

impl ObjectView {
    pub(crate) fn new(bucket: &str, i: ObjectInfo) -> Self {
        ObjectView {
            bucket: bucket.to_string(),
            url: format!("s3://{bucket}/{}", i.key),
            modified: i
                .modified_ms
                .and_then(|ms| i64::try_from(ms).ok())
                .and_then(tessera_core::time_fmt::from_ms)
                .map(tessera_core::time_fmt::format_rfc3339),
            key: i.key,
            size: i.size,
            sha256: i.sha256,
            etag: i.etag,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ObjectList {
    pub objects: Vec<ObjectView>,
    /// Present when the page is full: pass it as `start_after` for the next one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_start_after: Option<String>,
}

/// `GET /v1/data/{bucket}` query.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ListQuery {
    /// Only keys starting with this.
    prefix: Option<String>,
    /// Continue after this key (`next_start_after` of the page before).
    start_after: Option<String>,
    /// 1 to 1000, default 1000.
    limit: Option<u32>,
}

/// Objects of a bucket in key order.
#[utoipa::path(
    get,
    operation_id = "list_objects",
    path = "/v1/data/{bucket}",
    tag = "data",
    params(("bucket" = String, Path), ListQuery),
    responses((status = 200, body = ObjectList))
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(bucket): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ObjectList>, Error> {
    check_bucket(&bucket).map_err(bad)?;
    check_bucket_role(&caller, &bucket, Role::Read)?;
    let (mut prefix, mut start_after, mut limit) = (String::new(), None::<String>, MAX_LIST);
    let pairs = crate::query::pairs(raw.as_deref())?;
    for (k, v) in pairs {
        match k.as_str() {
            "prefix" => prefix = v,
            "start_after" => start_after = Some(v).filter(|s| !s.is_empty()),
            "limit" => {
                limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_LIST).contains(n))
                    .ok_or_else(|| bad(format!("limit must be 1 to {MAX_LIST}")))?;
            }
            _ => {}
        }
    }
    check_prefix(&prefix).map_err(bad)?;
    let mut objects = list_objects(&state, &bucket, prefix, start_after, limit).await?;
    let next_start_after = (objects.len() == limit as usize)
        .then(|| objects.last().map(|o| o.key.clone()))
        .flatten();
    // Earlier versions are listed per object (`?versions`), not among the objects.
    objects.retain(|o| !o.key.starts_with(VERSIONS));
    Ok(Json(ObjectList {
        objects: objects
            .into_iter()
            .map(|i| ObjectView::new(&bucket, i))
            .collect(),
        next_start_after,
    }))
}

/// A page of the objects under `prefix` (the caller's right to read them checked).
pub(crate) async fn list_objects(
    state: &AppState,
    bucket: &str,
    prefix: String,
    start_after: Option<String>,
    limit: u32,
) -> Result<Vec<ObjectInfo>, Error> {
    let b = bucket.to_string();
    blocking(state, format!("bucket {bucket}"), move |s| {
        s.list(&b, &prefix, start_after.as_deref(), limit, deadline())
    })
    .await
}

/// Delete every object under `prefix` of `bucket` (none, or no bucket: nothing to do);
/// how many went.
pub(crate) async fn delete_prefix(
    state: &AppState,
    bucket: &str,
    prefix: &str,
) -> Result<u64, Error> {
    let mut n = 0;
    for o in list_all(state, bucket, prefix).await? {
        let (b, key) = (bucket.to_string(), o.key.clone());
        match blocking(state, format!("s3://{bucket}/{}", o.key), move |s| {
            s.delete(&b, &key, deadline())
        })
        .await
        {
            Ok(()) => n += 1,
            Err(Error(e)) if e.code == ErrorCode::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Every object under `prefix`, in key order, a page at a time (no bucket: none).
pub(crate) async fn list_all(
    state: &AppState,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<ObjectInfo>, Error> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = match list_objects(state, bucket, prefix.to_string(), after, MAX_LIST).await {
            Ok(p) => p,
            Err(Error(e)) if e.code == ErrorCode::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let full = page.len() == MAX_LIST as usize;
        after = page.last().map(|o| o.key.clone());
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

/// Where earlier versions of an object are kept: `.versions/KEY/VERSION` in its bucket.
const VERSIONS: &str = ".versions/";

/// A version's id: when it was written (sortable) and the start of its hash.
fn version_id(info: &ObjectInfo) -> String {
    let tag = info
        .sha256
        .as_deref()
        .or(info.etag.as_deref())
        .unwrap_or("0")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect::<String>();
    format!("{:013}-{tag}", info.modified_ms.unwrap_or(0))
}

fn version_key(key: &str, version: &str) -> String {
    format!("{VERSIONS}{key}/{version}")
}

fn not_versions_area(key: &str) -> Result<(), Error> {
    if key.starts_with(VERSIONS) || key == VERSIONS.trim_end_matches('/') {
        return Err(bad(format!(
            "keys under {VERSIONS} hold earlier versions; they are read with ?version="
        )));
    }
    Ok(())
}

/// Keep the object at `key` (if any) as a version before it is replaced: a copy, so
/// readers of `key` see the old bytes or the new, never none.
fn archive_current(store: &dyn ObjectStore, bucket: &str, key: &str) -> Result<(), ObjectError> {
    let read = match store.get(bucket, key, deadline()) {
        Ok(r) => r,
        Err(ObjectError::NotFound) => return Ok(()),
        Err(e) => return Err(e),
    };
    let target = version_key(key, &version_id(&read.info));
    let mut upload = store.put(bucket, &target, read.info.size, &read.info.meta, deadline())?;
    let mut body = read.body;
    std::io::copy(&mut body, &mut upload)
        .map_err(|e| ObjectError::Other(format!("keeping the earlier version: {e}")))?;
    upload.finish()?;
    Ok(())
}

/// One version of an object as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ObjectVersion {
    version: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    modified: Option<String>,
    current: bool,
}

/// `GET /v1/data/{bucket}/{key}?versions`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VersionList {
    bucket: String,
    key: String,
    /// Newest first; the current object is the one with `current`.
    versions: Vec<ObjectVersion>,
}

fn modified_rfc3339(ms: Option<u64>) -> Option<String> {
    tessera_core::time_fmt::from_ms(i64::try_from(ms?).ok()?)
        .map(tessera_core::time_fmt::format_rfc3339)
}

/// `?versions`: the object's current version and the earlier ones, newest first.
async fn versions(state: &AppState, bucket: &str, key: &str) -> Result<Response, Error> {
    let (b, k) = (bucket.to_string(), key.to_string());
    let current = match blocking(state, format!("s3://{bucket}/{key}"), move |s| {
        s.head(&b, &k, deadline())
    })
    .await
    {
        Ok(i) => Some(i),
        Err(Error(e)) if e.code == ErrorCode::NotFound => None,
        Err(e) => return Err(e),
    };
    let prefix = format!("{VERSIONS}{key}/");
    let mut out: Vec<ObjectVersion> = list_all(state, bucket, &prefix)
        .await?
        .into_iter()
        .filter_map(|o| {
            let version = o.key.strip_prefix(&prefix)?;
            // Only direct children: `.versions/a/b/V` belongs to key `a/b`, not `a`.
            (!version.contains('/')).then(|| ObjectVersion {
                version: version.to_string(),
                size: o.size,
                sha256: o.sha256.clone(),
                modified: modified_rfc3339(o.modified_ms),
                current: false,
            })
        })
        .collect();
    if let Some(c) = &current {
        out.push(ObjectVersion {
            version: version_id(c),
            size: c.size,
            sha256: c.sha256.clone(),
            modified: modified_rfc3339(c.modified_ms),
            current: true,
        });
    }
    if out.is_empty() {
        return Err(Error::new(
            ErrorCode::NotFound,
            format!("s3://{bucket}/{key} does not exist"),
        ));
    }
    out.reverse();
    Ok(Json(VersionList {
        bucket: bucket.to_string(),
        key: key.to_string(),
        versions: out,
    })
    .into_response())
}

/// A single `bytes=` range against an object of `size` bytes: `start..end`; `None`
/// when it cannot be satisfied.
fn byte_range(spec: &str, size: u64) -> Result<Option<(u64, u64)>, Error> {
    let malformed = || bad(format!("Range {spec:?} is not one bytes=START-END range"));
    let ranges = spec.trim().strip_prefix("bytes=").ok_or_else(malformed)?;
    if ranges.contains(',') {
        return Err(bad("only a single byte range is served"));
    }
    let (a, b) = ranges.split_once('-').ok_or_else(malformed)?;
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.is_empty(), b.is_empty()) {
        // The last `b` bytes.
        (true, false) => {
            let n: u64 = b.parse().map_err(|_| malformed())?;
            (n > 0).then(|| (size.saturating_sub(n), size))
        }
        (false, _) => {
            let start: u64 = a.parse().map_err(|_| malformed())?;
            let end = if b.is_empty() {
                size
            } else {
                let last: u64 = b.parse().map_err(|_| malformed())?;
                if last < start {
                    return Err(malformed());
                }
                (last + 1).min(size)
            };
            (start < size).then_some((start, end))
        }
        (true, true) => return Err(malformed()),
    };
    Ok(range.filter(|(s, e)| s < e))
}

pub(crate) fn checked(bucket: &str, key: &str) -> Result<String, Error> {
    check_bucket(bucket).map_err(bad)?;
    check_key(key).map_err(bad)?;
    Ok(format!("s3://{bucket}/{key}"))
}

/// A chunk of an upload's body, or its end.
enum Part {
    Bytes(Bytes),
    End,
}

/// Store an object (the body, streamed; `Content-Length` required). The object it
/// replaces stays readable as an earlier version.
#[utoipa::path(
    put,
    operation_id = "put_object",
    path = "/v1/data/{bucket}/{*key}",
    tag = "data",
    params(
        ("bucket" = String, Path),
        ("key" = String, Path, description = "The object's key; may contain `/`."),
        ("content-type" = Option<String>, Header, description = "Kept and returned on download."),
    ),
    request_body(content = Option<Vec<u8>>, content_type = "application/octet-stream",
        description = "The object's bytes (none: an empty object)."),
    responses((status = 201, body = ObjectView))
)]
pub async fn put(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let what = checked(&bucket, &key)?;
    check_bucket_role(&caller, &bucket, Role::Write)?;
    not_versions_area(&key)?;
    let meta = object_meta(&headers)?;
    let size: u64 = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            Error::new(
                ErrorCode::LengthRequired,
                "send the object's size as Content-Length",
            )
        })?;
    let (tx, mut rx) = mpsc::channel::<Part>(CHUNKS_AHEAD);
    let store = state.objects().clone();
    let (b, k) = (bucket.clone(), key.clone());
    // The store writes on a blocking thread from what this handler receives; a body that
    // stops short (the client went away) never sends `End`, and the upload is abandoned.
    let writer = tokio::task::spawn_blocking(move || -> Result<ObjectInfo, ObjectError> {
        archive_current(store.as_ref(), &b, &k)?;
        let mut upload = store.put(&b, &k, size, &meta, deadline())?;
        loop {
            match rx.blocking_recv() {
                Some(Part::Bytes(bytes)) => upload.write_all(&bytes).map_err(|e| {
                    match e.into_inner().map(|inner| inner.downcast::<ObjectError>()) {
                        Some(Ok(obj)) => *obj,
                        Some(Err(other)) => ObjectError::Other(other.to_string()),
                        None => ObjectError::Other("writing the object failed".into()),
                    }
                })?,
                Some(Part::End) => break,
                None => return Err(ObjectError::InvalidInput("the body ended early".into())),
            }
        }
        upload.finish()?;
        store.head(&b, &k, deadline())
    });
    let mut stream = body.into_data_stream();
    let mut received = 0u64;
    let mut ended = true;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                received += bytes.len() as u64;
                if tx.send(Part::Bytes(bytes)).await.is_err() {
                    break; // the writer stopped; it says why
                }
            }
            Err(e) => {
                tracing::warn!(object = %what, error = %e, "reading an upload's body failed");
                ended = false;
                break;
            }
        }
    }
    if ended && received == size {
        let _ = tx.send(Part::End).await;
    }
    drop(tx);
    let info = writer
        .await
        .map_err(|e| Error::internal("the upload failed", e))?
        .map_err(|e| object_error(e, &what))?;
    tracing::info!(object = %what, size = info.size, "object stored");
    Ok((StatusCode::CREATED, Json(ObjectView::new(&bucket, info))).into_response())
}

/// The prefix of a user metadata header (`x-tessera-meta-NAME: VALUE`).
pub const META_PREFIX: &str = "x-tessera-meta-";
/// The most bytes of user metadata an object carries (names and values; S3's limit).
const MAX_METADATA_BYTES: usize = 2048;

/// An upload's content type (`Content-Type`, kept as sent) and user metadata
/// (`x-tessera-meta-*` headers: names of lower-case letters, digits and `-`, printable
/// values), or why they cannot be kept.
fn object_meta(headers: &HeaderMap) -> Result<ObjectMeta, Error> {
    let printable = |v: &str| v.bytes().all(|b| (0x20..0x7f).contains(&b));
    let content_type = match headers.get(header::CONTENT_TYPE) {
        None => None,
        Some(v) => {
            let v = v
                .to_str()
                .ok()
                .filter(|v| printable(v) && !v.is_empty() && v.len() <= 255)
                .ok_or_else(|| bad("Content-Type must be printable ASCII, at most 255 bytes"))?;
            Some(v.to_string())
        }
    };
    let mut metadata = std::collections::BTreeMap::new();
    let mut bytes = 0;
    for (name, value) in headers {
        let Some(n) = name.as_str().strip_prefix(META_PREFIX) else {
            continue;
        };
        let ok_name = !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let v = value.to_str().ok().filter(|v| printable(v));
        let (true, Some(v)) = (ok_name, v) else {
            return Err(bad(format!(
                "{}: metadata names are lower-case letters, digits and '-', values printable ASCII",
                name.as_str()
            )));
        };
        bytes += n.len() + v.len();
        metadata.insert(n.to_string(), v.to_string());
    }
    if bytes > MAX_METADATA_BYTES {
        return Err(bad(format!(
            "the metadata takes {bytes} bytes, more than {MAX_METADATA_BYTES}"
        )));
    }
    Ok(ObjectMeta {
        content_type,
        metadata,
    })
}

fn object_headers(info: &ObjectInfo) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(info.size));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let content_type = info
        .meta
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, content_type);
    for (k, v) in &info.meta.metadata {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(format!("{META_PREFIX}{k}").as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.insert(name, value);
        }
    }
    if let Some(v) = info
        .etag
        .as_deref()
        .and_then(|e| HeaderValue::from_str(&format!("\"{e}\"")).ok())
    {
        h.insert(header::ETAG, v);
    }
    if let Some(v) = info
        .sha256
        .as_deref()
        .and_then(|s| HeaderValue::from_str(s).ok())
    {
        h.insert(SHA256_HEADER, v);
    }
    h
}

/// An object's headers (size, ETag, SHA-256, content type, metadata).
#[utoipa::path(
    head,
    operation_id = "head_object",
    path = "/v1/data/{bucket}/{*key}",
    tag = "data",
    params(("bucket" = String, Path), ("key" = String, Path), ObjectQuery),
    responses((status = 200, description = "The object exists"))
)]
pub async fn head(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((bucket, key)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Error> {
    let what = checked(&bucket, &key)?;
    check_bucket_role(&caller, &bucket, Role::Read)?;
    let pairs = crate::query::pairs(raw.as_deref())?;
    let (key, what) = at_version(&state, &bucket, key, what, &pairs).await?;
    let info = blocking(&state, what, move |s| s.head(&bucket, &key, deadline())).await?;
    Ok((StatusCode::OK, object_headers(&info)).into_response())
}

/// `GET`/`HEAD /v1/data/{bucket}/{key}` query.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ObjectQuery {
    /// An earlier version (from `?versions`).
    version: Option<String>,
    /// Present: list the object's versions instead of reading it.
    versions: Option<String>,
}

/// Download an object (streamed); one `Range: bytes=…` answers 206 with that part.
#[utoipa::path(
    get,
    operation_id = "get_object",
    path = "/v1/data/{bucket}/{*key}",
    tag = "data",
    params(("bucket" = String, Path), ("key" = String, Path), ObjectQuery,
        ("range" = Option<String>, Header, description = "One `bytes=START-END` range.")),
    responses(
        (status = 200, description = "The object's bytes, or its versions with `?versions`",
            content((Vec<u8> = "application/octet-stream"), (VersionList = "application/json"))),
        (status = 206, description = "The requested range", content_type = "application/octet-stream", body = Vec<u8>),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((bucket, key)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let what = checked(&bucket, &key)?;
    check_bucket_role(&caller, &bucket, Role::Read)?;
    let pairs = crate::query::pairs(raw.as_deref())?;
    if pairs.iter().any(|(k, _)| k == "versions") {
        return versions(&state, &bucket, &key).await;
    }
    let (key, what) = at_version(&state, &bucket, key, what, &pairs).await?;
    match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(spec) => {
            let spec = spec.to_string();
            ranged(&state, bucket, key, what, &spec).await
        }
        None => download(&state, bucket, key, what).await,
    }
}

/// The key that holds the version `?version=` names (the object's own key when that is
/// its current version), and how to name it in errors.
async fn at_version(
    state: &AppState,
    bucket: &str,
    key: String,
    what: String,
    pairs: &[(String, String)],
) -> Result<(String, String), Error> {
    let Some(v) = pairs
        .iter()
        .find(|(k, v)| k == "version" && !v.is_empty())
        .map(|(_, v)| v.clone())
    else {
        return Ok((key, what));
    };
    let (b, k) = (bucket.to_string(), key.clone());
    let current = blocking(state, what.clone(), move |s| s.head(&b, &k, deadline()))
        .await
        .ok();
    if current.as_ref().map(version_id).as_deref() == Some(v.as_str()) {
        return Ok((key, what));
    }
    if v.contains('/') || v.starts_with('.') {
        return Err(bad(format!("{v:?} is not a version id")));
    }
    Ok((version_key(&key, &v), format!("{what} version {v}")))
}

/// A `Range` request: 206 with the bytes asked for, 416 when none of them exist.
async fn ranged(
    state: &AppState,
    bucket: String,
    key: String,
    what: String,
    spec: &str,
) -> Result<Response, Error> {
    let (b, k) = (bucket.clone(), key.clone());
    let info = blocking(state, what.clone(), move |s| s.head(&b, &k, deadline())).await?;
    let Some((start, end)) = byte_range(spec, info.size)? else {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", info.size)) {
            h.insert(header::CONTENT_RANGE, v);
        }
        return Ok((
            StatusCode::RANGE_NOT_SATISFIABLE,
            h,
            Error::new(
                ErrorCode::InvalidParameter,
                format!("Range {spec:?} is outside the object's {} bytes", info.size),
            ),
        )
            .into_response());
    };
    let object = blocking(state, what.clone(), move |s| {
        s.get_range(&bucket, &key, start, end, deadline())
    })
    .await?;
    let mut h = object_headers(&object.info);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{}", end - 1, object.info.size))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok((
        StatusCode::PARTIAL_CONTENT,
        h,
        stream_body(object.body, what),
    )
        .into_response())
}

/// A reader as a streamed response body (read on a blocking thread, a few chunks ahead).
fn stream_body(body: Box<dyn Read + Send>, what: String) -> Body {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(CHUNKS_AHEAD);
    tokio::task::spawn_blocking(move || pump(body, &tx, &what));
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// An object's bytes as a streamed response (the caller's right to read it checked).
pub(crate) async fn download(
    state: &AppState,
    bucket: String,
    key: String,
    what: String,
) -> Result<Response, Error> {
    let object = blocking(state, what.clone(), move |s| {
        s.get(&bucket, &key, deadline())
    })
    .await?;
    Ok((
        StatusCode::OK,
        object_headers(&object.info),
        stream_body(object.body, what),
    )
        .into_response())
}

/// Reads `reader` into `tx` chunk by chunk until it ends, fails, or the client goes away.
fn pump(mut reader: Box<dyn Read + Send>, tx: &mpsc::Sender<std::io::Result<Bytes>>, what: &str) {
    loop {
        let mut buf = vec![0u8; CHUNK];
        match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(object = %what, error = %e, "reading an object failed mid-download");
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
}

#[utoipa::path(
    delete,
    operation_id = "delete_object",
    path = "/v1/data/{bucket}/{*key}",
    tag = "data",
    params(("bucket" = String, Path), ("key" = String, Path)),
    responses((status = 204, description = "Deleted"))
)]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((bucket, key)): Path<(String, String)>,
) -> Result<StatusCode, Error> {
    let what = checked(&bucket, &key)?;
    check_bucket_role(&caller, &bucket, Role::Write)?;
    not_versions_area(&key)?;
    let log = what.clone();
    blocking(&state, what, move |s| s.delete(&bucket, &key, deadline())).await?;
    tracing::info!(object = %log, "object deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The store as the handlers share it.
pub type Objects = Arc<dyn ObjectStore>;
