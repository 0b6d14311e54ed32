//! Outgoing HTTP (`wasi:http/outgoing-handler`) for plugins granted `http`: which hosts a
//! binding lets the plugin reach, and how the host sends a request for it.
//!
//! The host sends every request itself (wasmtime-wasi-http's default client is not
//! built): a request to an authority outside the allowed hosts fails with the wasi-http
//! error `HTTP-request-denied` before anything is resolved or connected, and the connect
//! (DNS, TCP, TLS, HTTP handshake), first-byte and between-bytes timeouts are the ones
//! the guest asked for, cut to what is left of the call's deadline.
//!
//! `*` means any host on the public internet: an authority that only `*` allows is
//! connected to only at public addresses. Loopback, private, link-local (cloud metadata
//! services), shared, multicast and reserved addresses fail with
//! `destination-IP-prohibited`, checked on the very addresses the host connects to (so a
//! name that resolves differently the second time gains nothing). Internal hosts are
//! reached by naming them in the binding (`hooks.internal`, `10.0.0.5:8080`). This
//! matters because a webhook's URL can come from a task's tags, that is from any user
//! who may submit tasks.

use std::future::{Future, poll_fn};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksCtx, WasiClocksCtxView};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::http::outgoing_handler;
use wasmtime_wasi_http::p2::bindings::http::types::{self, ErrorCode};
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, HostOutgoingRequest};
use wasmtime_wasi_http::{
    Error, RequestOptions, WasiBody, WasiHttp, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
};

use crate::capability::io::HasIo;
use crate::capability::log::setup;
use crate::error::LoadError;
use crate::manifest::{Capability, Manifest};

/// The most a connection's read buffer grows to (hyper's default is about 400 KiB). It
/// grows only while reads fill it, so small answers keep it small; a large body then
/// arrives in frames of up to this size, and a filer splicing one into a file makes
/// fewer, larger steps: measured with `examples/filer_bench.rs` (1 GiB over loopback
/// into a file), about 1.6 GB/s with the default and 1.9 GB/s with 1 MiB.
const READ_BUF_MAX: usize = 1 << 20;

/// One entry of a binding's allowed hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AllowedHost {
    /// `*`: any authority.
    Any,
    /// `host`: that host on the scheme's default port (80 for http, 443 for https).
    /// `host:port`: that host on that port only. Hosts are compared without case and
    /// without a trailing dot; IPv6 addresses are written in brackets (`[::1]:8080`).
    Host { host: String, port: Option<u16> },
}

/// An entry of a list of allowed hosts that is not `*`, `host` or `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allowed host `{entry}` is not `*`, `host` or `host:port`: {why}")]
pub struct BadAllowedHost {
    pub entry: String,
    pub why: String,
}

impl AllowedHost {
    pub(crate) fn parse(entry: &str) -> Result<Self, BadAllowedHost> {
        let e = entry.trim();
        if e == "*" {
            return Ok(AllowedHost::Any);
        }
        let why = if e.is_empty() {
            Some("it is empty")
        } else if e.contains("://") || e.contains('/') {
            Some("give the authority only, without a scheme or path")
        } else if e.contains('@') {
            Some("user information is not allowed")
        } else if e.ends_with(':') {
            Some("the port is missing after `:`")
        } else {
            None
        };
        let err = |why: &str| BadAllowedHost {
            entry: entry.to_string(),
            why: why.to_string(),
        };
        if let Some(why) = why {
            return Err(err(why));
        }
        // The port, when given, after the last `:` that is not inside `[…]`.
        let (host, port) = match e.rfind(':') {
            Some(i) if !e[i..].contains(']') => (&e[..i], Some(&e[i + 1..])),
            _ => (e, None),
        };
        let port = match port {
            Some(p) => Some(p.parse::<u16>().map_err(|_| err("invalid port"))?),
            None => None,
        };
        if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
            return Err(err("write IPv6 addresses in brackets"));
        }
        let authority = host.parse::<Authority>().map_err(|e| err(&e.to_string()))?;
        if authority.port().is_some() || authority.host().is_empty() {
            return Err(err("invalid host"));
        }
        Ok(AllowedHost::Host {
            host: normalize_host(authority.host()),
            port,
        })
    }

    /// Whether this entry names `host:port` itself (not through `*`).
    fn names(&self, host: &str, port: u16, default_port: u16) -> bool {
        match self {
            AllowedHost::Any => false,
            AllowedHost::Host { host: h, port: p } => {
                *h == host && p.map_or(port == default_port, |p| p == port)
            }
        }
    }
}

/// Checks one entry of a list of allowed hosts (`*`, `host` or `host:port`), as a binding's
/// `allow_hosts` are checked when it loads: for configuration read at start.
pub fn check_allowed_host(entry: &str) -> Result<(), BadAllowedHost> {
    AllowedHost::parse(entry).map(|_| ())
}

/// Why a request that only `*` allows is refused at an internal address.
const INTERNAL_ADDRESS: &str =
    "`*` reaches public addresses only; name internal hosts in the binding";

/// How far a permitted request may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Not allowed at all.
    Denied,
    /// Named by the binding: any address it resolves to.
    Named,
    /// Allowed by `*` only: public addresses only.
    Public,
}

/// Whether `ip` is an address on the public internet (not loopback, private, link-local,
/// shared, unspecified, multicast, documentation or reserved; IPv4 inside IPv6 judged as
/// IPv4).
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = [s[6].to_be_bytes(), s[7].to_be_bytes()];
                return is_public_v4(Ipv4Addr::new(a[0], a[1], b[0], b[1]));
            }
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
        }
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    !(v4.is_unspecified()
        || a == 0 // "this network"
        || v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || (a == 100 && (64..128).contains(&b)) // shared (carrier-grade NAT)
        || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
        || v4.is_documentation()
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || v4.is_multicast()
        || a >= 240) // reserved and broadcast
}

/// The address a URI's host is, if it is one (`[…]` for IPv6).
fn literal_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

fn normalize_host(host: &str) -> String {
    let host = host.strip_suffix('.').unwrap_or(host);
    host.to_ascii_lowercase()
}

/// The outgoing-HTTP rules of one loaded plugin: who it is (for log lines) and where it
/// may send requests.
pub(crate) struct HttpPolicy {
    plugin: String,
    version: String,
    allowed: Vec<AllowedHost>,
}

impl HttpPolicy {
    pub(crate) fn new(
        plugin: &str,
        version: &str,
        allowed: &[String],
    ) -> Result<Self, BadAllowedHost> {
        Ok(HttpPolicy {
            plugin: plugin.to_owned(),
            version: version.to_owned(),
            allowed: allowed
                .iter()
                .map(|e| AllowedHost::parse(e))
                .collect::<Result<_, _>>()?,
        })
    }

    /// How far a request to `uri` may go. Logs a refusal (scheme and authority only:
    /// paths and queries of webhook URLs often carry tokens). A host that is an address
    /// and that only `*` allows is judged here already.
    fn permits(&self, uri: &http::Uri) -> Reach {
        let tls = uri.scheme() == Some(&Scheme::HTTPS);
        let default_port = if tls { 443 } else { 80 };
        let reach = uri.authority().map_or(Reach::Denied, |a| {
            let host = normalize_host(a.host());
            let port = a.port_u16().unwrap_or(default_port);
            if self
                .allowed
                .iter()
                .any(|h| h.names(&host, port, default_port))
            {
                Reach::Named
            } else if self.allowed.contains(&AllowedHost::Any) {
                Reach::Public
            } else {
                Reach::Denied
            }
        });
        if reach == Reach::Public
            && let Some(ip) = uri.authority().and_then(|a| literal_ip(a.host()))
            && !is_public(ip)
        {
            self.refused(uri, INTERNAL_ADDRESS);
            return Reach::Denied;
        }
        if reach == Reach::Denied {
            self.refused(
                uri,
                "the authority is not among the binding's allowed hosts",
            );
        }
        reach
    }

    /// Logs a refused request: scheme and authority only.
    fn refused(&self, uri: &http::Uri, why: &str) {
        tracing::warn!(
            target: "tessera::plugin",
            plugin = %self.plugin,
            version = %self.version,
            scheme = uri.scheme_str().unwrap_or(""),
            authority = uri.authority().map_or("", |a| a.as_str()),
            "outgoing request denied: {why}"
        );
    }

    fn debug(&self, what: &str, err: &dyn std::fmt::Display) {
        tracing::debug!(
            target: "tessera::plugin",
            plugin = %self.plugin,
            version = %self.version,
            error = %err,
            "outgoing request failed: {what}"
        );
    }
}

impl HttpPolicy {
    /// Whether `outgoing-handler.handle` may take this request; `None` when its scheme
    /// and authority do not make a URI (wasi-http then refuses it as such).
    fn permits_request(&self, request: &HostOutgoingRequest) -> Option<Reach> {
        let scheme = match &request.scheme {
            Some(types::Scheme::Http) => "http",
            // As the hooks' default scheme.
            Some(types::Scheme::Https) | None => "https",
            Some(types::Scheme::Other(s)) => s.as_str(),
        };
        let authority = request.authority.as_deref().unwrap_or("");
        let uri = format!("{scheme}://{authority}/")
            .parse::<http::Uri>()
            .ok()?;
        Some(self.permits(&uri))
    }
}

/// `wasi:http/outgoing-handler.handle` with the allowed hosts checked first: a request to
/// any other authority fails right here with `HTTP-request-denied` (and is dropped),
/// before the guest writes its body. [`OutgoingHooks::send_request`] checks again.
pub(crate) fn handle(
    policy: Option<&HttpPolicy>,
    http: &mut WasiHttpCtxView<'_>,
    request: Resource<HostOutgoingRequest>,
    options: Option<Resource<types::RequestOptions>>,
) -> wasmtime::Result<Result<Resource<HostFutureIncomingResponse>, ErrorCode>> {
    let verdict = {
        let r = http.table.get(&request)?;
        policy.map_or(Some(Reach::Denied), |p| p.permits_request(r))
    };
    if verdict == Some(Reach::Denied) {
        http.table.delete(request)?;
        return Ok(Err(ErrorCode::HttpRequestDenied));
    }
    match outgoing_handler::Host::handle(http, request, options) {
        Ok(future) => Ok(Ok(future)),
        // An error code for the guest, or a trap.
        Err(e) => Ok(Err(types::Host::convert_error_code(http, e)?)),
    }
}

/// The most one set of headers may take in the host (its in-memory size).
const MAX_FIELDS_BYTES: usize = 64 << 10;

/// The HTTP side of one store (one instance, one call): the wasi-http context, the hooks
/// that send requests (the binding's policy, the call's deadline), and the monotonic
/// clock wasi:http's timeouts read.
pub(crate) struct HttpParts {
    pub(crate) ctx: WasiHttpCtx,
    pub(crate) hooks: OutgoingHooks,
    pub(crate) clocks: WasiClocksCtx,
}

impl HttpParts {
    /// Header sizes are capped, so a guest cannot make the host hold unbounded memory.
    pub(crate) fn new(policy: Option<Arc<HttpPolicy>>, deadline: Instant) -> Self {
        let mut ctx = WasiHttpCtx::new();
        ctx.set_field_size_limit(MAX_FIELDS_BYTES);
        HttpParts {
            ctx,
            hooks: OutgoingHooks { policy, deadline },
            clocks: WasiClocksCtx::default(),
        }
    }
}

/// Store data that can send HTTP requests: its [`HttpParts`] and resource table.
pub(crate) trait HasHttp: HasIo {
    fn http_parts(&mut self) -> (&mut HttpParts, &mut ResourceTable);
}

fn view<T: HasHttp>(s: &mut T) -> WasiHttpCtxView<'_> {
    let (p, table) = s.http_parts();
    WasiHttpCtxView {
        ctx: &mut p.ctx,
        table,
        hooks: &mut p.hooks,
    }
}

/// Links outgoing HTTP when the manifest grants it: `wasi:http/{types,outgoing-handler}`
/// and `wasi:clocks/monotonic-clock` (`wasi:io` must be linked too), as wasmtime-wasi-http's
/// `add_only_http_to_linker_sync` does but with the allowed hosts checked in [`handle`].
/// Returns the policy for the binding's allowed hosts; `None` without the grant (nothing
/// of wasi:http is linked).
pub(crate) fn link<T: HasHttp>(
    linker: &mut Linker<T>,
    manifest: &Manifest,
    allowed_hosts: &[String],
) -> Result<Option<Arc<HttpPolicy>>, LoadError> {
    use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
    use wasmtime_wasi_http::p2::bindings::sync::http as wasi_http;
    if !manifest.grants(Capability::Http) {
        return Ok(None);
    }
    let policy = HttpPolicy::new(&manifest.name, &manifest.version, allowed_hosts)
        .map_err(|e| LoadError::Settings(e.to_string()))?;
    monotonic_clock::add_to_linker::<_, WasiClocks>(linker, |s| {
        let (p, table) = s.http_parts();
        WasiClocksCtxView {
            ctx: &mut p.clocks,
            table,
        }
    })
    .map_err(setup)?;
    let options = wasmtime_wasi_http::p2::bindings::LinkOptions::default();
    wasi_http::types::add_to_linker::<_, WasiHttp>(linker, &options.into(), view::<T>)
        .map_err(setup)?;
    linker
        .instance("wasi:http/outgoing-handler@0.2.12")
        .and_then(|mut i| {
            i.func_wrap("handle", |mut store, (request, options)| {
                let data: &mut T = store.data_mut();
                let policy = data.http_parts().0.hooks.policy.clone();
                handle(policy.as_deref(), &mut view(data), request, options).map(|r| (r,))
            })
        })
        .map_err(setup)?;
    Ok(Some(Arc::new(policy)))
}

/// The wasi-http hooks of one store: its plugin's policy and its call's deadline.
pub(crate) struct OutgoingHooks {
    pub(crate) policy: Option<Arc<HttpPolicy>>,
    pub(crate) deadline: Instant,
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for OutgoingHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let Some(policy) = self.policy.clone() else {
            return Box::new(async { Err(Error::HttpRequestDenied) });
        };
        match policy.permits(request.uri()) {
            Reach::Denied => Box::new(async { Err(Error::HttpRequestDenied) }),
            Reach::Named => Box::new(send(request, options, self.deadline, None)),
            Reach::Public => Box::new(send(request, options, self.deadline, Some(policy))),
        }
    }

    fn p2_error_from_hyper(&mut self, err: &hyper::Error) -> ErrorCode {
        if let Some(p) = &self.policy {
            p.debug("HTTP", err);
        }
        if err.is_timeout() {
            ErrorCode::HttpResponseTimeout
        } else if err.is_incomplete_message() {
            ErrorCode::HttpResponseIncomplete
        } else {
            ErrorCode::HttpProtocolError
        }
    }

    fn p2_error_from_connect(&mut self, err: &std::io::Error) -> ErrorCode {
        if let Some(p) = &self.policy {
            p.debug("connect", err);
        }
        use std::io::ErrorKind::*;
        match err.kind() {
            ConnectionRefused => ErrorCode::ConnectionRefused,
            ConnectionReset | ConnectionAborted | BrokenPipe => ErrorCode::ConnectionTerminated,
            TimedOut => ErrorCode::ConnectionTimeout,
            HostUnreachable | NetworkUnreachable => ErrorCode::DestinationUnavailable,
            _ => ErrorCode::ConnectionRefused,
        }
    }

    fn p2_error_from_tls(&mut self, err: &std::io::Error) -> ErrorCode {
        if let Some(p) = &self.policy {
            p.debug("TLS", err);
        }
        let cert = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .is_some_and(|e| {
                matches!(
                    e,
                    rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
                )
            });
        if cert {
            ErrorCode::TlsCertificateError
        } else {
            ErrorCode::TlsProtocolError
        }
    }
}

/// A connection, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// The TLS client settings: the Mozilla roots (webpki-roots), ring as the provider.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, rustls::Error>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Arc::new(config))
        })
        .clone()
}

/// Sends `request` (absolute URI) over a new HTTP/1.1 connection, every wait cut to the
/// time left until `deadline`. Returns the response (its body reading under the
/// between-bytes timeout) and the connection's driver, which the caller runs. With
/// `public_only` (a request that only `*` allows), only public addresses of the host are
/// connected to.
async fn send(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    deadline: Instant,
    public_only: Option<Arc<HttpPolicy>>,
) -> SendResult {
    let left = |asked: Option<Duration>| {
        let rest = deadline.saturating_duration_since(Instant::now());
        asked.map_or(rest, |a| a.min(rest))
    };
    let uri = request.uri().clone();
    let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
    let tls = uri.scheme() == Some(&Scheme::HTTPS);
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    // `[::1]` in a URI, `::1` to connect to.
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();

    let connect_timeout = left(options.and_then(|o| o.connect_timeout));
    let connect = async {
        // Resolve once and connect to exactly the addresses that were checked.
        let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|_| Error::DnsError {
                rcode: None,
                info_code: None,
            })?
            .collect();
        if let Some(policy) = &public_only {
            addrs.retain(|a| is_public(a.ip()));
            if addrs.is_empty() {
                policy.refused(&uri, INTERNAL_ADDRESS);
                return Err(Error::DestinationIpProhibited);
            }
        }
        let tcp = TcpStream::connect(&addrs[..])
            .await
            .map_err(Error::Connect)?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if tls {
            let config = tls_config().map_err(|e| Error::InternalError(Some(e.to_string())))?;
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| Error::HttpRequestUriInvalid)?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(Error::Tls)?;
            Box::new(stream)
        } else {
            Box::new(tcp)
        };
        hyper::client::conn::http1::Builder::new()
            .max_buf_size(READ_BUF_MAX)
            .handshake(TokioIo::new(io))
            .await
            .map_err(Error::from)
    };
    let (mut sender, conn) = match tokio::time::timeout(connect_timeout, connect).await {
        Ok(r) => r?,
        Err(_) => return Err(Error::ConnectionTimeout),
    };

    // On the wire the request line carries the path only (origin form).
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;

    let first_byte = left(options.and_then(|o| o.first_byte_timeout));
    let between_bytes = left(options.and_then(|o| o.between_bytes_timeout));
    let mut response = pin!(tokio::time::timeout(
        first_byte,
        sender.send_request(request)
    ));
    let mut conn = Some(conn);
    // Wait for the response head while driving the connection.
    let head = poll_fn(|cx| {
        if let Poll::Ready(r) = response.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        let Some(c) = conn.as_mut() else {
            return Poll::Pending;
        };
        let done = ready!(Pin::new(c).poll(cx));
        conn = None;
        match done {
            // The connection closed cleanly: the response is complete, or will fail.
            Ok(()) => response.as_mut().poll(cx),
            Err(e) => Poll::Ready(Ok(Err(e))),
        }
    })
    .await;
    let head = match head {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(Error::from(e)),
        Err(_) => return Err(Error::ConnectionReadTimeout),
    };
    let response = head.map(|incoming| TimedBody::new(incoming, between_bytes).boxed_unsync());
    let driver = async move {
        match conn {
            Some(c) => c.await.map_err(Error::from),
            None => Ok(()),
        }
    };
    Ok((response, Box::new(driver)))
}

/// A response body that fails when no frame arrives within `every`.
struct TimedBody {
    inner: hyper::body::Incoming,
    every: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl TimedBody {
    fn new(inner: hyper::body::Incoming, every: Duration) -> Self {
        TimedBody {
            inner,
            every,
            timer: Box::pin(tokio::time::sleep(every)),
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + this.every;
                this.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) if e.is_timeout() => {
                Poll::Ready(Some(Err(Error::HttpResponseTimeout)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(this.timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &str, port: Option<u16>) -> AllowedHost {
        AllowedHost::Host {
            host: h.into(),
            port,
        }
    }

    #[test]
    fn parses_allowed_hosts() {
        assert_eq!(AllowedHost::parse("*"), Ok(AllowedHost::Any));
        assert_eq!(
            AllowedHost::parse("Hooks.Example.COM"),
            Ok(host("hooks.example.com", None))
        );
        assert_eq!(
            AllowedHost::parse("127.0.0.1:8080"),
            Ok(host("127.0.0.1", Some(8080)))
        );
        assert_eq!(
            AllowedHost::parse("[::1]:9000"),
            Ok(host("[::1]", Some(9000)))
        );
        assert_eq!(
            AllowedHost::parse("example.com."),
            Ok(host("example.com", None))
        );
        for bad in [
            "",
            " ",
            "https://example.com",
            "example.com/x",
            "u@example.com",
            "example.com:",
            "example.com:99999",
            "exa mple.com",
            "::1",
            "[::1",
            "a:b:80",
        ] {
            let e = AllowedHost::parse(bad).unwrap_err();
            assert_eq!(e.entry, bad, "{e}");
            assert!(e.to_string().contains("allowed host"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_tls_client_settings_build() {
        let config = tls_config().unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
    }

    #[test]
    fn a_host_without_port_means_the_default_port() {
        let p =
            HttpPolicy::new("n", "1", &["example.com".into(), "127.0.0.1:8080".into()]).unwrap();
        let ok = |u: &str| p.permits(&u.parse::<http::Uri>().unwrap()) == Reach::Named;
        assert!(ok("https://example.com/hook?token=x"));
        assert!(ok("https://EXAMPLE.com:443/"));
        assert!(ok("http://example.com/"));
        assert!(!ok("https://example.com:8443/"));
        assert!(!ok("http://example.com:443/"));
        assert!(ok("http://127.0.0.1:8080/x"));
        assert!(!ok("http://127.0.0.1/x"));
        assert!(!ok("http://127.0.0.1:8081/x"));
        assert!(!ok("https://example.org/"));
        assert!(!ok("https://sub.example.com/"));

        let none = HttpPolicy::new("n", "1", &[]).unwrap();
        assert_eq!(
            none.permits(&"http://example.com/".parse().unwrap()),
            Reach::Denied
        );
    }

    #[test]
    fn a_star_reaches_public_addresses_only_and_named_hosts_anywhere() {
        let p = HttpPolicy::new("n", "1", &["*".into(), "10.0.0.5:8080".into()]).unwrap();
        let reach = |u: &str| p.permits(&u.parse::<http::Uri>().unwrap());
        // Names are judged by the addresses they resolve to, when connecting.
        assert_eq!(reach("https://example.com/"), Reach::Public);
        assert_eq!(reach("http://localhost:9000/"), Reach::Public);
        assert_eq!(reach("http://93.184.215.14/"), Reach::Public);
        assert_eq!(reach("http://[2606:4700::1111]/"), Reach::Public);
        // Addresses that only `*` allows are judged at once.
        for internal in [
            "http://127.0.0.1:8080/",
            "http://10.0.0.5/",
            "http://192.168.1.1/",
            "http://172.20.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.100.100.200/",
            "http://0.0.0.0:80/",
            "http://[::1]:8080/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[64:ff9b::a00:1]/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
        ] {
            assert_eq!(reach(internal), Reach::Denied, "{internal}");
        }
        // An internal host named in the binding is reached.
        assert_eq!(reach("http://10.0.0.5:8080/"), Reach::Named);
    }

    #[test]
    fn public_addresses_are_told_from_the_rest() {
        for public in [
            "8.8.8.8",
            "93.184.215.14",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        for internal in [
            "127.0.0.53",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "0.1.2.3",
            "::",
            "::1",
            "fc00::1",
            "fe80::1",
            "2001:db8::1",
            "ff02::1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert!(!is_public(internal.parse().unwrap()), "{internal}");
        }
    }
}
