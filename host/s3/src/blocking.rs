//! The blocking facade.

use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::S3Error;
use crate::store::{ObjectInfo, ObjectMeta, S3Client};

/// Chunks of a body read ahead of the reader (each as large as the network delivers,
/// typically up to a few hundred KiB).
const READ_AHEAD_CHUNKS: usize = 8;
/// The size of the chunks a writer hands to the upload.
const WRITE_CHUNK: usize = 1024 * 1024;
/// Chunks buffered between a writer and the upload.
const WRITE_AHEAD_CHUNKS: usize = 2;

/// [`S3Client`] for synchronous callers (a wasmtime host call, a plain thread).
///
/// Each call runs its requests as tasks spawned on the runtime behind the given
/// [`Handle`], which must be a multi-thread runtime (the server's): that runtime does
/// all the I/O, and the calling thread only parks until a result (or the next chunk of
/// a body) is there. So the calls work from any thread:
///
/// - a plain thread or a `spawn_blocking` thread (the intended use: wasmtime host calls
///   run there);
/// - an async worker thread of a multi-thread runtime: the wait goes through
///   [`tokio::task::block_in_place`], so the worker's other tasks move to another
///   worker and nothing deadlocks, though it costs a thread for the call's duration
///   (prefer the async [`S3Client`] there);
/// - inside a current-thread runtime: the thread is blocked for the call's duration,
///   but the requests run on the given multi-thread runtime, so it does not deadlock.
///
/// It never calls [`Handle::block_on`] (which panics in an async context).
///
/// [`with_deadline`](Self::with_deadline) bounds how long calls, and reads and writes of
/// the streams they open, may wait.
#[derive(Clone, Debug)]
pub struct BlockingS3 {
    store: S3Client,
    handle: Handle,
    deadline: Option<Instant>,
}

impl BlockingS3 {
    /// Wraps `store`; `handle` must be a multi-thread runtime's (`InvalidInput`
    /// otherwise: a current-thread runtime drives its tasks only inside its own
    /// `block_on`, so a call from outside could wait forever).
    pub fn new(store: S3Client, handle: Handle) -> Result<Self, S3Error> {
        if handle.runtime_flavor() == RuntimeFlavor::CurrentThread {
            return Err(S3Error::InvalidInput(
                "the blocking S3 client needs a multi-thread tokio runtime".into(),
            ));
        }
        Ok(Self {
            store,
            handle,
            deadline: None,
        })
    }

    /// The same client, whose calls give up at `deadline`: a request still running
    /// then is dropped and the call fails as `Unavailable` ("timed out"); a read of an
    /// [`ObjectReader`] or a write of an [`ObjectWriter`] it opened fails with
    /// `io::ErrorKind::TimedOut` once the deadline has passed; an upload whose
    /// [`finish`](ObjectWriter::finish) times out goes on in the background (it may still
    /// complete).
    pub fn with_deadline(&self, deadline: Instant) -> Self {
        Self {
            deadline: Some(deadline),
            ..self.clone()
        }
    }

    /// The async client underneath.
    pub fn store(&self) -> &S3Client {
        &self.store
    }

    /// See [`S3Client::head`].
    pub fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, S3Error> {
        let (store, bucket, key) = (self.store.clone(), bucket.to_owned(), key.to_owned());
        self.run(async move { store.head(&bucket, &key).await })
    }

    /// See [`S3Client::list`].
    pub fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ObjectInfo>, S3Error> {
        let store = self.store.clone();
        let (bucket, prefix) = (bucket.to_owned(), prefix.to_owned());
        let start_after = start_after.map(str::to_owned);
        self.run(async move {
            store
                .list(&bucket, &prefix, start_after.as_deref(), limit)
                .await
        })
    }

    /// Opens an object for reading. Returns once the response's headers are in; the
    /// body streams as the returned reader is read, with a few chunks of read-ahead
    /// (bounded memory whatever the object's size). Read errors are `io::Error`s wrapping
    /// an [`S3Error`] (`io::Error::get_ref` + `downcast_ref`). Dropping the reader early
    /// stops the download.
    pub fn get(&self, bucket: &str, key: &str) -> Result<ObjectReader, S3Error> {
        self.get_range(bucket, key, None)
    }

    /// [`BlockingS3::get`] of bytes `start..end` only (see [`S3Client::get_range`]).
    pub fn get_range(
        &self,
        bucket: &str,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> Result<ObjectReader, S3Error> {
        let (store, b, k) = (self.store.clone(), bucket.to_owned(), key.to_owned());
        let mut body = self.run(async move { store.get_range(&b, &k, range).await })?;
        let info = body.info().clone();
        let (tx, rx) = mpsc::channel(READ_AHEAD_CHUNKS);
        let relay = self.handle.spawn(async move {
            loop {
                let item = body.next_chunk().await;
                let end = !matches!(item, Ok(Some(_)));
                if tx.send(item).await.is_err() || end {
                    return;
                }
            }
        });
        Ok(ObjectReader {
            info,
            target: format!("{bucket}/{key}"),
            rx,
            current: Bytes::new(),
            done: false,
            deadline: self.deadline,
            _relay: AbortOnDrop(relay),
        })
    }

    /// Starts an upload of exactly `size` bytes (see [`S3Client::put`]): write them
    /// to the returned writer, then call [`ObjectWriter::finish`]. The bytes go out as
    /// they are written, at most a few MiB ahead of the network (bounded memory). A
    /// writer dropped without `finish` abandons the upload: nothing is stored (a
    /// multipart upload is aborted).
    pub fn put_writer(&self, bucket: &str, key: &str, size: u64) -> Result<ObjectWriter, S3Error> {
        self.put_writer_with(bucket, key, size, &ObjectMeta::default())
    }

    /// [`BlockingS3::put_writer`] with a content type and user metadata.
    pub fn put_writer_with(
        &self,
        bucket: &str,
        key: &str,
        size: u64,
        meta: &ObjectMeta,
    ) -> Result<ObjectWriter, S3Error> {
        let meta = meta.clone();
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(WRITE_AHEAD_CHUNKS);
        let (commit_tx, commit_rx) = oneshot::channel::<()>();
        let store = self.store.clone();
        let (b, k) = (bucket.to_owned(), key.to_owned());
        // The body ends normally only if `finish` committed it; a writer that went away
        // without committing ends it with an error, so that nothing is stored.
        let stream = futures_util::stream::unfold(
            (rx, commit_rx, false),
            |(mut rx, mut commit, ended)| async move {
                if ended {
                    return None;
                }
                match rx.recv().await {
                    Some(item) => Some((item, (rx, commit, false))),
                    None if commit.try_recv().is_ok() => None,
                    None => Some((
                        Err(io::Error::other("the upload was abandoned")),
                        (rx, commit, true),
                    )),
                }
            },
        );
        let upload = self
            .handle
            .spawn(async move { store.put_with(&b, &k, size, &meta, Box::pin(stream)).await });
        Ok(ObjectWriter {
            target: format!("{bucket}/{key}"),
            size,
            written: 0,
            buf: BytesMut::with_capacity(WRITE_CHUNK),
            tx: Some(tx),
            commit: Some(commit_tx),
            upload: Some(upload),
            failed: None,
            deadline: self.deadline,
        })
    }

    /// Writes an object of exactly `size` bytes read from `body`, streaming (through a
    /// [`put_writer`](Self::put_writer)). After `size` bytes it reads `body` once more
    /// to check that it ends there; a body that ends early or goes on is `InvalidInput`,
    /// a body that fails is `Other`, and neither stores anything. Returns the stored
    /// size.
    pub fn put(
        &self,
        bucket: &str,
        key: &str,
        size: u64,
        mut body: impl Read + Send,
    ) -> Result<u64, S3Error> {
        let mut writer = self.put_writer(bucket, key, size)?;
        let target = writer.target.clone();
        let mut buf = vec![0u8; WRITE_CHUNK.min(size.max(1) as usize)];
        let mut left = size;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = read_full(&mut body, &mut buf[..want]).map_err(|e| {
                S3Error::Other(format!(
                    "reading the body of {target} after {} bytes: {e}",
                    size - left
                ))
            })?;
            if n == 0 {
                return Err(S3Error::InvalidInput(format!(
                    "the body of {target} ended after {} of {size} bytes",
                    size - left
                )));
            }
            if writer.write_all(&buf[..n]).is_err() {
                // The writer holds the reason.
                return writer.finish();
            }
            left -= n as u64;
        }
        let mut probe = [0u8; 1];
        match read_full(&mut body, &mut probe) {
            Ok(0) => writer.finish(),
            Ok(_) => Err(S3Error::InvalidInput(format!(
                "the body of {target} is longer than the {size} bytes announced"
            ))),
            Err(e) => Err(S3Error::Other(format!(
                "reading the end of the body of {target}: {e}"
            ))),
        }
    }

    /// See [`S3Client::buckets`].
    pub fn buckets(&self) -> Result<Vec<String>, S3Error> {
        let store = self.store.clone();
        self.run(async move { store.buckets().await })
    }

    /// See [`S3Client::delete`].
    pub fn delete(&self, bucket: &str, key: &str) -> Result<(), S3Error> {
        let (store, bucket, key) = (self.store.clone(), bucket.to_owned(), key.to_owned());
        self.run(async move { store.delete(&bucket, &key).await })
    }

    fn run<T, F>(&self, fut: F) -> Result<T, S3Error>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, S3Error>> + Send + 'static,
    {
        let task = match self.deadline {
            None => self.handle.spawn(fut),
            Some(deadline) => self.handle.spawn(async move {
                tokio::time::timeout_at(deadline.into(), fut)
                    .await
                    .unwrap_or_else(|_| Err(timed_out()))
            }),
        };
        let mut task = AbortOnDrop(task);
        // The task ends itself at the deadline; this wait is not bounded again.
        join(&mut task.0, None)
    }
}

fn timed_out() -> S3Error {
    S3Error::Unavailable("timed out (the call's deadline passed)".into())
}

/// Waits for a spawned call until `deadline`; its panic is an `Other` error rather than
/// the caller's.
fn join<T>(
    task: &mut JoinHandle<Result<T, S3Error>>,
    deadline: Option<Instant>,
) -> Result<T, S3Error> {
    match wait(task, deadline) {
        None => Err(timed_out()),
        Some(Ok(result)) => result,
        Some(Err(e)) if e.is_panic() => Err(S3Error::Other("the S3 request task panicked".into())),
        Some(Err(_)) => Err(S3Error::Other("the S3 request task was cancelled".into())),
    }
}

/// Reads until `buf` is full or `body` ends; returns how much was read.
fn read_full(body: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match body.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn past(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// A streaming reader of an object's body (from [`BlockingS3::get`]).
#[derive(Debug)]
pub struct ObjectReader {
    info: ObjectInfo,
    target: String,
    rx: mpsc::Receiver<Result<Option<Bytes>, S3Error>>,
    current: Bytes,
    done: bool,
    deadline: Option<Instant>,
    _relay: AbortOnDrop<()>,
}

impl ObjectReader {
    /// The object's metadata, from the response's headers.
    pub fn info(&self) -> &ObjectInfo {
        &self.info
    }

    /// The object's size in bytes.
    pub fn size(&self) -> u64 {
        self.info.size
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if past(self.deadline) {
            return Err(io::Error::new(io::ErrorKind::TimedOut, timed_out()));
        }
        while self.current.is_empty() {
            if self.done {
                return Ok(0);
            }
            match wait(self.rx.recv(), self.deadline) {
                None => return Err(io::Error::new(io::ErrorKind::TimedOut, timed_out())),
                Some(Some(Ok(Some(chunk)))) => self.current = chunk,
                Some(Some(Ok(None))) => self.done = true,
                Some(Some(Err(e))) => {
                    self.done = true;
                    return Err(io::Error::other(e));
                }
                Some(None) => {
                    self.done = true;
                    return Err(io::Error::other(S3Error::Other(format!(
                        "reading {}: the download task stopped",
                        self.target
                    ))));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}

/// An upload in progress (from [`BlockingS3::put_writer`]): `Write` exactly the
/// announced size, then [`finish`](Self::finish). Writes are buffered into 1 MiB chunks
/// (`flush` sends a partial one). A write past the announced size fails
/// (`InvalidInput`), and so does every write after the upload failed; the reason is an
/// [`S3Error`] inside the `io::Error`, and `finish` returns it too.
#[derive(Debug)]
pub struct ObjectWriter {
    target: String,
    size: u64,
    written: u64,
    buf: BytesMut,
    tx: Option<mpsc::Sender<io::Result<Bytes>>>,
    commit: Option<oneshot::Sender<()>>,
    /// Detached, not aborted, when the writer is dropped: an abandoned upload still
    /// has to abort its multipart upload.
    upload: Option<JoinHandle<Result<u64, S3Error>>>,
    failed: Option<S3Error>,
    deadline: Option<Instant>,
}

impl ObjectWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Completes the upload once all the announced bytes are written; returns the
    /// stored size. Fewer bytes are `InvalidInput`, and nothing is stored.
    pub fn finish(mut self) -> Result<u64, S3Error> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.written < self.size {
            return Err(S3Error::InvalidInput(format!(
                "the body of {} ended after {} of {} bytes",
                self.target, self.written, self.size
            )));
        }
        if let Err(e) = self.send_buffered() {
            return Err(self
                .failed
                .take()
                .unwrap_or_else(|| S3Error::Other(e.to_string())));
        }
        if let Some(commit) = self.commit.take() {
            let _ = commit.send(());
        }
        self.tx = None;
        let mut upload = self.upload.take().expect("an upload");
        join(&mut upload, self.deadline)
    }

    /// Sends what is buffered to the upload.
    fn send_buffered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, BytesMut::with_capacity(WRITE_CHUNK));
        let tx = self.tx.as_ref().expect("an open upload");
        let error = match wait(tx.send(Ok(chunk.freeze())), self.deadline) {
            Some(Ok(())) => return Ok(()),
            None => timed_out(),
            // The upload ended early: it says why.
            Some(Err(_)) => match self.upload.as_mut() {
                Some(upload) => match join(upload, self.deadline) {
                    Err(e) => e,
                    Ok(_) => S3Error::Other(format!("the upload of {} ended early", self.target)),
                },
                None => S3Error::Other(format!("the upload of {} ended", self.target)),
            },
        };
        Err(self.fail(error))
    }

    fn fail(&mut self, error: S3Error) -> io::Error {
        self.failed = Some(error.clone());
        let kind = match &error {
            S3Error::InvalidInput(_) => io::ErrorKind::InvalidInput,
            S3Error::Unavailable(m) if m.starts_with("timed out") => io::ErrorKind::TimedOut,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, error)
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(io::Error::other(e.clone()));
        }
        if data.is_empty() {
            return Ok(0);
        }
        if past(self.deadline) {
            return Err(self.fail(timed_out()));
        }
        if data.len() as u64 > self.size - self.written {
            let error = S3Error::InvalidInput(format!(
                "more than the {} bytes announced were written to {}",
                self.size, self.target
            ));
            return Err(self.fail(error));
        }
        let n = data.len().min(WRITE_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() == WRITE_CHUNK {
            self.send_buffered()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = &self.failed {
            return Err(io::Error::other(e.clone()));
        }
        self.send_buffered()
    }
}

/// A spawned task, aborted if dropped before it is done.
#[derive(Debug)]
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Parks the calling thread until `fut` is ready, or until `deadline` (then `None`). The
/// future must be one that tasks on another thread complete (a spawned task's handle, a
/// channel): it is only polled here, never given a runtime. On a multi-thread runtime's
/// thread the wait goes through `block_in_place`, so that its other tasks move to other
/// workers.
fn wait<F: Future>(fut: F, deadline: Option<Instant>) -> Option<F::Output> {
    let on_multi_thread = Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::MultiThread);
    if on_multi_thread {
        tokio::task::block_in_place(|| park_on(fut, deadline))
    } else {
        park_on(fut, deadline)
    }
}

struct Unparker(Thread);

impl Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

fn park_on<F: Future>(fut: F, deadline: Option<Instant>) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let waker = Waker::from(Arc::new(Unparker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = fut.as_mut().poll(&mut cx) {
            return Some(output);
        }
        match deadline {
            None => thread::park(),
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return None;
                }
                thread::park_timeout(deadline - now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    async fn later(v: u32) -> u32 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        v
    }

    #[test]
    fn waiting_works_from_plain_threads_workers_and_current_thread_runtimes() {
        let rt = runtime();
        let handle = rt.handle().clone();
        // A plain thread.
        assert_eq!(wait(handle.spawn(later(1)), None).unwrap().unwrap(), 1);
        // A blocking thread of the runtime.
        let h = handle.clone();
        let v = rt
            .block_on(
                handle.spawn_blocking(move || wait(h.spawn(later(2)), None).unwrap().unwrap()),
            )
            .unwrap();
        assert_eq!(v, 2);
        // An async worker of the runtime itself (block_in_place), both workers at once.
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let h = handle.clone();
                handle.spawn(async move { wait(h.spawn(later(i)), None).unwrap().unwrap() })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(wait(t, None).unwrap().unwrap(), i as u32);
        }
        // Inside a current-thread runtime's async context.
        let current = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let h = handle.clone();
        assert_eq!(
            current.block_on(async move { wait(h.spawn(later(5)), None).unwrap().unwrap() }),
            5
        );
    }

    #[test]
    fn a_current_thread_handle_is_refused() {
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let store = S3Client::new(crate::S3Config {
            endpoint: Some("http://127.0.0.1:1".into()),
            region: "garage".into(),
            access_key_id: "GKexample".into(),
            secret_access_key: "secret".into(),
            path_style: true,
        })
        .unwrap();
        assert!(matches!(
            BlockingS3::new(store, current.handle().clone()),
            Err(S3Error::InvalidInput(_))
        ));
    }

    #[test]
    fn a_panicking_call_is_an_error() {
        let rt = runtime();
        let mut task = AbortOnDrop(rt.spawn(async {
            if true {
                panic!("boom");
            }
            Ok::<(), S3Error>(())
        }));
        assert!(
            matches!(join(&mut task.0, None), Err(S3Error::Other(m)) if m.contains("panicked"))
        );
    }

    #[test]
    fn a_wait_gives_up_at_its_deadline() {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(50);
        assert!(wait(std::future::pending::<()>(), Some(deadline)).is_none());
        assert!(started.elapsed() >= Duration::from_millis(50));
        // What is ready is returned even past the deadline.
        assert_eq!(wait(std::future::ready(7), Some(started)), Some(7));
        let rt = runtime();
        let mut task = AbortOnDrop(rt.spawn(async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<(), S3Error>(())
        }));
        let deadline = Instant::now() + Duration::from_millis(50);
        assert!(matches!(
            join(&mut task.0, Some(deadline)),
            Err(S3Error::Unavailable(m)) if m.contains("timed out")
        ));
    }
}
