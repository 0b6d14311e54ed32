//! The audit log: every state-changing request (any method but GET and HEAD) on an
//! authenticated route, and every password login, is recorded with who made it, the
//! route, the object and the status. Entries go to a background writer that stores them
//! in batches every [`BATCH_WAIT`] (so a create neither waits on a second write nor shares
//! the store's writer with one per request);
//! reading the log through this server first waits for what it has queued, and a server
//! that stops gracefully stores everything first. A server killed outright loses at most
//! the last [`BATCH_WAIT`] of entries. Instance admins read it at
//! `GET /v1/admin/audit` (`actor`, `page_size`, `page_token`); entries older than the
//! retention are deleted hourly.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use std::sync::Arc;
use tessera_core::{ErrorCode, page};
use tessera_store::{AuditEntry, Store};

use crate::auth::Caller;
use crate::{AppState, Error};

/// Put into a response by a handler that made an object, to name it in the log.
#[derive(Clone, Debug)]
pub struct AuditObject(pub String);

/// Entries buffered beyond this make the request that adds one store the buffer itself.
const MAX_BUFFERED: usize = 16_384;
/// Entries that make the writer store the buffer before [`BATCH_WAIT`] is up.
const BATCH: usize = 2_048;
/// Longest an entry waits for others to share its transaction.
pub const BATCH_WAIT: Duration = Duration::from_millis(200);

/// The audit log's buffer and writer. Requests append to the buffer (no wake-up, no
/// channel hop per entry); the writer stores it every [`BATCH_WAIT`], or sooner when it
/// fills.
#[derive(Clone)]
pub struct Auditor(Arc<Shared>);

struct Shared {
    store: Store,
    buffer: std::sync::Mutex<Vec<AuditEntry>>,
    full: tokio::sync::Notify,
    /// Held while a batch is stored: a flush that gets it after taking the buffer knows
    /// every earlier batch is stored.
    writing: tokio::sync::Mutex<()>,
}

use tessera_core::time_fmt::now_ms;

impl Auditor {
    /// Start the writer (and the pruning of entries older than `retention`) on `store`.
    pub fn start(store: Store, retention: Duration) -> Auditor {
        let auditor = Auditor(Arc::new(Shared {
            store: store.clone(),
            buffer: std::sync::Mutex::new(Vec::new()),
            full: tokio::sync::Notify::new(),
            writing: tokio::sync::Mutex::new(()),
        }));
        tokio::spawn(auditor.clone().write_loop());
        tokio::spawn(prune_loop(store, retention));
        auditor
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
        let buffered = {
            let mut buffer = self
                .0
                .buffer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            buffer.push(entry);
            buffer.len()
        };
        if buffered >= MAX_BUFFERED {
            // The store cannot keep up: this request waits for it, so memory stays bounded.
            self.flush().await;
        } else if buffered == BATCH {
            self.0.full.notify_one();
        }
    }

    /// Store everything recorded so far; returns once it is stored (or failed, logged).
    pub async fn flush(&self) {
        let _writing = self.0.writing.lock().await;
        let entries = std::mem::take(
            &mut *self
                .0
                .buffer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if entries.is_empty() {
            return;
        }
        let mut stored = self.0.store.append_audit(&entries).await;
        if let Err(e) = &stored {
            tracing::warn!(error = %e, entries = entries.len(), "storing audit entries failed; retrying once");
            tokio::time::sleep(Duration::from_secs(1)).await;
            stored = self.0.store.append_audit(&entries).await;
        }
        if let Err(e) = stored {
            tracing::error!(error = %e, entries = entries.len(), "audit entries lost");
        }
    }

    async fn write_loop(self) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(BATCH_WAIT) => {}
                _ = self.0.full.notified() => {}
            }
            self.flush().await;
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
    let method = req.method().clone();
    let actor = req
        .extensions()
        .get::<Caller>()
        .map(|c| c.username.clone())
        .unwrap_or_default();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let action = route.as_ref().map_or("", MatchedPath::as_str);
    // The object a handler named (a create), else the route's parameters.
    let object = match resp.extensions().get::<AuditObject>() {
        Some(o) => o.0.clone(),
        None => path_params(action, &path),
    };
    state
        .audit()
        .record(
            &actor,
            method.as_str(),
            action,
            &object,
            resp.status().as_u16(),
        )
        .await;
    resp
}

/// A path segment as the handler saw it (kept as sent when it does not decode).
fn decoded(segment: &str) -> String {
    tessera_core::validate::percent_decode(segment).unwrap_or_else(|| segment.to_string())
}

/// The values of a route's `{parameters}` in a concrete path, joined with `/`
/// (`/v1/groups/{name}/members/{user}` and `/v1/groups/lab/members/ada`: `lab/ada`).
fn path_params(route: &str, path: &str) -> String {
    let mut values = Vec::new();
    let mut rest = path.split('/');
    for part in route.split('/') {
        if part.starts_with("{*") {
            // A wildcard takes the rest of the path.
            values.push(decoded(&rest.by_ref().collect::<Vec<_>>().join("/")));
            break;
        }
        let Some(value) = rest.next() else { break };
        if part.starts_with('{') {
            values.push(decoded(value));
        }
    }
    values.join("/")
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditView {
    time: String,
    actor: String,
    method: String,
    action: String,
    object: String,
    status: u16,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    entries: Vec<AuditView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// `GET /v1/admin/audit` query.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct AuditQuery {
    /// Only this user's requests.
    actor: Option<String>,
    /// 1 to 1000, default 100.
    page_size: Option<u32>,
    page_token: Option<String>,
}

/// `GET /v1/admin/audit`: who changed what, newest first (instance admins).
#[utoipa::path(
    get,
    operation_id = "list_audit",
    path = "/v1/admin/audit",
    tag = "identity",
    params(AuditQuery),
    responses((status = 200, body = AuditPage))
)]
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
    let pairs = crate::query::pairs(raw.as_deref())?;
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
            time: tessera_core::time_fmt::from_ms(r.entry.at_ms)
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

#[cfg(test)]
mod tests {
    use super::path_params;

    #[test]
    fn the_object_is_the_routes_parameters() {
        assert_eq!(
            path_params(
                "/v1/groups/{name}/members/{user}",
                "/v1/groups/lab/members/ada"
            ),
            "lab/ada"
        );
        assert_eq!(
            path_params("/v1/tasks/{id}/cancel", "/v1/tasks/T1/cancel"),
            "T1"
        );
        assert_eq!(
            path_params("/v1/data/{bucket}/{*key}", "/v1/data/lab/a/b%20c.txt"),
            "lab/a/b c.txt"
        );
        assert_eq!(path_params("/v1/groups", "/v1/groups"), "");
    }
}
