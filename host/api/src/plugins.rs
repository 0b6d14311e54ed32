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

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tessera_core::ErrorCode;
use tessera_registry::{Grant, RegistryError, Settings};

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

pub async fn install(
    State(state): State<AppState>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, Error> {
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
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> Error {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::new(ErrorCode::BodyTooLarge, e.body_text())
    } else {
        Error::new(ErrorCode::MalformedBody, e.body_text())
    }
}

pub async fn list(State(state): State<AppState>) -> Result<Response, Error> {
    let plugins = state.registry().list().await?;
    Ok(Json(serde_json::json!({ "plugins": plugins })).into_response())
}

pub async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    Ok(Json(state.registry().show(&name).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivateBody {
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    scope: Option<String>,
}

/// An optional JSON body: empty means all defaults.
fn optional_json<T: Default + serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| Error::new(ErrorCode::MalformedBody, format!("the JSON body: {e}")))
}

pub async fn activate(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Error> {
    let body: ActivateBody = optional_json(&body)?;
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

pub async fn rollback(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Error> {
    let body: RollbackBody = optional_json(&body)?;
    let binding = state
        .registry()
        .rollback(&name, body.scope.as_deref())
        .await?;
    Ok(Json(binding).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, Error> {
    state.registry().delete(&name, &version).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
