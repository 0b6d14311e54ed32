//! The HTTP layer. Routes:
//! - GA4GH TES v1.1.0 under `/ga4gh/tes/v1`
//! - `GET /v1/tasks/{id}`: a task with its current reason and event history;
//!   `POST /v1/tasks/{id}/cancel`: cancel, saying whether the task had already ended
//! - `/v1/plugins`: plugin install, list, inspect, activate, rollback, delete
//! - `/v1/data`: buckets and objects of the object store behind `s3://` URLs
//! - `/v1/auth`, `/v1/admin/users`, `/v1/groups`: tokens, users and groups (`identity.rs`)
//! - the Task API: operations and runs, configs, secrets, agents, tasks, cron tasks, events
//! - `GET /v1/openapi.json`: the OpenAPI 3.1 document of all of the above (`openapi.rs`)
//! - `/healthz`, `/readyz`, `/metrics`, `POST /v1/auth/token`, `GET /v1/auth/providers` and
//!   the OpenAPI document need no token
//!
//! Everything else needs a bearer token (`auth.rs`), and answers for objects of groups
//! the caller does not see as if they did not exist.

pub mod agents;
pub mod audit;
pub mod auth;
mod body;
pub mod cron;
mod data;
mod engines;
mod error;
pub mod events;
mod identity;
mod metrics;
pub mod oidc;
mod openapi;
mod operations;
mod plugins;
mod query;
pub mod retention;
mod run_summary;
mod task_output;
mod tes;
mod workflow_adapters;
mod workflow_runs;
mod workflows;

pub use error::Error;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use tessera_core::ErrorCode;
use tessera_core::validate::Policy;
use tessera_registry::Registry;
use tessera_runner::{ExecutorStatus, Runner};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};

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
    workflows: workflow_runs::WorkflowCache,
    /// Wakes the workflow scheduler (a run was made, canceled or retried).
    workflow_wake: tokio::sync::Notify,
    /// Runs on engine adapters whose background sync is under way.
    adapter_syncs: workflow_adapters::InFlight,
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
            workflows: Default::default(),
            workflow_wake: tokio::sync::Notify::new(),
            adapter_syncs: Default::default(),
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
        workflow_runs::start(state.clone());
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

    fn workflow_cache(&self) -> &workflow_runs::WorkflowCache {
        &self.0.workflows
    }

    fn workflow_wake(&self) -> &tokio::sync::Notify {
        &self.0.workflow_wake
    }

    fn adapter_syncs(&self) -> &workflow_adapters::InFlight {
        &self.0.adapter_syncs
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

/// The routes that need a token, with their OpenAPI entries. Each `routes!` is one path:
/// its handlers' annotations give the path and methods of both the route and its entry.
fn authenticated_routes() -> OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(data::buckets))
        .routes(routes!(data::list))
        .routes(routes!(data::get, data::head, data::put, data::delete))
        .routes(routes!(tes::service_info))
        .routes(routes!(tes::list_tasks, tes::create_task))
        .routes(routes!(tes::get_task))
        // TES's `POST /tasks/{id}:cancel`: one path segment the router cannot split, so
        // it is routed at `/tasks/{id}` and documented at its TES path (`openapi::Base`).
        .route(
            "/ga4gh/tes/v1/tasks/{id}",
            axum::routing::post(tes::cancel_task),
        )
        .routes(routes!(
            operations::list_operations,
            operations::create_operation
        ))
        .routes(routes!(
            operations::show_operation,
            operations::update_operation,
            operations::delete_operation
        ))
        .routes(routes!(operations::create_run))
        .routes(routes!(events::stream))
        .routes(routes!(operations::list_runs))
        .routes(routes!(operations::show_run))
        .routes(routes!(operations::cancel_run))
        .routes(routes!(operations::rerun))
        .routes(routes!(operations::run_logs))
        .routes(routes!(operations::list_artifacts))
        .routes(routes!(operations::download_artifact))
        .routes(routes!(agents::list_configs, agents::create_config))
        .routes(routes!(
            agents::show_config,
            agents::replace_config,
            agents::delete_config
        ))
        .routes(routes!(agents::list_secrets, agents::create_secret))
        .routes(routes!(
            agents::show_secret,
            agents::replace_secret,
            agents::delete_secret
        ))
        .routes(routes!(agents::list_agents, agents::create_agent))
        .routes(routes!(
            agents::show_agent,
            agents::replace_agent,
            agents::delete_agent
        ))
        .routes(routes!(agents::list_tasks, agents::create_task))
        .routes(routes!(agents::exec))
        .routes(routes!(cron::list, cron::create))
        .routes(routes!(cron::show, cron::replace, cron::delete))
        .routes(routes!(cron::trigger))
        .routes(routes!(tes::task_status))
        .routes(routes!(tes::cancel_v1))
        .routes(
            routes!(plugins::list, plugins::install).layer(DefaultBodyLimit::max(MAX_PLUGIN_BYTES)),
        )
        .routes(routes!(plugins::show))
        .routes(routes!(plugins::activate))
        .routes(routes!(plugins::rollback))
        .routes(routes!(plugins::delete))
        .routes(routes!(identity::whoami))
        .routes(routes!(identity::list_tokens, identity::create_token))
        .routes(routes!(identity::revoke_all))
        .routes(routes!(identity::delete_token))
        .routes(routes!(identity::list_users, identity::create_user))
        .routes(routes!(identity::show_user, identity::delete_user))
        .routes(routes!(identity::set_password))
        .routes(routes!(identity::revoke_user_tokens))
        .routes(routes!(identity::list_groups, identity::create_group))
        .routes(routes!(identity::show_group, identity::delete_group))
        .routes(routes!(identity::set_member, identity::remove_member))
        .routes(routes!(identity::set_quota))
        .routes(routes!(identity::set_retention))
        .routes(routes!(audit::list))
        .routes(routes!(
            workflows::list_workflows,
            workflows::create_workflow
        ))
        .routes(routes!(workflows::show_latest, workflows::delete_workflow))
        .routes(routes!(workflows::show_version, workflows::delete_version))
        .routes(routes!(workflows::list_tasks))
        .routes(routes!(workflows::show_task))
        .routes(routes!(
            workflow_runs::list_runs,
            workflow_runs::create_run,
            workflow_runs::delete_runs
        ))
        .routes(routes!(workflow_runs::cancel_runs))
        .routes(routes!(workflow_runs::retry_runs))
        .routes(routes!(workflow_runs::sync_runs))
        .routes(routes!(workflow_runs::data_size))
        .routes(routes!(workflow_runs::clean_run))
        .routes(routes!(workflow_runs::show_run))
        .routes(routes!(workflow_runs::cancel_run))
        .routes(routes!(workflow_runs::retry_run))
        .routes(routes!(workflow_runs::list_task_runs))
        .routes(routes!(workflow_runs::show_task_run))
        .routes(routes!(workflow_runs::task_run_logs))
}

/// The routes anyone may call.
fn public_routes() -> OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    OpenApiRouter::new()
        .routes(routes!(identity::login))
        .routes(routes!(identity::providers))
        .routes(routes!(openapi::document))
}

/// The OpenAPI 3.1 document of the API (served at `/v1/openapi.json`).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    openapi::finish(authenticated_routes().merge(public_routes()).into_openapi())
}

/// [`openapi_document`] as the JSON the server serves.
pub fn openapi_json() -> String {
    openapi::to_json(&openapi_document())
}

pub fn router(state: AppState) -> Router {
    let api = authenticated_routes()
        .route_layer(middleware::from_fn_with_state(state.clone(), audit::record))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    let (routes, doc) = api.merge(public_routes()).split_for_parts();
    let json = openapi::to_json(&openapi::finish(doc));
    routes
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render))
        .layer(axum::Extension(openapi::Document(Arc::new(json))))
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
