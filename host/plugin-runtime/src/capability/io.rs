//! `wasi:io` for plugins granted streams (outgoing HTTP, a filer's workspace or object
//! store): `poll` and `streams` as wasmtime-wasi implements them, except that every call
//! that can block ends at the call's deadline.
//!
//! Epoch interruption stops a guest only while it runs WebAssembly; a guest blocked in a
//! host call (waiting on a pollable, a blocking read or write) is not interrupted. So
//! each blocking call here waits at most until the deadline of the call it belongs to;
//! when it gets there the call traps, [`CallGuard::overran`] is set, and the host reports
//! the call as timed out.
//!
//! [`link`] links the interfaces for any store data that has a resource table and a
//! [`CallGuard`] ([`HasIo`]).

use std::future::Future;
use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::{DynPollable, StreamError, StreamResult};
use wasmtime_wasi::runtime::in_tokio;
use wasmtime_wasi_io::bindings::wasi::io::poll as async_poll;
use wasmtime_wasi_io::bindings::wasi::io::streams as async_streams;
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream};

use crate::capability::log::setup;
use crate::error::{CallError, LoadError};
use crate::host::HostState;
use crate::trap::classify;

/// Store data that serves `wasi:io`: its resource table and the call's guard.
pub(crate) trait HasIo: Send + 'static {
    fn io(&mut self) -> Guarded<'_>;
    fn table(&mut self) -> &mut ResourceTable;
}

/// Links `wasi:io/{error,poll,streams}`, every blocking call bounded by the deadline.
pub(crate) fn link<T: HasIo>(linker: &mut Linker<T>) -> Result<(), LoadError> {
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<_, TableIo>(linker, |s| s.table())
        .map_err(setup)?;
    poll::add_to_linker::<_, GuardedIo>(linker, |s| s.io()).map_err(setup)?;
    streams::add_to_linker::<_, GuardedIo>(linker, |s| s.io()).map_err(setup)?;
    Ok(())
}

/// As [`classify`], and a host call that blocked until the deadline is a timeout too.
pub(crate) fn failure(
    e: wasmtime::Error,
    host: &HostState,
    guard: &CallGuard,
    instantiating: bool,
) -> CallError {
    if guard.overran {
        return CallError::Timeout;
    }
    classify(e, host, instantiating)
}

/// Runs `op` on the blocking thread pool and waits for it until the deadline (a trap
/// past it, with [`CallGuard::overran`] set). For host calls that do blocking I/O of
/// their own (the object store): the guest's call ends at its deadline even when the
/// operation does not; it then finishes on its own thread, its result dropped.
pub(crate) fn blocking<R: Send + 'static>(
    guard: &mut CallGuard,
    op: impl FnOnce() -> R + Send + 'static,
) -> wasmtime::Result<R> {
    let left = guard.left();
    let task =
        wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| tokio::task::spawn_blocking(op));
    match in_tokio(async move { tokio::time::timeout(left, task).await }) {
        Ok(Ok(r)) => Ok(r),
        // The operation panicked (or was cancelled): a trap of this call, not of the host.
        Ok(Err(e)) => Err(wasmtime::Error::msg(format!(
            "a host operation failed: {e}"
        ))),
        Err(_) => Err(guard.overrun()),
    }
}

/// Waits for `fut` until the deadline (a trap past it, with [`CallGuard::overran`] set).
/// A future that is ready at once completes even after the deadline.
pub(crate) fn until_deadline<F: Future>(
    guard: &mut CallGuard,
    fut: F,
) -> wasmtime::Result<F::Output> {
    let left = guard.left();
    match in_tokio(async move { tokio::time::timeout(left, fut).await }) {
        Ok(out) => Ok(out),
        Err(_) => Err(guard.overrun()),
    }
}

/// The deadline of the current call, and whether a blocking host call ran into it.
pub(crate) struct CallGuard {
    pub(crate) deadline: Instant,
    pub(crate) overran: bool,
}

impl CallGuard {
    pub(crate) fn new(deadline: Instant) -> Self {
        CallGuard {
            deadline,
            overran: false,
        }
    }

    /// Time left until the deadline (zero once it passed).
    pub(crate) fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Marks the call as having run into its deadline in a host call, and returns the
    /// trap that ends it.
    pub(crate) fn overrun(&mut self) -> wasmtime::Error {
        self.overran = true;
        wasmtime::Error::msg("the plugin was blocked in a host call past its deadline")
    }
}

/// What the `poll` and `streams` host functions see of the store.
pub(crate) struct Guarded<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) guard: &'a mut CallGuard,
}

/// [`HasData`] for linking `poll` and `streams` over [`Guarded`].
pub(crate) struct GuardedIo;

impl HasData for GuardedIo {
    type Data<'a> = Guarded<'a>;
}

/// [`HasData`] for interfaces that need only the resource table (`wasi:io/error`).
pub(crate) struct TableIo;

impl HasData for TableIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// Runs an async wasi-io operation on the table to completion or to the deadline,
/// whichever comes first. An operation that is ready at once completes even after the
/// deadline (the future is polled before the timer).
macro_rules! bounded {
    ($self:ident, |$table:ident| $op:expr) => {{
        let left = $self.guard.left();
        let $table = &mut *$self.table;
        match in_tokio(async move { tokio::time::timeout(left, $op).await }) {
            Ok(out) => Ok(out),
            Err(_) => Err($self.guard.overrun()),
        }
    }};
}

impl poll::Host for Guarded<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        bounded!(self, |t| async_poll::Host::poll(t, pollables))?
    }
}

impl poll::HostPollable for Guarded<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        // Does not block: polls the pollable once.
        poll::HostPollable::ready(&mut *self.table, pollable)
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        bounded!(self, |t| async_poll::HostPollable::block(t, pollable))?
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        poll::HostPollable::drop(&mut *self.table, pollable)
    }
}

impl streams::Host for Guarded<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(&mut *self.table, err)
    }
}

impl streams::HostOutputStream for Guarded<'_> {
    fn drop(&mut self, stream: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        streams::HostOutputStream::drop(&mut *self.table, stream)
    }

    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(&mut *self.table, stream)
    }

    fn write(&mut self, stream: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(&mut *self.table, stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        bounded!(self, |t| {
            async_streams::HostOutputStream::blocking_write_and_flush(t, stream, bytes)
        })
        .map_err(StreamError::Trap)?
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        bounded!(self, |t| {
            async_streams::HostOutputStream::blocking_write_zeroes_and_flush(t, stream, len)
        })
        .map_err(StreamError::Trap)?
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostOutputStream::subscribe(&mut *self.table, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(&mut *self.table, stream, len)
    }

    fn flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(&mut *self.table, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        bounded!(self, |t| async_streams::HostOutputStream::blocking_flush(
            t, stream
        ))
        .map_err(StreamError::Trap)?
    }

    fn splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(&mut *self.table, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        bounded!(self, |t| async_streams::HostOutputStream::blocking_splice(
            t, dst, src, len
        ))
        .map_err(StreamError::Trap)?
    }
}

impl streams::HostInputStream for Guarded<'_> {
    fn drop(&mut self, stream: Resource<DynInputStream>) -> wasmtime::Result<()> {
        streams::HostInputStream::drop(&mut *self.table, stream)
    }

    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(&mut *self.table, stream, len)
    }

    fn blocking_read(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<Vec<u8>> {
        bounded!(self, |t| async_streams::HostInputStream::blocking_read(
            t, stream, len
        ))
        .map_err(StreamError::Trap)?
    }

    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(&mut *self.table, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        bounded!(self, |t| async_streams::HostInputStream::blocking_skip(
            t, stream, len
        ))
        .map_err(StreamError::Trap)?
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynInputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostInputStream::subscribe(&mut *self.table, stream)
    }
}
