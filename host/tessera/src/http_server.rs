//! The HTTP server around the API: what lets it face a network without a proxy.
//!
//! - A cap on connections open at once: past it, new connections wait in the listen
//!   backlog until one closes.
//! - Timeouts: the request head must arrive within `header_timeout` (a client that sends
//!   it a byte at a time is cut off; the same bound applies while a kept-alive
//!   connection waits for its next request), a request body being read may not stall for
//!   longer than `body_timeout`, and a connection with no bytes in either direction for
//!   `idle_timeout` is closed (a client that stops reading a response). Both stall
//!   bounds are kept by one clock per connection (when it last moved a byte), not a timer
//!   per request.
//! - Optional TLS (rustls, TLS 1.2 and 1.3) from a PEM certificate chain and key.
//! - Graceful shutdown: on the signal, stop accepting, let requests in flight finish for
//!   up to `drain_timeout`, then close what is left.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

/// The bounds on connections and time.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub drain_timeout: Duration,
}

/// A TLS server configuration from PEM files: the certificate chain (leaf first) and
/// its private key (PKCS#8, PKCS#1 or SEC1).
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("reading the TLS certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("reading the TLS key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| format!("the TLS certificate and key: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serve `app` on `listener` until `shutdown` completes, then drain.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or the peer left before we took it: wait a
                    // moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (app, tls, limits) = (app.clone(), tls.clone(), limits.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let activity = Activity::new();
            let tcp = Tracked {
                io: tcp,
                activity: activity.clone(),
            };
            let service = {
                let activity = activity.clone();
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let req = req.map(|body| {
                        axum::body::Body::new(Watched {
                            inner: body,
                            reading: activity.reading_body.clone(),
                        })
                    });
                    tower_service::Service::call(&mut app.clone(), req)
                })
            };
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            let served = async {
                match tls {
                    None => {
                        let conn = http.serve_connection(TokioIo::new(tcp), service);
                        watcher.watch(conn).await
                    }
                    Some(acceptor) => {
                        // The handshake counts against the header timeout.
                        let stream =
                            match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp))
                                .await
                            {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                    return Ok(());
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                    return Ok(());
                                }
                            };
                        let conn = http.serve_connection(TokioIo::new(stream), service);
                        watcher.watch(conn).await
                    }
                }
            };
            tokio::select! {
                r = served => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                },
                _ = activity.stalled(limits.idle_timeout, limits.body_timeout) => {
                    tracing::debug!(%peer, "closing a stalled connection");
                }
            }
        });
    }
    drop(listener);
    tracing::info!(
        drain_timeout_s = limits.drain_timeout.as_secs(),
        "no longer accepting connections; letting requests in flight finish"
    );
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("every connection has closed"),
        _ = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!("requests still in flight after the drain timeout are cut off");
        }
    }
}

/// When a connection last moved a byte (milliseconds since it opened), and whether a
/// handler is reading a request body on it.
#[derive(Clone)]
struct Activity {
    opened: Instant,
    last_ms: Arc<AtomicU64>,
    reading_body: Arc<AtomicBool>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
            reading_body: Arc::new(AtomicBool::new(false)),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Completes once no byte has moved for `idle`, or for `body` while a request body
    /// is being read.
    async fn stalled(&self, idle: Duration, body: Duration) {
        loop {
            let last = self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let limit = if self.reading_body.load(Ordering::Relaxed) {
                body.min(idle)
            } else {
                idle
            };
            let now = Instant::now();
            if now >= last + limit {
                return;
            }
            // A body read may start meanwhile: look again by then at the latest.
            tokio::time::sleep_until((last + limit).min(now + body).into()).await;
        }
    }
}

/// A connection that records its activity.
struct Tracked<IO> {
    io: IO,
    activity: Activity,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A request body that marks its connection as reading a body while a handler polls it,
/// for the body-stall bound.
struct Watched<B> {
    inner: B,
    reading: Arc<AtomicBool>,
}

impl<B: http_body::Body + Unpin> http_body::Body for Watched<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let done = matches!(polled, Poll::Ready(None | Some(Err(_)))) || self.inner.is_end_stream();
        self.reading.store(!done, Ordering::Relaxed);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Watched<B> {
    fn drop(&mut self) {
        self.reading.store(false, Ordering::Relaxed);
    }
}
