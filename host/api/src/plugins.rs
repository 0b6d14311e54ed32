//! `/v1/plugins`: install, list, inspect, activate, roll back and delete plugins.
//!
//! - `POST /v1/plugins`: multipart form with `manifest` (TOML or JSON) and `component`
//!   (the `.wasm` bytes). 201 with the version; 400 `invalid_plugin` when the component
//!   does not load as the world its manifest claims; 409 when the version exists with
//!   other bytes.
//! - `GET /v1/plugins`, `GET /v1/plugins/{name}`
//! - `POST /v1/plugins/{name}/versions/{version}/activate` with an optional JSON body
//!   `{"scope": "...", "config": {...}, "secrets": {...}, "allow_hosts": [...],
//!   "buckets": [...], "filter": {"states": [...], "tags": {...}, "groups": [...]},
//!   "grant_any": false}` (settings given replace the binding's; none given keeps those
//!   of the same plugin; `*` hosts or buckets need `"grant_any": true`)
//! - `POST /v1/plugins/{name}/rollback` with an optional `{"scope": "..."}`
//! - `DELETE /v1/plugins/{name}/versions/{version}`
//!
//! Installing and deleting versions, and every binding of the instance (filers, engine
//! adapters, the default router), are for instance admins. A router or notifier bound
//! to a group (its scope names the group) is managed by that group's admins: for them a
//! notifier only ever sees its group's tasks. Lists show the bindings of groups the
//! caller sees; other groups' bindings do not exist for it.

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tessera_core::ErrorCode;
use tessera_core::identity::Role;
use tessera_registry::{Grant, PluginView, RegistryError, Settings};

use crate::auth::Caller;
use crate::body::RequestBody;
use crate::{AppState, Error};

impl From<RegistryError> for Error {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid(m) => Error::new(ErrorCode::InvalidPlugin, m),
            RegistryError::Load(l) => Error::new(ErrorCode::InvalidPlugin, l.to_string()),
            RegistryError::NotFound(m) => Error::new(ErrorCode::NotFound, m),
            RegistryError::Conflict(m) => Error::new(ErrorCode::Conflict, m),
            RegistryError::Store(e) => Error::internal("the plugin store failed", e),
        }
    }
}

/// `POST /v1/plugins` form.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct InstallForm {
    /// The manifest (TOML or JSON).
    manifest: String,
    /// The component (`.wasm`).
    #[schema(format = Binary, content_media_type = "application/wasm")]
    component: Vec<u8>,
}

/// Install a plugin version (instance admins).
#[utoipa::path(
    post,
    operation_id = "install_plugin",
    path = "/v1/plugins",
    tag = "plugins",
    request_body(content = InstallForm, content_type = "multipart/form-data"),
    responses((status = 201, body = tessera_registry::VersionView))
)]
pub async fn install(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, Error> {
    caller.check_instance_admin()?;
    let mut multipart = multipart.map_err(|e| {
        Error::new(
            ErrorCode::MalformedBody,
            format!("send a multipart/form-data body with `manifest` and `component` parts: {e}"),
        )
    })?;
    let mut manifest: Option<String> = None;
    let mut component: Option<Bytes> = None;
    loop {
        let field = multipart.next_field().await.map_err(multipart_error)?;
        let Some(field) = field else { break };
        match field.name() {
            Some("manifest") => {
                let text = field.text().await.map_err(multipart_error)?;
                manifest = Some(text);
            }
            Some("component") => {
                component = Some(field.bytes().await.map_err(multipart_error)?);
            }
            other => {
                return Err(Error::new(
                    ErrorCode::MalformedBody,
                    format!(
                        "unexpected form part {:?}; send `manifest` and `component`",
                        other.unwrap_or("")
                    ),
                ));
            }
        }
    }
    let (Some(manifest), Some(component)) = (manifest, component) else {
        return Err(Error::new(
            ErrorCode::MalformedBody,
            "both form parts are required: `manifest` (TOML or JSON) and `component` (.wasm)",
        ));
    };
    let view = state
        .registry()
        .install(&manifest, component.to_vec())
        .await?;
    let object = format!("{}@{}", view.name, view.version);
    Ok(crate::audit::naming(
        (StatusCode::CREATED, Json(view)),
        &object,
    ))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> Error {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::new(ErrorCode::BodyTooLarge, e.body_text())
    } else {
        Error::new(ErrorCode::MalformedBody, e.body_text())
    }
}

/// Whether the caller sees a binding of `world` in `scope`: a group's binding if it
/// sees the group, the instance's bindings if it is an instance admin.
fn sees_binding(caller: &Caller, world: tessera_core::plugin::World, scope: &str) -> bool {
    match world.binding_group(scope) {
        Some(group) => caller.sees(group),
        None => caller.instance_admin,
    }
}

/// The plugin with only the bindings the caller sees.
fn visible(caller: &Caller, mut plugin: PluginView) -> PluginView {
    plugin
        .bindings
        .retain(|b| sees_binding(caller, b.world, &b.scope));
    for v in &mut plugin.versions {
        v.calls
            .retain(|c| sees_binding(caller, plugin.world, &c.scope));
    }
    plugin
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct PluginList {
    plugins: Vec<PluginView>,
}

#[utoipa::path(
    get,
    operation_id = "list_plugins",
    path = "/v1/plugins",
    tag = "plugins",
    responses((status = 200, body = PluginList))
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, Error> {
    let plugins: Vec<PluginView> = state
        .registry()
        .list()
        .await?
        .into_iter()
        .map(|p| visible(&caller, p))
        .collect();
    Ok(Json(PluginList { plugins }).into_response())
}

#[utoipa::path(
    get,
    operation_id = "show_plugin",
    path = "/v1/plugins/{name}",
    tag = "plugins",
    params(("name" = String, Path)),
    responses((status = 200, body = PluginView))
)]
pub async fn show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    Ok(Json(visible(&caller, state.registry().show(&name).await?)).into_response())
}

/// Who may change what serves `scope` for plugin `name`: instance admins anything; a
/// group's admins the routers and notifiers bound to their group. Returns, when the
/// caller acts as a group admin, the group and the plugin.
async fn check_may_bind(
    state: &AppState,
    caller: &Caller,
    name: &str,
    scope: Option<&str>,
) -> Result<Option<(String, PluginView)>, Error> {
    if caller.is_instance_admin() {
        return Ok(None);
    }
    let plugin = state.registry().show(name).await?;
    let group = scope
        .and_then(|s| plugin.world.binding_group(s))
        .ok_or_else(|| {
            Error::new(
                ErrorCode::Forbidden,
                "only instance administrators bind plugins for the whole instance; a group's \
                 admins bind routers and notifiers with the group's name as the scope",
            )
        })?;
    caller.check_role(Role::Admin, group, "group", group)?;
    Ok(Some((group.to_string(), plugin)))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateBody {
    scope: Option<String>,
    config: Option<std::collections::BTreeMap<String, String>>,
    secrets: Option<std::collections::BTreeMap<String, String>>,
    allow_hosts: Option<Vec<String>>,
    filter: Option<tessera_registry::EventFilter>,
    buckets: Option<Vec<String>>,
    /// Settings with `*` hosts or buckets need this.
    #[serde(default)]
    grant_any: bool,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    scope: Option<String>,
}

/// A group's notifier hears of its group's tasks and no others: a filter naming other
/// groups is refused, and one naming none is confined to the group (a binding that is
/// already confined keeps its settings when none are given).
fn confine_notifier(
    body: &mut ActivateBody,
    group: &str,
    plugin: &PluginView,
) -> Result<(), Error> {
    let only_group = vec![group.to_string()];
    match &mut body.filter {
        Some(filter) => {
            if filter.groups.iter().any(|g| g != group) {
                return Err(Error::new(
                    ErrorCode::Forbidden,
                    format!("a binding of group {group:?} only hears of that group's tasks"),
                ));
            }
            filter.groups = only_group;
        }
        None => {
            let confined = plugin.bindings.iter().any(|b| {
                b.scope == group && b.filter.as_ref().is_some_and(|f| f.groups == only_group)
            });
            let other_settings = body.config.is_some()
                || body.secrets.is_some()
                || body.allow_hosts.is_some()
                || body.buckets.is_some();
            if !confined || other_settings {
                body.filter = Some(tessera_registry::EventFilter {
                    groups: only_group,
                    ..Default::default()
                });
            }
        }
    }
    Ok(())
}

/// Bind a version to a scope (the body may be empty).
#[utoipa::path(
    post,
    operation_id = "activate_plugin",
    path = "/v1/plugins/{name}/versions/{version}/activate",
    tag = "plugins",
    params(("name" = String, Path), ("version" = String, Path)),
    request_body(content = Option<ActivateBody>),
    responses((status = 200, body = tessera_registry::BindingView))
)]
pub async fn activate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, version)): Path<(String, String)>,
    RequestBody(body): RequestBody,
) -> Result<Response, Error> {
    let mut body: ActivateBody = crate::body::json_or_default(&body, "request")?;
    if let Some((group, plugin)) =
        check_may_bind(&state, &caller, &name, body.scope.as_deref()).await?
    {
        if body.grant_any {
            return Err(Error::new(
                ErrorCode::Forbidden,
                "only instance administrators grant `*` hosts or buckets",
            ));
        }
        if plugin.world == tessera_core::plugin::World::Notifier {
            confine_notifier(&mut body, &group, &plugin)?;
        }
    }
    // Settings replace the binding's only when given; otherwise an upgrade keeps them.
    let given = body.config.is_some()
        || body.secrets.is_some()
        || body.allow_hosts.is_some()
        || body.filter.is_some()
        || body.buckets.is_some();
    let settings = given.then(|| Settings {
        config: body.config.unwrap_or_default(),
        secrets: body.secrets.unwrap_or_default(),
        allow_hosts: body.allow_hosts.unwrap_or_default(),
        filter: body.filter,
        buckets: body.buckets.unwrap_or_default(),
    });
    let binding = state
        .registry()
        .activate(
            &name,
            &version,
            body.scope.as_deref(),
            settings,
            if body.grant_any {
                Grant::Any
            } else {
                Grant::Named
            },
        )
        .await?;
    Ok(Json(binding).into_response())
}

/// Bind the version bound before (the body may be empty).
#[utoipa::path(
    post,
    operation_id = "rollback_plugin",
    path = "/v1/plugins/{name}/rollback",
    tag = "plugins",
    params(("name" = String, Path)),
    request_body(content = Option<RollbackBody>),
    responses((status = 200, body = tessera_registry::BindingView))
)]
pub async fn rollback(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RequestBody(body): RequestBody,
) -> Result<Response, Error> {
    let body: RollbackBody = crate::body::json_or_default(&body, "request")?;
    check_may_bind(&state, &caller, &name, body.scope.as_deref()).await?;
    let binding = state
        .registry()
        .rollback(&name, body.scope.as_deref())
        .await?;
    Ok(Json(binding).into_response())
}

/// Delete a version that nothing binds (instance admins).
#[utoipa::path(
    delete,
    operation_id = "delete_plugin_version",
    path = "/v1/plugins/{name}/versions/{version}",
    tag = "plugins",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 204, description = "Deleted"))
)]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, Error> {
    caller.check_instance_admin()?;
    state.registry().delete(&name, &version).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
