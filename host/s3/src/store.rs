//! The async client.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
};
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;

use crate::config::S3Config;
use crate::error::{S3Error, Scrubber, chain, from_sdk, scrub};
pub use tessera_objstore::{ObjectInfo, ObjectMeta};

const MIB: u64 = 1024 * 1024;
/// Objects larger than this are written as multipart uploads, smaller ones in one
/// `PutObject`.
pub const MULTIPART_THRESHOLD: u64 = 64 * MIB;
/// The part size of multipart uploads (grown for objects over 10,000 parts, S3's limit).
pub const PART_SIZE: u64 = 16 * MIB;
const MAX_PARTS: u64 = 10_000;
/// S3's largest object.
const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * MIB;
/// ListObjectsV2 returns at most this many keys per request.
const MAX_KEYS_PER_LIST: u32 = 1000;
/// Chunks buffered between the body's producer and the request (each at most the
/// producer's chunk size).
const BODY_CHANNEL_CHUNKS: usize = 2;

/// An S3 client over `aws-sdk-s3`, for use on a tokio runtime. Cheap to clone (clones
/// share connections).
#[derive(Clone)]
pub struct S3Client {
    client: Client,
    scrubber: Scrubber,
    /// The endpoint, for logs ("AWS" when none is configured).
    endpoint: String,
}

impl fmt::Debug for S3Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Client").finish_non_exhaustive()
    }
}

impl S3Client {
    /// A client for `config`. Makes no request; needs no runtime.
    ///
    /// Retries: the SDK's standard mode, 3 attempts, for requests whose body can be
    /// replayed (all but the streamed `PutObject`/`UploadPart` bodies). Time-outs: 10 s to
    /// connect; a download that stalls (no bytes for 20 s) fails, an upload may wait on
    /// its producer for as long as it takes. Checksums: only where S3 requires them
    /// (integrity of the bytes rests on the `Content-Length` checks and TCP, or TLS for
    /// `https://`).
    pub fn new(config: S3Config) -> Result<Self, S3Error> {
        if config.region.trim().is_empty() {
            return Err(S3Error::InvalidInput("the S3 region is empty".into()));
        }
        if config.access_key_id.is_empty() || config.secret_access_key.expose().is_empty() {
            return Err(S3Error::InvalidInput(
                "the S3 access key id or secret is empty".into(),
            ));
        }
        let http_client = match &config.endpoint {
            Some(endpoint) if endpoint.starts_with("http://") => {
                aws_smithy_http_client::Builder::new().build_http()
            }
            Some(endpoint) if !endpoint.starts_with("https://") => {
                return Err(S3Error::InvalidInput(format!(
                    "the S3 endpoint {endpoint:?} is not an http:// or https:// URL"
                )));
            }
            _ => aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
                .build_https(),
        };
        let credentials = Credentials::new(
            &config.access_key_id,
            config.secret_access_key.expose(),
            None,
            None,
            "tessera-s3",
        );
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(credentials)
            .http_client(http_client)
            .force_path_style(config.path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .stalled_stream_protection(
                StalledStreamProtectionConfig::enabled()
                    .upload_enabled(false)
                    .grace_period(Duration::from_secs(20))
                    .build(),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .build(),
            );
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint.trim_end_matches('/'));
        }
        Ok(Self {
            endpoint: config.endpoint.clone().unwrap_or_else(|| "AWS".into()),
            client: Client::from_conf(builder.build()),
            scrubber: Scrubber::new(&config.access_key_id, config.secret_access_key.expose()),
        })
    }

    /// The endpoint this client talks to ("AWS" when none was configured).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The SDK client underneath, for what this API does not cover (benchmarks,
    /// diagnostics). Errors from it are not scrubbed.
    pub fn sdk_client(&self) -> &Client {
        &self.client
    }

    /// Metadata of one object; `None` when the bucket has no such key. A missing bucket
    /// is an error (`NotFound` or `Denied`, as the store answers it).
    pub async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, S3Error> {
        check_names(bucket, Some(key))?;
        let target = format!("{bucket}/{key}");
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectInfo {
                key: key.to_owned(),
                size: size_of(out.content_length),
                meta: object_meta(out.content_type.as_deref(), out.metadata.as_ref()),
                etag: out.e_tag.as_deref().map(unquote),
                modified_ms: out.last_modified.as_ref().and_then(millis),
                sha256: None,
            })),
            Err(err) => {
                // A HEAD response has no body, so a 404 names no error code: it may be the
                // key or the bucket that is missing. Ask about the bucket to tell.
                let missing = matches!(err.as_service_error(), Some(HeadObjectError::NotFound(_)))
                    || err
                        .raw_response()
                        .is_some_and(|r| r.status().as_u16() == 404);
                if !missing {
                    return Err(from_sdk("HeadObject", &target, err, &self.scrubber));
                }
                match self.client.head_bucket().bucket(bucket).send().await {
                    Ok(_) => Ok(None),
                    Err(err) => Err(from_sdk("HeadBucket", bucket, err, &self.scrubber)),
                }
            }
        }
    }

    /// The objects whose keys start with `prefix`, in key order, after `start_after`
    /// (exclusive) when given, at most `limit` of them (several requests when `limit` is
    /// over 1,000). An empty list means there are no more.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ObjectInfo>, S3Error> {
        check_names(bucket, None)?;
        if limit == 0 {
            return Err(S3Error::InvalidInput(
                "a list limit must be at least 1".into(),
            ));
        }
        let target = format!("{bucket}/{prefix}*");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let want = (limit - out.len() as u32).min(MAX_KEYS_PER_LIST);
            let mut req = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .max_keys(want as i32);
            if !prefix.is_empty() {
                req = req.prefix(prefix);
            }
            match (&token, start_after) {
                (Some(token), _) => req = req.continuation_token(token),
                (None, Some(after)) => req = req.start_after(after),
                (None, None) => {}
            }
            let page = req
                .send()
                .await
                .map_err(|e| from_sdk("ListObjectsV2", &target, e, &self.scrubber))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                out.push(ObjectInfo {
                    key: key.to_owned(),
                    size: size_of(object.size),
                    meta: Default::default(),
                    etag: object.e_tag().map(unquote),
                    modified_ms: object.last_modified().and_then(millis),
                    sha256: None,
                });
            }
            token = page.next_continuation_token;
            if out.len() >= limit as usize || !page.is_truncated.unwrap_or(false) || token.is_none()
            {
                break;
            }
        }
        out.truncate(limit as usize);
        Ok(out)
    }

    /// The buckets these credentials can see, sorted by name.
    pub async fn buckets(&self) -> Result<Vec<String>, S3Error> {
        let out = self
            .client
            .list_buckets()
            .send()
            .await
            .map_err(|e| from_sdk("ListBuckets", "", e, &self.scrubber))?;
        let mut names: Vec<String> = out
            .buckets()
            .iter()
            .filter_map(|b| b.name().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Opens an object for reading: the response's headers are in, its body is pulled as
    /// [`ObjectBody::next_chunk`] is called.
    pub async fn get(&self, bucket: &str, key: &str) -> Result<ObjectBody, S3Error> {
        self.get_range(bucket, key, None).await
    }

    /// [`S3Client::get`] of bytes `start..end` only (`None`: all of them); the info
    /// describes the whole object (its size from the answer's `Content-Range`).
    pub async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> Result<ObjectBody, S3Error> {
        check_names(bucket, Some(key))?;
        let target = format!("{bucket}/{key}");
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_range(range.map(|(a, b)| format!("bytes={a}-{}", b.saturating_sub(1))))
            .send()
            .await
            .map_err(|e| from_sdk("GetObject", &target, e, &self.scrubber))?;
        // `bytes a-b/TOTAL`: the whole object's size.
        let total = out
            .content_range
            .as_deref()
            .and_then(|r| r.rsplit_once('/'))
            .and_then(|(_, t)| t.parse::<u64>().ok());
        let info = ObjectInfo {
            key: key.to_owned(),
            size: total.unwrap_or_else(|| size_of(out.content_length)),
            meta: object_meta(out.content_type.as_deref(), out.metadata.as_ref()),
            etag: out.e_tag.as_deref().map(unquote),
            modified_ms: out.last_modified.as_ref().and_then(millis),
            sha256: None,
        };
        Ok(ObjectBody {
            expected: size_of(out.content_length),
            info,
            stream: out.body,
            received: 0,
            target,
            scrubber: self.scrubber.clone(),
        })
    }

    /// Writes an object of exactly `size` bytes from `body`, streaming: one `PutObject` up
    /// to [`MULTIPART_THRESHOLD`], a multipart upload of [`PART_SIZE`] parts above it
    /// (aborted if anything fails). The body is pulled as the request sends it; a body
    /// that ends early or goes on past `size` is `InvalidInput` and stores nothing (the
    /// last chunk is held back until the body is known to end). Returns the stored size.
    ///
    /// The streamed requests are not retried (their bodies cannot be replayed): retry the
    /// whole `put` on `Unavailable`. Dropping the future midway abandons a multipart
    /// upload without aborting it (stores expire those by lifecycle rules).
    pub async fn put<S>(&self, bucket: &str, key: &str, size: u64, body: S) -> Result<u64, S3Error>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
    {
        self.put_with(bucket, key, size, &ObjectMeta::default(), body)
            .await
    }

    /// [`S3Client::put`] with a content type and user metadata.
    pub async fn put_with<S>(
        &self,
        bucket: &str,
        key: &str,
        size: u64,
        meta: &ObjectMeta,
        body: S,
    ) -> Result<u64, S3Error>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
    {
        check_names(bucket, Some(key))?;
        if size > MAX_OBJECT_SIZE {
            return Err(S3Error::InvalidInput(format!(
                "{size} bytes is over S3's largest object ({MAX_OBJECT_SIZE} bytes)"
            )));
        }
        let target = format!("{bucket}/{key}");
        let mut source = Source {
            stream: body,
            pending: None,
            taken: 0,
            size,
            target: target.clone(),
        };
        let result = if size <= MULTIPART_THRESHOLD {
            self.put_single(bucket, key, meta, &mut source).await
        } else {
            self.put_multipart(bucket, key, meta, &mut source).await
        };
        match result {
            Ok(()) => Ok(size),
            Err(S3Error::Unavailable(message)) => Err(self.diagnose(bucket, message).await),
            Err(e) => Err(scrub(e, &self.scrubber)),
        }
    }

    /// A store that refuses a request while its body is still being sent (wrong
    /// credentials, no permission, no such bucket) closes the connection, and the client,
    /// which does not wait for `100 Continue`, sees a broken pipe rather than the answer.
    /// So an upload that failed as `Unavailable` asks about the bucket: if that is refused
    /// too, the refusal is the error.
    async fn diagnose(&self, bucket: &str, message: String) -> S3Error {
        let probe = self.client.head_bucket().bucket(bucket).send().await;
        let error = match probe.map_err(|e| from_sdk("HeadBucket", bucket, e, &self.scrubber)) {
            Err(S3Error::Denied(why)) => S3Error::Denied(format!("{message}; then {why}")),
            Err(S3Error::NotFound) => S3Error::NotFound,
            _ => S3Error::Unavailable(message),
        };
        scrub(error, &self.scrubber)
    }

    /// Deletes an object (no error if it does not exist).
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), S3Error> {
        check_names(bucket, Some(key))?;
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                from_sdk(
                    "DeleteObject",
                    &format!("{bucket}/{key}"),
                    e,
                    &self.scrubber,
                )
            })
    }

    async fn put_single<S>(
        &self,
        bucket: &str,
        key: &str,
        meta: &ObjectMeta,
        source: &mut Source<S>,
    ) -> Result<(), S3Error>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
    {
        let size = source.size;
        if size == 0 {
            source.check_end().await?;
            return self
                .client
                .put_object()
                .bucket(bucket)
                .key(key)
                .set_content_type(meta.content_type.clone())
                .set_metadata(user_metadata(meta))
                .content_length(0)
                .body(ByteStream::from_static(b""))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| from_sdk("PutObject", &source.target, e, &self.scrubber));
        }
        let (tx, rx) = mpsc::channel(BODY_CHANNEL_CHUNKS);
        let request = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .set_content_type(meta.content_type.clone())
            .set_metadata(user_metadata(meta))
            .content_length(size as i64)
            .body(ByteStream::from_body_1_x(ChannelBody { rx, len: size }))
            .send();
        let target = source.target.clone();
        let feed = source.feed(size, tx, true);
        send_with_body(request, feed)
            .await?
            .map(|_| ())
            .map_err(|e| from_sdk("PutObject", &target, e, &self.scrubber))
    }

    async fn put_multipart<S>(
        &self,
        bucket: &str,
        key: &str,
        meta: &ObjectMeta,
        source: &mut Source<S>,
    ) -> Result<(), S3Error>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
    {
        let target = source.target.clone();
        let created = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .set_content_type(meta.content_type.clone())
            .set_metadata(user_metadata(meta))
            .send()
            .await
            .map_err(|e| from_sdk("CreateMultipartUpload", &target, e, &self.scrubber))?;
        let Some(upload_id) = created.upload_id else {
            return Err(S3Error::Other(format!(
                "CreateMultipartUpload {target}: the store returned no upload id"
            )));
        };
        let result = self.upload_parts(bucket, key, &upload_id, source).await;
        if result.is_err() {
            // Best effort: the store would otherwise keep the parts until a lifecycle rule
            // expires them.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    async fn upload_parts<S>(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        source: &mut Source<S>,
    ) -> Result<(), S3Error>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
    {
        let size = source.size;
        let target = source.target.clone();
        let part_size = part_size_for(size);
        let mut parts = Vec::new();
        let mut offset = 0;
        let mut number = 1;
        while offset < size {
            let len = part_size.min(size - offset);
            let last = offset + len == size;
            let (tx, rx) = mpsc::channel(BODY_CHANNEL_CHUNKS);
            let request = self
                .client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(len as i64)
                .body(ByteStream::from_body_1_x(ChannelBody { rx, len }))
                .send();
            let feed = source.feed(len, tx, last);
            let out = send_with_body(request, feed)
                .await?
                .map_err(|e| from_sdk("UploadPart", &target, e, &self.scrubber))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag)
                    .build(),
            );
            offset += len;
            number += 1;
        }
        self.client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| from_sdk("CompleteMultipartUpload", &target, e, &self.scrubber))
    }
}

/// Runs a request whose body is being fed by `feed`. The feed's own error (the producer
/// failed, or sent too few or too many bytes) comes first: the request then fails only
/// as a consequence. If the request ends first (the store refused it), the feed is
/// dropped, which stops pulling from the producer.
async fn send_with_body<R, F>(request: R, feed: F) -> Result<R::Output, S3Error>
where
    R: Future,
    F: Future<Output = Result<(), S3Error>>,
{
    tokio::pin!(request, feed);
    let mut fed: Option<Result<(), S3Error>> = None;
    loop {
        tokio::select! {
            sent = &mut request => {
                return match fed {
                    Some(Err(e)) => Err(e),
                    _ => Ok(sent),
                };
            }
            result = &mut feed, if fed.is_none() => {
                fed = Some(result);
            }
        }
    }
}

/// The part size for an object of `size` bytes: [`PART_SIZE`], or more (whole MiB) when
/// that would take over 10,000 parts.
fn part_size_for(size: u64) -> u64 {
    let min = size.div_ceil(MAX_PARTS);
    PART_SIZE.max(min.div_ceil(MIB) * MIB)
}

/// The caller's body, cut into the requests' bodies.
struct Source<S> {
    stream: S,
    /// What is left of a chunk that straddled a part boundary.
    pending: Option<Bytes>,
    taken: u64,
    size: u64,
    target: String,
}

impl<S> Source<S>
where
    S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
{
    /// Sends the next `len` bytes to `tx`. With `last`, the final chunk is sent only once
    /// the stream has ended, so that a body longer than announced is refused before the
    /// store has it all.
    async fn feed(
        &mut self,
        len: u64,
        tx: mpsc::Sender<io::Result<Bytes>>,
        last: bool,
    ) -> Result<(), S3Error> {
        let mut left = len;
        while left > 0 {
            let mut chunk = match self.pending.take() {
                Some(chunk) => chunk,
                None => match self.stream.next().await {
                    Some(Ok(chunk)) => chunk,
                    Some(Err(e)) => {
                        let _ = tx.send(Err(io::Error::other("the body failed"))).await;
                        return Err(S3Error::Other(format!(
                            "reading the body of {} after {} bytes: {e}",
                            self.target, self.taken
                        )));
                    }
                    None => {
                        let _ = tx.send(Err(io::Error::other("the body ended early"))).await;
                        return Err(S3Error::InvalidInput(format!(
                            "the body of {} ended after {} of {} bytes",
                            self.target, self.taken, self.size
                        )));
                    }
                },
            };
            if chunk.is_empty() {
                continue;
            }
            if chunk.len() as u64 > left {
                self.pending = Some(chunk.split_off(left as usize));
            }
            left -= chunk.len() as u64;
            self.taken += chunk.len() as u64;
            if left == 0
                && last
                && let Err(e) = self.check_end().await
            {
                let _ = tx.send(Err(io::Error::other("the body is too long"))).await;
                return Err(e);
            }
            if tx.send(Ok(chunk)).await.is_err() {
                // The request stopped reading: its own error says why.
                return Ok(());
            }
        }
        Ok(())
    }

    /// Succeeds if the stream has nothing after the announced size.
    async fn check_end(&mut self) -> Result<(), S3Error> {
        let too_long = || {
            S3Error::InvalidInput(format!(
                "the body of {} is longer than the {} bytes announced",
                self.target, self.size
            ))
        };
        if self.pending.as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(too_long());
        }
        loop {
            match self.stream.next().await {
                None => return Ok(()),
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(Ok(_)) => return Err(too_long()),
                Some(Err(e)) => {
                    return Err(S3Error::Other(format!(
                        "reading the body of {} after {} bytes: {e}",
                        self.target, self.taken
                    )));
                }
            }
        }
    }
}

/// A request body fed through a channel, of a known length.
struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    len: u64,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|chunk| chunk.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

/// An object's user metadata as S3 takes it (`None`: none).
fn user_metadata(meta: &ObjectMeta) -> Option<std::collections::HashMap<String, String>> {
    (!meta.metadata.is_empty()).then(|| {
        meta.metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

/// An object's content type and user metadata from a response (names lower-case).
fn object_meta(
    content_type: Option<&str>,
    metadata: Option<&std::collections::HashMap<String, String>>,
) -> ObjectMeta {
    ObjectMeta {
        content_type: content_type.map(str::to_string),
        metadata: metadata
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
    }
}

/// The body of an object being read.
pub struct ObjectBody {
    info: ObjectInfo,
    stream: ByteStream,
    /// The bytes the body carries (the whole object, or the range asked for).
    expected: u64,
    received: u64,
    target: String,
    scrubber: Scrubber,
}

impl fmt::Debug for ObjectBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectBody")
            .field("info", &self.info)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl ObjectBody {
    /// The object's metadata, from the response's headers.
    pub fn info(&self) -> &ObjectInfo {
        &self.info
    }

    /// The next chunk of the body, `None` at its end. A body that ends before the
    /// announced size is an error (`Unavailable`).
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, S3Error> {
        match self.stream.next().await {
            Some(Ok(chunk)) => {
                self.received += chunk.len() as u64;
                Ok(Some(chunk))
            }
            Some(Err(e)) => Err(scrub(
                S3Error::Unavailable(format!(
                    "reading {} after {} bytes: {}",
                    self.target,
                    self.received,
                    chain(&e)
                )),
                &self.scrubber,
            )),
            None if self.received != self.expected => Err(S3Error::Unavailable(format!(
                "reading {}: the body ended after {} of {} bytes",
                self.target, self.received, self.expected
            ))),
            None => Ok(None),
        }
    }

    /// The SDK's byte stream itself (no length check).
    pub fn into_byte_stream(self) -> ByteStream {
        self.stream
    }
}

/// Refuses what S3 would refuse anyway, before any request.
fn check_names(bucket: &str, key: Option<&str>) -> Result<(), S3Error> {
    if bucket.is_empty() {
        return Err(S3Error::InvalidInput("the bucket name is empty".into()));
    }
    if bucket.contains('/') {
        return Err(S3Error::InvalidInput(format!(
            "the bucket name {bucket:?} contains '/'"
        )));
    }
    if let Some(key) = key {
        if key.is_empty() {
            return Err(S3Error::InvalidInput("the object key is empty".into()));
        }
        if key.len() > 1024 {
            return Err(S3Error::InvalidInput(format!(
                "the object key is {} bytes long (at most 1024)",
                key.len()
            )));
        }
    }
    Ok(())
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

fn size_of(length: Option<i64>) -> u64 {
    length.map_or(0, |n| n.max(0) as u64)
}

fn millis(time: &DateTime) -> Option<u64> {
    time.to_millis().ok().and_then(|ms| u64::try_from(ms).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_stay_within_ten_thousand_parts() {
        assert_eq!(part_size_for(100 * MIB), PART_SIZE);
        assert_eq!(part_size_for(MAX_PARTS * PART_SIZE), PART_SIZE);
        let big = MAX_PARTS * PART_SIZE + 1;
        let part = part_size_for(big);
        assert!(part > PART_SIZE && part.is_multiple_of(MIB));
        assert!(big.div_ceil(part) <= MAX_PARTS);
        assert!(MAX_OBJECT_SIZE.div_ceil(part_size_for(MAX_OBJECT_SIZE)) <= MAX_PARTS);
    }

    #[test]
    fn names_are_checked_before_any_request() {
        assert!(matches!(
            check_names("", Some("k")),
            Err(S3Error::InvalidInput(_))
        ));
        assert!(matches!(
            check_names("b/c", None),
            Err(S3Error::InvalidInput(_))
        ));
        assert!(matches!(
            check_names("b", Some("")),
            Err(S3Error::InvalidInput(_))
        ));
        assert!(matches!(
            check_names("b", Some(&"k".repeat(1025))),
            Err(S3Error::InvalidInput(_))
        ));
        assert!(check_names("b", Some("a/b c")).is_ok());
        assert_eq!(unquote("\"abc\""), "abc");
    }

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = io::Result<Bytes>> + Send + Unpin {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    async fn feed_all(
        size: u64,
        cut: &[u64],
        parts: &[&'static [u8]],
    ) -> (Result<(), S3Error>, Vec<Vec<u8>>) {
        let mut source = Source {
            stream: chunks(parts),
            pending: None,
            taken: 0,
            size,
            target: "b/k".into(),
        };
        let mut bodies = Vec::new();
        for (i, &len) in cut.iter().enumerate() {
            let (tx, mut rx) = mpsc::channel(64);
            let result = source.feed(len, tx, i + 1 == cut.len()).await;
            let mut body = Vec::new();
            while let Some(Ok(chunk)) = rx.recv().await {
                body.extend_from_slice(&chunk);
            }
            bodies.push(body);
            if result.is_err() {
                return (result, bodies);
            }
        }
        (Ok(()), bodies)
    }

    #[tokio::test]
    async fn feeding_cuts_chunks_at_part_boundaries() {
        let (r, bodies) = feed_all(7, &[3, 3, 1], &[b"ab", b"cdef", b"", b"g"]).await;
        assert_eq!(r, Ok(()));
        assert_eq!(
            bodies,
            vec![b"abc".to_vec(), b"def".to_vec(), b"g".to_vec()]
        );
    }

    #[tokio::test]
    async fn a_short_or_long_body_is_invalid_input() {
        let (r, _) = feed_all(7, &[3, 4], &[b"abcdef"]).await;
        assert!(matches!(r, Err(S3Error::InvalidInput(m)) if m.contains("ended after 6 of 7")));
        let (r, bodies) = feed_all(3, &[3], &[b"ab", b"cd"]).await;
        assert!(matches!(r, Err(S3Error::InvalidInput(m)) if m.contains("longer")));
        // The last chunk was held back: the request never saw all the bytes.
        assert_eq!(bodies, vec![b"ab".to_vec()]);
        let (r, bodies) = feed_all(3, &[3], &[b"abc", b"d"]).await;
        assert!(matches!(r, Err(S3Error::InvalidInput(_))));
        assert_eq!(bodies, vec![Vec::<u8>::new()]);
    }
}
