//! The HTTP layer. Routes:
//! - GA4GH TES v1.1.0 under `/ga4gh/tes/v1`
//! - `GET /v1/tasks/{id}`: a task with its current reason and event history;
//!   `POST /v1/tasks/{id}/cancel`: cancel, saying whether the task had already ended
//! - `/v1/plugins`: plugin install, list, inspect, activate, rollback, delete
//! - `/v1/data`: buckets and objects of the object store behind `s3://` URLs
//! - `/v1/auth`, `/v1/admin/users`, `/v1/groups`: tokens, users and groups (`identity.rs`)
//! - `/healthz`, `/readyz`, `/metrics` and `POST /v1/auth/token` (no token needed)
//!
//! Everything else needs a bearer token (`auth.rs`), and answers for objects of groups
//! the caller does not see as if they did not exist.

pub mod agents;
pub mod audit;
pub mod auth;
pub mod cron;
mod data;
mod error;
pub mod events;
mod identity;
mod metrics;
pub mod oidc;
mod operations;
mod plugins;
mod query;
pub mod retention;
mod run_summary;
mod tes;

pub use error::Error;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use std::sync::Arc;
use tessera_core::ErrorCode;
use tessera_core::validate::Policy;
use tessera_registry::Registry;
use tessera_runner::{ExecutorStatus, Runner};

#[derive(Clone)]
pub struct ApiConfig {
    /// Tokens, the signing key and the group tag.
    pub auth: auth::AuthConfig,
    /// How long audit entries are kept.
    pub audit_retention: std::time::Duration,
    pub max_body_bytes: usize,
    /// What validation allows (storage roots, backend parameters, content size).
    pub policy: Policy,
    /// The key secrets are sealed with at rest.
    pub secrets_key: Arc<tessera_auth::sealed::SealKey>,
    /// How long finished tasks are kept (groups may say otherwise); `None`: forever.
    pub retention: Option<std::time::Duration>,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    runner: Runner,
    cfg: ApiConfig,
    registry: Registry,
    objects: data::Objects,
    auth: auth::Authenticator,
    audit: audit::Auditor,
    events: events::Hub,
    operations: operations::OperationCache,
}

/// Largest plugin upload (a Python component is ~20 MB).
pub const MAX_PLUGIN_BYTES: usize = 256 << 20;

impl AppState {
    pub fn new(
        runner: Runner,
        cfg: ApiConfig,
        registry: Registry,
        objects: Arc<dyn tessera_objstore::ObjectStore>,
    ) -> Result<Self, String> {
        let auth = auth::Authenticator::new(runner.store().clone(), cfg.auth.clone())?;
        let audit = audit::Auditor::start(runner.store().clone(), cfg.audit_retention);
        let events = events::Hub::new(runner.store().clone());
        let state = AppState(Arc::new(Inner {
            operations: Default::default(),
            events,
            auth,
            audit,
            runner,
            cfg,
            registry,
            objects,
        }));
        run_summary::start(state.clone());
        cron::start(state.clone());
        retention::start(state.clone());
        Ok(state)
    }

    fn objects(&self) -> &data::Objects {
        &self.0.objects
    }

    fn secrets_key(&self) -> &tessera_auth::sealed::SealKey {
        &self.0.cfg.secrets_key
    }

    fn operations(&self) -> &operations::OperationCache {
        &self.0.operations
    }

    fn events(&self) -> &events::Hub {
        &self.0.events
    }

    fn auth(&self) -> &auth::Authenticator {
        &self.0.auth
    }

    /// The audit log's writer (flush it before the server exits).
    pub fn audit(&self) -> &audit::Auditor {
        &self.0.audit
    }

    fn registry(&self) -> &Registry {
        &self.0.registry
    }

    fn runner(&self) -> &Runner {
        &self.0.runner
    }

    /// The validation policy with limits from the executor, when they are known.
    fn policy(&self) -> Policy {
        let mut p = self.0.cfg.policy.clone();
        p.filer_schemes = tessera_core::staging::Filers::schemes(&self.0.registry);
        if let ExecutorStatus::Ready {
            cpus, memory_bytes, ..
        } = self.runner().executor_status()
        {
            p.max_cpu_cores = i32::try_from(cpus).ok().filter(|c| *c > 0);
            p.max_ram_gb =
                (memory_bytes > 0).then(|| tessera_core::units::bytes_to_gb(memory_bytes));
        }
        p
    }
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/data", get(data::buckets))
        .route("/v1/data/{bucket}", get(data::list))
        .route(
            "/v1/data/{bucket}/{*key}",
            get(data::get)
                .head(data::head)
                .put(data::put)
                .delete(data::delete),
        )
        .route("/ga4gh/tes/v1/service-info", get(tes::service_info))
        .route(
            "/ga4gh/tes/v1/tasks",
            get(tes::list_tasks).post(tes::create_task),
        )
        .route(
            "/ga4gh/tes/v1/tasks/{id}",
            get(tes::get_task).post(tes::cancel_task),
        )
        .route(
            "/v1/operations",
            get(operations::list_operations).post(operations::create_operation),
        )
        .route(
            "/v1/operations/{id}",
            get(operations::show_operation)
                .put(operations::update_operation)
                .delete(operations::delete_operation),
        )
        .route("/v1/operations/{id}/runs", post(operations::create_run))
        .route("/v1/events", get(events::stream))
        .route("/v1/runs", get(operations::list_runs))
        .route("/v1/runs/{id}", get(operations::show_run))
        .route("/v1/runs/{id}/cancel", post(operations::cancel_run))
        .route("/v1/runs/{id}/rerun", post(operations::rerun))
        .route("/v1/runs/{id}/logs", get(operations::run_logs))
        .route("/v1/runs/{id}/artifacts", get(operations::list_artifacts))
        .route(
            "/v1/runs/{id}/artifacts/{*path}",
            get(operations::download_artifact),
        )
        .route(
            "/v1/configs",
            get(agents::list_configs).post(agents::create_config),
        )
        .route(
            "/v1/configs/{name}",
            get(agents::show_config)
                .put(agents::replace_config)
                .delete(agents::delete_config),
        )
        .route(
            "/v1/secrets",
            get(agents::list_secrets).post(agents::create_secret),
        )
        .route(
            "/v1/secrets/{name}",
            get(agents::show_secret)
                .put(agents::replace_secret)
                .delete(agents::delete_secret),
        )
        .route(
            "/v1/agents",
            get(agents::list_agents).post(agents::create_agent),
        )
        .route(
            "/v1/agents/{name}",
            get(agents::show_agent)
                .put(agents::replace_agent)
                .delete(agents::delete_agent),
        )
        .route(
            "/v1/tasks",
            get(agents::list_tasks).post(agents::create_task),
        )
        .route("/v1/tasks/{id}/exec", post(agents::exec))
        .route("/v1/cron-tasks", get(cron::list).post(cron::create))
        .route(
            "/v1/cron-tasks/{name}",
            get(cron::show).put(cron::replace).delete(cron::delete),
        )
        .route("/v1/cron-tasks/{name}/trigger", post(cron::trigger))
        .route("/v1/tasks/{id}", get(tes::task_status))
        .route("/v1/tasks/{id}/cancel", post(tes::cancel_v1))
        .route(
            "/v1/plugins",
            get(plugins::list)
                .post(plugins::install)
                .layer(DefaultBodyLimit::max(MAX_PLUGIN_BYTES)),
        )
        .route("/v1/plugins/{name}", get(plugins::show))
        .route(
            "/v1/plugins/{name}/versions/{version}/activate",
            post(plugins::activate),
        )
        .route("/v1/plugins/{name}/rollback", post(plugins::rollback))
        .route(
            "/v1/plugins/{name}/versions/{version}",
            delete(plugins::delete),
        )
        .route("/v1/auth/whoami", get(identity::whoami))
        .route(
            "/v1/auth/tokens",
            get(identity::list_tokens).post(identity::create_token),
        )
        .route("/v1/auth/tokens/revoke-all", post(identity::revoke_all))
        .route("/v1/auth/tokens/{name}", delete(identity::delete_token))
        .route(
            "/v1/admin/users",
            get(identity::list_users).post(identity::create_user),
        )
        .route(
            "/v1/admin/users/{name}",
            get(identity::show_user).delete(identity::delete_user),
        )
        .route(
            "/v1/admin/users/{name}/password",
            axum::routing::put(identity::set_password),
        )
        .route(
            "/v1/admin/users/{name}/revoke-tokens",
            post(identity::revoke_user_tokens),
        )
        .route(
            "/v1/groups",
            get(identity::list_groups).post(identity::create_group),
        )
        .route(
            "/v1/groups/{name}",
            get(identity::show_group).delete(identity::delete_group),
        )
        .route(
            "/v1/groups/{name}/members/{user}",
            axum::routing::put(identity::set_member).delete(identity::remove_member),
        )
        .route(
            "/v1/groups/{name}/quota",
            axum::routing::put(identity::set_quota),
        )
        .route(
            "/v1/groups/{name}/retention",
            axum::routing::put(identity::set_retention),
        )
        .route("/v1/admin/audit", get(audit::list))
        .route_layer(middleware::from_fn_with_state(state.clone(), audit::record))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    Router::new()
        .merge(api)
        .route("/v1/auth/token", post(identity::login))
        .route("/v1/auth/providers", get(identity::providers))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render))
        .fallback(|| async { Error::new(ErrorCode::NotFound, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Error::new(
                    ErrorCode::InvalidParameter,
                    "method not allowed on this endpoint",
                ),
            )
                .into_response()
        })
        .layer(DefaultBodyLimit::max(state.0.cfg.max_body_bytes))
        .layer(middleware::from_fn(metrics::track))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            Error::new(
                ErrorCode::Internal,
                "the server hit a bug handling this request",
            )
            .into_response()
        }))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.runner().store().ping().await;
    let kind = state.runner().executor_kind();
    let executor = match state.runner().executor_status() {
        ExecutorStatus::Disabled => serde_json::json!({"kind": kind, "status": "disabled"}),
        ExecutorStatus::Unknown => serde_json::json!({"kind": kind, "status": "unknown"}),
        ExecutorStatus::Ready { version, .. } => {
            serde_json::json!({"kind": kind, "status": "ready", "version": version})
        }
        ExecutorStatus::Unreachable(why) => {
            serde_json::json!({"kind": kind, "status": "unreachable", "reason": why})
        }
    };
    let body = serde_json::json!({
        // The database's own error text stays in the server log: it can name hosts,
        // users and files.
        "store": match &store {
            Ok(()) => serde_json::json!({"status": "ok"}),
            Err(e) => {
                tracing::warn!(error = %e, "readiness: the store does not answer");
                serde_json::json!({"status": "unreachable", "reason": "the store does not answer; the server log has the error"})
            }
        },
        "executor": executor,
    });
    // Ready means the API can serve: tasks are accepted and queue while the executor is away.
    let status = if store.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}
