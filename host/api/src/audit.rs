//! The audit log: every state-changing request (any method but GET and HEAD) on an
//! authenticated route, and every password login, is recorded with who made it, the
//! route, the object and the status. Entries go to a background writer that stores them
//! in batches, at most [`BATCH_WAIT`] after the first of a batch arrived (so a create
//! neither waits on a second write nor shares the store's writer with one per request);
//! reading the log through this server first waits for what it has queued, and a server
//! that stops gracefully stores everything first. A server killed outright loses at most
//! the last [`BATCH_WAIT`] of entries. Instance admins read it at
//! `GET /v1/admin/audit` (`actor`, `page_size`, `page_token`); entries older than the
//! retention are deleted hourly.

use std::time::Duration;

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use tessera_core::{ErrorCode, page};
use tessera_store::{AuditEntry, Store};
use tokio::sync::{mpsc, oneshot};

use crate::auth::Caller;
use crate::{AppState, Error};

/// Put into a response by a handler that made an object, to name it in the log.
#[derive(Clone, Debug)]
pub struct AuditObject(pub String);

enum Msg {
    Entry(AuditEntry),
    /// Answered once every entry sent before is stored.
    Flush(oneshot::Sender<()>),
}

/// Entries waiting for the writer; beyond this, requests wait for it.
const QUEUE: usize = 16_384;
/// Most entries stored in one transaction.
const BATCH: usize = 512;
/// Longest an entry waits for others to share its transaction.
pub const BATCH_WAIT: Duration = Duration::from_millis(200);

/// The sending side of the audit log.
#[derive(Clone)]
pub struct Auditor {
    tx: mpsc::Sender<Msg>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Auditor {
    /// Start the writer (and the pruning of entries older than `retention`) on `store`.
    pub fn start(store: Store, retention: Duration) -> Auditor {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(store.clone(), rx));
        tokio::spawn(prune_loop(store, retention));
        Auditor { tx }
    }

    /// Record one request.
    pub async fn record(&self, actor: &str, method: &str, action: &str, object: &str, status: u16) {
        let entry = AuditEntry {
            at_ms: now_ms(),
            actor: actor.to_string(),
            method: method.to_string(),
            action: action.to_string(),
            object: object.to_string(),
            status,
        };
        if self.tx.send(Msg::Entry(entry)).await.is_err() {
            tracing::error!(
                actor,
                action,
                object,
                status,
                "the audit writer is gone; entry lost"
            );
        }
    }

    /// Wait until everything recorded so far is stored.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_loop(store: Store, mut rx: mpsc::Receiver<Msg>) {
    while let Some(first) = rx.recv().await {
        let mut entries = Vec::new();
        let mut flushes = Vec::new();
        let until = tokio::time::Instant::now() + BATCH_WAIT;
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Entry(e) => entries.push(e),
                Msg::Flush(done) => flushes.push(done),
            }
            // A flush is waited for: store what there is now.
            next = if entries.len() < BATCH && flushes.is_empty() {
                tokio::time::timeout_at(until, rx.recv())
                    .await
                    .ok()
                    .flatten()
            } else {
                None
            };
        }
        let mut stored = store.append_audit(&entries).await;
        if let Err(e) = &stored {
            tracing::warn!(error = %e, entries = entries.len(), "storing audit entries failed; retrying once");
            tokio::time::sleep(Duration::from_secs(1)).await;
            stored = store.append_audit(&entries).await;
        }
        if let Err(e) = stored {
            tracing::error!(error = %e, entries = entries.len(), "audit entries lost");
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn prune_loop(store: Store, retention: Duration) {
    let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match store.prune_audit(now_ms().saturating_sub(keep_ms)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(entries = n, "pruned the audit log"),
            Err(e) => tracing::warn!(error = %e, "pruning the audit log failed"),
        }
    }
}

/// The middleware that records state-changing requests (inside [`crate::auth::authenticate`]).
pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let method = req.method().to_string();
    let actor = req
        .extensions()
        .get::<Caller>()
        .map(|c| c.username.clone())
        .unwrap_or_default();
    let action = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let (mut parts, body) = req.into_parts();
    let object = match RawPathParams::from_request_parts(&mut parts, &()).await {
        Ok(params) => params
            .iter()
            .map(|(_, v)| v.to_string())
            .collect::<Vec<_>>()
            .join("/"),
        Err(_) => String::new(),
    };
    let resp = next.run(Request::from_parts(parts, body)).await;
    let object = resp
        .extensions()
        .get::<AuditObject>()
        .map_or(object, |o| o.0.clone());
    state
        .audit()
        .record(&actor, &method, &action, &object, resp.status().as_u16())
        .await;
    resp
}

#[derive(Serialize)]
pub struct AuditView {
    time: String,
    actor: String,
    method: String,
    action: String,
    object: String,
    status: u16,
}

#[derive(Serialize)]
pub struct AuditPage {
    entries: Vec<AuditView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// `GET /v1/admin/audit`.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Result<Json<AuditPage>, Error> {
    if !caller.instance_admin {
        return Err(Error::new(
            ErrorCode::Forbidden,
            "only instance administrators read the audit log",
        ));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| Error::new(ErrorCode::InvalidParameter, format!("the query: {e}")))?;
    let (mut actor, mut size, mut before) = (None, DEFAULT_PAGE, None);
    for (k, v) in pairs {
        match k.as_str() {
            "actor" if !v.is_empty() => actor = Some(v),
            "page_size" => {
                size = v
                    .parse::<u32>()
                    .map_err(|_| {
                        Error::new(
                            ErrorCode::InvalidParameter,
                            format!("page_size {v:?} is not a positive integer"),
                        )
                    })?
                    .clamp(1, MAX_PAGE);
            }
            "page_token" if !v.is_empty() => {
                before = Some(page::decode(&v).ok_or_else(|| {
                    Error::new(
                        ErrorCode::InvalidPageToken,
                        "page_token is not one this server issued; start again without it",
                    )
                })?);
            }
            _ => {}
        }
    }
    state.audit().flush().await;
    let mut rows = state
        .runner()
        .store()
        .audit_page(before, actor.as_deref(), size + 1)
        .await
        .map_err(|e| Error::internal("reading the audit log failed", e))?;
    let more = rows.len() > size as usize;
    rows.truncate(size as usize);
    let next_page_token = more
        .then(|| rows.last().map(|r| page::encode(r.seq)))
        .flatten();
    let entries = rows
        .into_iter()
        .map(|r| AuditView {
            time: time::OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(r.entry.at_ms) * 1_000_000,
            )
            .map(tessera_core::time_fmt::format_rfc3339)
            .unwrap_or_default(),
            actor: r.entry.actor,
            method: r.entry.method,
            action: r.entry.action,
            object: r.entry.object,
            status: r.entry.status,
        })
        .collect();
    Ok(Json(AuditPage {
        entries,
        next_page_token,
    }))
}

/// A response naming the object a handler made.
pub fn naming(resp: impl IntoResponse, object: &str) -> Response {
    let mut resp = resp.into_response();
    resp.extensions_mut()
        .insert(AuditObject(object.to_string()));
    resp
}
