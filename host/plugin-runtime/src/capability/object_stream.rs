//! The object store a filer reaches through `tessera:plugin/object-store`: the bridge
//! that turns a `tessera_objstore::ObjectStore`'s readers and uploads into `wasi:io`
//! streams, and the binding's bucket grants.
//!
//! Objects stream: a [`get`](ObjectStore::get) is read on a thread of the blocking pool
//! in chunks of [`CHUNK`] bytes into a channel of [`CHUNKS_AHEAD`] chunks that the
//! guest's input stream drains, and a [`put`](ObjectStore::put) is written from a
//! channel the guest's output stream fills the same way, so at most a few MiB of an
//! object are in the host at once however large it is. Waits of the guest on either
//! end at the call's deadline like every other blocking host call.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tessera_objstore::{ObjectError, ObjectUpload};
use tokio::sync::{mpsc, oneshot};
use wasmtime_wasi::p2::{StreamError, StreamResult};
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{InputStream, OutputStream};

/// Bytes moved between the store client's reader or writer and the guest per chunk.
pub(crate) const CHUNK: usize = 256 << 10;
/// Chunks buffered between them (per stream).
pub(crate) const CHUNKS_AHEAD: usize = 4;

/// Which buckets a binding grants: exact names, or `*` for every bucket.
pub(crate) fn bucket_granted(granted: &[String], bucket: &str) -> bool {
    granted.iter().any(|g| g == "*" || g == bucket)
}

/// A bucket grant that is neither a bucket name nor `*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bucket `{0}` is not a bucket name (or `*` for every bucket)")]
pub(crate) struct BadBucketGrant(pub(crate) String);

/// Checks the bucket grants a binding is linked with.
pub(crate) fn check_buckets(buckets: &[String]) -> Result<(), BadBucketGrant> {
    for b in buckets {
        if b.trim().is_empty() || b.trim() != b || b.contains(['/', '\0']) {
            return Err(BadBucketGrant(b.clone()));
        }
    }
    Ok(())
}

/// How a stream fed by a thread ended.
enum End {
    Closed,
    Failed(String),
}

/// The guest's input stream over a [`ObjectStore::get`] reader.
pub(crate) struct ObjectInputStream {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    buf: Bytes,
    end: Option<End>,
}

impl ObjectInputStream {
    /// Starts reading `reader` on the blocking pool.
    pub(crate) fn start(mut reader: Box<dyn Read + Send>) -> Self {
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(CHUNKS_AHEAD);
        wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| {
            tokio::task::spawn_blocking(move || {
                loop {
                    let mut chunk = BytesMut::zeroed(CHUNK);
                    let sent = match reader.read(&mut chunk) {
                        Ok(0) => return,
                        Ok(n) => {
                            chunk.truncate(n);
                            tx.blocking_send(Ok(chunk.freeze()))
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            return;
                        }
                    };
                    // The guest's stream is gone: stop reading.
                    if sent.is_err() {
                        return;
                    }
                }
            })
        });
        ObjectInputStream {
            rx,
            buf: Bytes::new(),
            end: None,
        }
    }

    fn take(&mut self, got: Option<io::Result<Bytes>>) {
        match got {
            Some(Ok(b)) => self.buf = b,
            Some(Err(e)) => self.end = Some(End::Failed(e.to_string())),
            None => self.end = Some(End::Closed),
        }
    }
}

#[wasmtime_wasi_io::async_trait]
impl Pollable for ObjectInputStream {
    async fn ready(&mut self) {
        if self.buf.is_empty() && self.end.is_none() {
            let got = self.rx.recv().await;
            self.take(got);
        }
    }
}

#[wasmtime_wasi_io::async_trait]
impl InputStream for ObjectInputStream {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if self.buf.is_empty() && self.end.is_none() {
            match self.rx.try_recv() {
                Ok(got) => self.take(Some(got)),
                Err(mpsc::error::TryRecvError::Empty) => return Ok(Bytes::new()),
                Err(mpsc::error::TryRecvError::Disconnected) => self.take(None),
            }
        }
        if !self.buf.is_empty() {
            let n = size.min(self.buf.len());
            return Ok(self.buf.split_to(n));
        }
        match self.end.replace(End::Closed) {
            Some(End::Failed(m)) => Err(StreamError::LastOperationFailed(wasmtime::Error::msg(
                format!("reading the object failed: {m}"),
            ))),
            _ => Err(StreamError::Closed),
        }
    }
}

enum Msg {
    Chunk(Bytes),
    Finish,
}

/// The sending end of an upload, shared by the upload resource (which closes it at
/// `finish` or drop) and its body stream.
type SharedSender = Arc<Mutex<Option<mpsc::Sender<Msg>>>>;

/// `object-store.upload`: a [`ObjectStore::put`] being written on the blocking pool.
pub struct Upload {
    tx: SharedSender,
    size: u64,
    body_taken: bool,
    done: Option<oneshot::Receiver<Result<u64, ObjectError>>>,
}

impl Upload {
    /// Starts writing `upload` on the blocking pool, from what the body stream sends.
    pub(crate) fn start(mut upload: Box<dyn ObjectUpload>, size: u64) -> Self {
        let (tx, mut rx) = mpsc::channel::<Msg>(CHUNKS_AHEAD);
        let (done_tx, done_rx) = oneshot::channel();
        wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| {
            tokio::task::spawn_blocking(move || {
                let mut written = 0u64;
                let result = loop {
                    match rx.blocking_recv() {
                        Some(Msg::Chunk(b)) => {
                            if let Err(e) = upload.write_all(&b) {
                                break Err(ObjectError::Unavailable(format!(
                                    "writing the object failed: {e}"
                                )));
                            }
                            written += b.len() as u64;
                        }
                        Some(Msg::Finish) if written == size => break upload.finish(),
                        Some(Msg::Finish) => {
                            break Err(ObjectError::InvalidInput(format!(
                                "{written} bytes were written of the {size} the upload was \
                                 started with"
                            )));
                        }
                        // Dropped without `finish`: abandoned (the upload is dropped).
                        None => {
                            break Err(ObjectError::Other("the upload was abandoned".into()));
                        }
                    }
                };
                let _ = done_tx.send(result);
            })
        });
        Upload {
            tx: Arc::new(Mutex::new(Some(tx))),
            size,
            body_taken: false,
            done: Some(done_rx),
        }
    }

    /// `upload.body`: the stream to write the object's bytes to (once).
    pub(crate) fn body(&mut self) -> Result<UploadWriter, ObjectError> {
        if self.body_taken {
            return Err(ObjectError::Other(
                "the upload's body was already taken".into(),
            ));
        }
        self.body_taken = true;
        Ok(UploadWriter {
            tx: self.tx.clone(),
            size: self.size,
            written: 0,
        })
    }

    /// Ends the body (no more writes); what [`complete`] needs to say the upload is
    /// complete and wait for the store's answer.
    pub(crate) fn finish(mut self) -> Finishing {
        Finishing {
            tx: self.tx.lock().ok().and_then(|mut t| t.take()),
            done: self.done.take(),
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // Without `finish`, closing the channel abandons the upload.
        if let Ok(mut t) = self.tx.lock() {
            t.take();
        }
    }
}

/// An upload whose body has ended, waiting to be completed.
pub(crate) struct Finishing {
    tx: Option<mpsc::Sender<Msg>>,
    done: Option<oneshot::Receiver<Result<u64, ObjectError>>>,
}

/// Sends `Finish` and waits for the store's answer (to be awaited under the deadline).
pub(crate) async fn complete(f: Finishing) -> Result<u64, ObjectError> {
    let Finishing { tx, done } = f;
    if let Some(tx) = tx {
        // A closed channel means the writer already stopped; `done` says why.
        let _ = tx.send(Msg::Finish).await;
    }
    match done {
        Some(done) => done.await.unwrap_or_else(|_| {
            Err(ObjectError::Other(
                "the upload stopped without an answer".into(),
            ))
        }),
        None => Err(ObjectError::Other("the upload was already finished".into())),
    }
}

/// The guest's output stream into an [`Upload`].
pub(crate) struct UploadWriter {
    tx: SharedSender,
    size: u64,
    written: u64,
}

impl UploadWriter {
    fn sender(&self) -> Option<mpsc::Sender<Msg>> {
        self.tx.lock().ok().and_then(|t| t.clone())
    }
}

#[wasmtime_wasi_io::async_trait]
impl Pollable for UploadWriter {
    async fn ready(&mut self) {
        if let Some(tx) = self.sender() {
            let _ = tx.reserve().await;
        }
    }
}

#[wasmtime_wasi_io::async_trait]
impl OutputStream for UploadWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if bytes.len() > CHUNK {
            return Err(StreamError::trap(
                "write exceeded the budget of check-write",
            ));
        }
        let Some(tx) = self.sender() else {
            return Err(StreamError::Closed);
        };
        let after = self.written + bytes.len() as u64;
        if after > self.size {
            return Err(StreamError::LastOperationFailed(wasmtime::Error::msg(
                format!(
                    "more than the {} bytes the upload was started with",
                    self.size
                ),
            )));
        }
        match tx.try_send(Msg::Chunk(bytes)) {
            Ok(()) => {
                self.written = after;
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => Err(StreamError::trap(
                "write exceeded the budget of check-write",
            )),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(StreamError::Closed),
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        match self.sender() {
            Some(tx) if !tx.is_closed() => Ok(()),
            _ => Err(StreamError::Closed),
        }
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        match self.sender() {
            Some(tx) if tx.is_closed() => Err(StreamError::Closed),
            Some(tx) if tx.capacity() == 0 => Ok(0),
            Some(_) => Ok(CHUNK),
            None => Err(StreamError::Closed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime_wasi::runtime::in_tokio;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn a_get_streams_through_a_bounded_channel() {
        let data = pattern(3 * CHUNK + 123);
        let mut reader = ObjectInputStream::start(Box::new(io::Cursor::new(data.clone())));
        let mut got = Vec::new();
        loop {
            in_tokio(reader.ready());
            match reader.read(100_000) {
                Ok(b) => got.extend_from_slice(&b),
                Err(StreamError::Closed) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(got == data);
    }

    #[test]
    fn a_failing_read_fails_the_stream_once() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("connection reset"))
            }
        }
        let mut reader = ObjectInputStream::start(Box::new(Broken));
        in_tokio(reader.ready());
        match reader.read(10) {
            Err(StreamError::LastOperationFailed(e)) => {
                assert!(e.to_string().contains("connection reset"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(reader.read(10), Err(StreamError::Closed)));
    }

    #[derive(Default, Clone)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        finished: Arc<Mutex<bool>>,
    }

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.bytes.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl ObjectUpload for Sink {
        fn finish(self: Box<Self>) -> Result<u64, ObjectError> {
            *self.finished.lock().unwrap() = true;
            Ok(self.bytes.lock().unwrap().len() as u64)
        }
    }

    /// Writes `data` into the upload's body as a guest would (check-write, write, wait).
    fn send(upload: &mut Upload, data: &[u8]) -> StreamResult<()> {
        let mut body = upload.body().unwrap();
        let mut rest = data;
        while !rest.is_empty() {
            let n = body.check_write()?;
            if n == 0 {
                in_tokio(body.ready());
                continue;
            }
            let n = n.min(rest.len());
            body.write(Bytes::copy_from_slice(&rest[..n]))?;
            rest = &rest[n..];
        }
        Ok(())
    }

    #[test]
    fn a_put_streams_and_finishes() {
        let data = pattern(5 * CHUNK + 7);
        let sink = Sink::default();
        let mut upload = Upload::start(Box::new(sink.clone()), data.len() as u64);
        send(&mut upload, &data).unwrap();
        assert!(matches!(upload.body(), Err(ObjectError::Other(_))));
        let r = in_tokio(complete(upload.finish()));
        assert_eq!(r, Ok(data.len() as u64));
        assert!(*sink.finished.lock().unwrap());
        assert!(*sink.bytes.lock().unwrap() == data);
    }

    #[test]
    fn a_put_of_the_wrong_size_or_dropped_is_not_finished() {
        let sink = Sink::default();
        let mut upload = Upload::start(Box::new(sink.clone()), 10);
        send(&mut upload, b"short").unwrap();
        match in_tokio(complete(upload.finish())) {
            Err(ObjectError::InvalidInput(m)) => assert!(m.contains("5 bytes"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(!*sink.finished.lock().unwrap());

        let mut upload = Upload::start(Box::new(sink.clone()), 3);
        assert!(send(&mut upload, b"toolong").is_err());

        let sink = Sink::default();
        let mut upload = Upload::start(Box::new(sink.clone()), 3);
        send(&mut upload, b"abc").unwrap();
        drop(upload);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!*sink.finished.lock().unwrap());
    }

    #[test]
    fn bucket_grants() {
        let granted = ["data".to_string()];
        assert!(bucket_granted(&granted, "data"));
        assert!(!bucket_granted(&granted, "data2"));
        assert!(bucket_granted(&["*".to_string()], "any"));
        assert!(check_buckets(&["a-b.c".into(), "*".into()]).is_ok());
        for bad in ["", " a", "a/b"] {
            assert!(check_buckets(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
