//! Outgoing HTTP over `wasi:http/outgoing-handler`, for worlds that import it (notifiers,
//! filers, engine adapters), one blocking request at a time. Bodies either way can be
//! streams: [`Request::send_from`] sends one from a stream (a workspace file),
//! [`Request::send_streaming`] hands the response body over as a stream.
//!
//! ```ignore
//! use tessera_plugin_sdk::http::{Method, Request};
//!
//! let response = Request::new(Method::Post, "https://hooks.example.com/t/abc")
//!     .header("content-type", "application/json")
//!     .body(br#"{"ok":true}"#.to_vec())
//!     .send()?; // an `http::Error`, which converts into a `PluginError` for `?`
//! if !response.is_success() { /* … */ }
//! ```
//!
//! The host sends the request, and only to the hosts the plugin's binding allows: any
//! other gets [`ErrorCode::HttpRequestDenied`] (a [`PluginError::Denied`] after `?`)
//! without a connection being made. It also cuts every wait to the call's deadline.
//! Natively (unit tests) building a request and parsing URLs work; sending panics.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use crate::PluginError;
use crate::streams::{self, CopyError, InputStream, OutputStream};
pub use crate::wasi::http::types::{ErrorCode, Method, Scheme};
use crate::wasi::http::types::{IncomingBody, IncomingResponse};

/// Response bodies are read up to this many bytes unless [`Request::max_body`] says
/// otherwise; the rest is not read.
pub const DEFAULT_MAX_BODY: usize = 64 << 10;

/// An absolute `http://` or `https://` URL, split the way wasi:http wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `true` for `https`.
    pub https: bool,
    /// `host`, `host:port` or `[v6]:port`.
    pub authority: String,
    /// The path and query (`/` when the URL has no path); the fragment is dropped.
    pub path_and_query: String,
}

impl Url {
    /// Splits `url`, which must be `http://` or `https://` (any case), an authority
    /// without user information, then an optional path and query.
    pub fn parse(url: &str) -> Result<Url, Error> {
        let bad = |why: &str| Error::InvalidUrl(format!("`{url}` {why}"));
        let url = url.trim();
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("is not an absolute URL (http:// or https://)"))?;
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(bad("is not an http:// or https:// URL"));
        };
        let rest = rest.split('#').next().unwrap_or("");
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.is_empty() {
            return Err(bad("has no host"));
        }
        if authority.contains('@') {
            return Err(bad("has user information, which is not sent"));
        }
        if authority
            .bytes()
            .chain(path.bytes())
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(bad("contains spaces or control characters"));
        }
        let path_and_query = match path.as_bytes().first() {
            None => "/".to_string(),
            Some(b'?') => format!("/{path}"),
            Some(_) => path.to_string(),
        };
        Ok(Url {
            https,
            authority: authority.to_string(),
            path_and_query,
        })
    }

    /// `https://host:port`, without path or query (which often carry tokens): for log
    /// lines and error messages.
    pub fn origin(&self) -> String {
        format!(
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.authority
        )
    }
}

/// Why a request failed.
#[derive(Debug, Clone)]
pub enum Error {
    /// The URL is not an absolute http(s) URL.
    InvalidUrl(String),
    /// The host refused a header (a forbidden name such as `host` or `connection`, or an
    /// invalid name or value).
    InvalidHeader(String),
    /// wasi:http failed the request with this code (denied by the host, DNS, connection,
    /// TLS, timeouts, protocol errors…).
    Http(ErrorCode),
    /// The body could not be written or the response could not be read.
    Stream(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidUrl(m) => write!(f, "invalid URL: {m}"),
            Error::InvalidHeader(m) => write!(f, "invalid header: {m}"),
            Error::Http(ErrorCode::HttpRequestDenied) => f.write_str(
                "the server does not allow requests to this address (not a host this \
                     plugin may reach; internal addresses only when the operator names them)",
            ),
            Error::Http(code) => write!(f, "HTTP request failed: {code:?}"),
            Error::Stream(m) => write!(f, "HTTP request failed: {m}"),
        }
    }
}

impl Error {
    /// Whether trying again later can help: unreachable hosts, refused or dropped
    /// connections, timeouts and protocol errors can; a bad URL or header, or the host's
    /// refusal, cannot.
    pub fn is_transient(&self) -> bool {
        use ErrorCode::*;
        match self {
            Error::InvalidUrl(_) | Error::InvalidHeader(_) => false,
            Error::Stream(_) => true,
            Error::Http(code) => !matches!(
                code,
                HttpRequestDenied
                    | HttpRequestMethodInvalid
                    | HttpRequestUriInvalid
                    | HttpRequestUriTooLong
                    | HttpRequestHeaderSectionSize(_)
                    | HttpRequestHeaderSize(_)
                    | HttpRequestBodySize(_)
                    | HttpRequestLengthRequired
                    | ConfigurationError
            ),
        }
    }
}

/// `denied` for the host's refusal, `invalid-input` for a bad URL, header or request,
/// `unavailable` for everything that may work later (see [`Error::is_transient`]).
impl From<Error> for PluginError {
    fn from(e: Error) -> PluginError {
        let message = e.to_string();
        match e {
            Error::Http(ErrorCode::HttpRequestDenied) => PluginError::Denied(message),
            e if e.is_transient() => PluginError::Unavailable(message),
            _ => PluginError::InvalidInput(message),
        }
    }
}

/// An HTTP response: status, headers, and the body up to [`Request::max_body`] bytes.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names as the host gives them (lower case), values as bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, up to the limit.
    pub body: Vec<u8>,
    /// Whether the body was longer than what was read.
    pub truncated: bool,
}

impl Response {
    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name` (any case), if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }
}

/// A request to build and [`send`](Request::send).
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
    max_body: usize,
}

impl Request {
    /// A request with no headers and an empty body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// Adds a header (`content-length` is set from the body; `host` comes from the URL).
    pub fn header(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    /// The body to send (`content-length` is set from it).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// How long to wait to connect, and then for each part of the answer. The host cuts
    /// every wait to what is left of the call's deadline anyway.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Read at most this many bytes of the response body (default
    /// [`DEFAULT_MAX_BODY`]; 0 reads none).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends the request and waits for the response (its body read up to the limit).
    pub fn send(self) -> Result<Response, Error> {
        let url = Url::parse(&self.url)?;
        let incoming = start(&self, &url, Body::Held)?;
        read_response(incoming, self.max_body)
    }

    /// Sends the request with `len` bytes read from `body` as its body
    /// (`content-length: len`, whatever [`Request::body`] set), streamed: the host moves
    /// the bytes from `body` to the connection in chunks of at most `chunk` bytes (see
    /// [`streams::copy_exact`]), so a large file is sent
    /// without passing through the plugin's memory. Then waits for the response (its body
    /// read up to the limit). A `body` that ends before `len` bytes fails the request.
    pub fn send_from(self, body: &InputStream, len: u64, chunk: u64) -> Result<Response, Error> {
        let url = Url::parse(&self.url)?;
        let incoming = start(&self, &url, Body::Stream { body, len, chunk })?;
        read_response(incoming, self.max_body)
    }

    /// Sends the request and returns the response as soon as its head is in, with its
    /// body as a stream to copy somewhere ([`StreamingResponse::copy_to`]) or read
    /// ([`StreamingResponse::read_to_end`]). [`Request::max_body`] does not apply.
    pub fn send_streaming(self) -> Result<StreamingResponse, Error> {
        let url = Url::parse(&self.url)?;
        let incoming = start(&self, &url, Body::Held)?;
        StreamingResponse::new(incoming)
    }
}

/// What a request sends as its body.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
enum Body<'a> {
    /// [`Request::body`] (none for a GET or HEAD without one).
    Held,
    /// `len` bytes of `body`, spliced in chunks of `chunk`.
    Stream {
        body: &'a InputStream,
        len: u64,
        chunk: u64,
    },
}

/// A response whose body is still to be read: status and headers, and the body as a
/// stream.
pub struct StreamingResponse {
    /// The status code.
    pub status: u16,
    /// Header names as the host gives them (lower case), values as bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    // Dropped in this order: the stream before its body, the body before its response.
    stream: InputStream,
    _body: IncomingBody,
    _response: IncomingResponse,
}

impl fmt::Debug for StreamingResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamingResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl StreamingResponse {
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    fn new(incoming: IncomingResponse) -> Result<Self, Error> {
        let status = incoming.status();
        let headers = incoming.headers().entries();
        let body = incoming
            .consume()
            .map_err(|()| Error::Stream("the response body is not available".into()))?;
        let stream = body
            .stream()
            .map_err(|()| Error::Stream("the response body cannot be read".into()))?;
        Ok(StreamingResponse {
            status,
            headers,
            stream,
            _body: body,
            _response: incoming,
        })
    }

    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name` (any case), if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }

    /// The `content-length` the server announced, if any.
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")?.trim().parse().ok()
    }

    /// The body as a stream (ends at the end of the body; fails if the connection breaks
    /// or the body is shorter than its `content-length`).
    pub fn body(&self) -> &InputStream {
        &self.stream
    }

    /// Copies the whole body into `to` (host-side, at most `chunk` bytes per step; see
    /// [`streams::copy`]) and flushes it. Returns the bytes copied.
    pub fn copy_to(&self, to: &OutputStream, chunk: u64) -> Result<u64, CopyError> {
        streams::copy(&self.stream, to, chunk)
    }

    /// Reads the body, keeping at most `max` bytes; returns them and whether there was
    /// more.
    pub fn read_to_end(&self, max: usize) -> Result<(Vec<u8>, bool), Error> {
        streams::read_to_end(&self.stream, max)
            .map_err(|e| Error::Stream(format!("reading the response body: {e}")))
    }
}

fn header_of<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| core::str::from_utf8(v).ok())
}

/// Builds and hands over the request, sends its body, and waits for the response head.
#[cfg(target_arch = "wasm32")]
fn start(request: &Request, url: &Url, body: Body<'_>) -> Result<IncomingResponse, Error> {
    use crate::wasi::http::outgoing_handler;
    use crate::wasi::http::types::{Fields, OutgoingBody, OutgoingRequest, RequestOptions};

    let headers = Fields::new();
    for (name, value) in &request.headers {
        if matches!(body, Body::Stream { .. }) && name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        headers
            .append(name, value)
            .map_err(|e| Error::InvalidHeader(format!("`{name}`: {e:?}")))?;
    }
    // A GET or HEAD without a body sends none (no chunked empty body either).
    let length = match body {
        Body::Stream { len, .. } => Some(len),
        Body::Held
            if !request.body.is_empty()
                || !matches!(request.method, Method::Get | Method::Head) =>
        {
            Some(request.body.len() as u64)
        }
        Body::Held => None,
    };
    if let Some(len) = length {
        headers
            .append("content-length", len.to_string().as_bytes())
            .map_err(|e| Error::InvalidHeader(format!("`content-length`: {e:?}")))?;
    }
    let outgoing = OutgoingRequest::new(headers);
    let invalid = |what: &str| Error::InvalidUrl(format!("the host refused the {what}"));
    outgoing
        .set_method(&request.method)
        .map_err(|()| invalid("method"))?;
    let scheme = if url.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    outgoing
        .set_authority(Some(&url.authority))
        .map_err(|()| invalid("authority"))?;
    outgoing
        .set_path_with_query(Some(&url.path_and_query))
        .map_err(|()| invalid("path"))?;
    let out_body = if length.is_some() {
        let b = outgoing
            .body()
            .map_err(|()| Error::Stream("the request body is not available".into()))?;
        Some(b)
    } else {
        None
    };

    let options = request.timeout.map(|t| {
        let ns = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
        let o = RequestOptions::new();
        // The host may not support one of them; it cuts waits to the deadline anyway.
        let _ = o.set_connect_timeout(Some(ns));
        let _ = o.set_first_byte_timeout(Some(ns));
        let _ = o.set_between_bytes_timeout(Some(ns));
        o
    });
    // Hand the request over before writing the body, so the host sends while the
    // plugin writes (a body larger than the host's buffer would wait forever otherwise).
    let pending = outgoing_handler::handle(outgoing, options).map_err(Error::Http)?;
    let wait = || loop {
        if let Some(ready) = pending.get() {
            break ready
                .map_err(|()| Error::Stream("the response was already taken".into()))?
                .map_err(Error::Http);
        }
        pending.subscribe().block();
    };
    if let Some(out_body) = out_body {
        let written = (|| {
            let out = out_body
                .write()
                .map_err(|()| Error::Stream("the request body cannot be written".into()))?;
            // Not flushed: once the server has every byte it may answer and stop taking
            // the body (closing its stream) before a flush would return; `finish`
            // checks that `content-length` bytes went in, and the answer says the rest.
            let copied = match body {
                Body::Held => streams::write_unflushed(&out, &request.body),
                Body::Stream { body, len, chunk } => streams::splice_exact(body, &out, len, chunk),
            };
            copied.map_err(|e| Error::Stream(format!("sending the request body: {e}")))
        })();
        let sent = written.and_then(|()| OutgoingBody::finish(out_body, None).map_err(Error::Http));
        if let Err(e) = sent {
            // The request failing (refused connection, …) closes the body stream: report
            // why it failed rather than that the stream closed. A server that refused
            // the request before taking all of its body (401, 413…) answered why.
            return match wait() {
                Ok(response) if !(200..300).contains(&response.status()) => Ok(response),
                Err(Error::Http(code)) => Err(Error::Http(code)),
                _ => Err(e),
            };
        }
    }
    wait()
}

#[cfg(not(target_arch = "wasm32"))]
fn start(_request: &Request, _url: &Url, _body: Body<'_>) -> Result<IncomingResponse, Error> {
    panic!("tessera_plugin_sdk::http: requests can only be sent from a component")
}

/// Status, headers, and the body up to `max` bytes.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn read_response(incoming: IncomingResponse, max: usize) -> Result<Response, Error> {
    let status = incoming.status();
    let headers = incoming.headers().entries();
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
        truncated: false,
    };
    if max > 0 {
        let streaming = StreamingResponse::new(incoming)?;
        let (body, truncated) = streaming.read_to_end(max)?;
        response.body = body;
        response.truncated = truncated;
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = Url::parse("HTTPS://hooks.example.com/t/abc?x=1#frag").unwrap();
        assert!(u.https);
        assert_eq!(u.authority, "hooks.example.com");
        assert_eq!(u.path_and_query, "/t/abc?x=1");
        assert_eq!(u.origin(), "https://hooks.example.com");
        let u = Url::parse("http://127.0.0.1:8080").unwrap();
        assert!(!u.https);
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(u.path_and_query, "/");
        let u = Url::parse("http://[::1]:9?q").unwrap();
        assert_eq!(u.authority, "[::1]:9");
        assert_eq!(u.path_and_query, "/?q");
        for bad in [
            "hooks.example.com/x",
            "ftp://example.com/",
            "https:///x",
            "https://user:pw@example.com/",
            "https://exa mple.com/",
            "https://example.com/a b",
        ] {
            assert!(
                matches!(Url::parse(bad), Err(Error::InvalidUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn errors_become_plugin_errors() {
        let p: PluginError = Error::Http(ErrorCode::HttpRequestDenied).into();
        assert_eq!(p.kind(), "denied");
        let p: PluginError = Error::Http(ErrorCode::ConnectionTimeout).into();
        assert_eq!(p.kind(), "unavailable");
        let p: PluginError = Error::Http(ErrorCode::HttpRequestUriInvalid).into();
        assert_eq!(p.kind(), "invalid-input");
        let p: PluginError = Error::InvalidUrl("x".into()).into();
        assert_eq!(p.kind(), "invalid-input");
    }
}
