//! Tessera's S3 client: metadata, listing, and streaming reads and writes of objects on
//! any S3-compatible store (AWS S3, Garage, MinIO, …), over `aws-sdk-s3`.
//!
//! Two faces over one client:
//!
//! - [`S3Client`], async: for code already running on a tokio runtime.
//! - [`BlockingS3`], blocking: for synchronous callers such as a wasmtime host
//!   call. It runs each request as a task on a multi-thread tokio runtime whose
//!   [`Handle`](tokio::runtime::Handle) it is given and parks the calling thread until
//!   the task is done; see its documentation for where it may be called from. Its
//!   `with_deadline` bounds a call's waits (a host call's deadline).
//!
//! Objects are streamed both ways in bounded memory: a read pulls the response body as it
//! is consumed (a few chunks of read-ahead), a write sends the bytes as they are produced,
//! as one `PutObject` up to [`MULTIPART_THRESHOLD`] and as a multipart upload of
//! [`PART_SIZE`] parts above it. Blocking writes come two ways: `put` pulls from a
//! `std::io::Read`, `put_writer` gives a `std::io::Write` to push into and `finish`.
//!
//! [`BlockingS3`] is a `tessera_objstore::ObjectStore`: the store behind `s3://` URLs
//! (filer plugins' object-store capability) and the data API when an S3 endpoint is
//! configured.
//!
//! Failures are [`S3Error`]s, mapped from the SDK's errors and the store's error codes.
//! Neither they nor any `Debug` output carry the secret key (see [`Secret`]).

mod blocking;
mod config;
mod error;
mod object_store;
mod store;

pub use blocking::{BlockingS3, ObjectReader, ObjectWriter};
pub use config::{S3Config, Secret};
pub use error::S3Error;
pub use store::{MULTIPART_THRESHOLD, ObjectBody, ObjectInfo, PART_SIZE, S3Client};
