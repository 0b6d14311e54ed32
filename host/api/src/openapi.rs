//! The OpenAPI 3.1 document of everything the server serves under `/v1` and
//! `/ga4gh/tes/v1`, served at `GET /v1/openapi.json`.
//!
//! It is not written by hand: each handler carries a `#[utoipa::path]` annotation naming
//! its path, parameters, body and answers by their Rust types, and the router is built
//! from those same annotations (utoipa-axum's `routes!`), so a route cannot exist
//! without its entry or differ from it in path or method. What every operation shares
//! is added here once: the bearer-token scheme, and the JSON error (`Error`, with its
//! stable `code`) as the answer to anything that fails.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};
use utoipa::{IntoParams, Modify};

/// The scheme every authenticated operation names.
pub(crate) const BEARER: &str = "bearer";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Tessera",
        description = "Tessera's APIs: the Task API, identity, plugins and datasets under /v1, \
                       and GA4GH TES v1.1.0 under /ga4gh/tes/v1. Every error is JSON with a \
                       stable machine-readable `code` and a `message` (schema `Error`).",
        license(name = "Apache-2.0"),
    ),
    components(schemas(tessera_core::ApiError)),
    paths(crate::tes::cancel_task),
    security(("bearer" = [])),
    modifiers(&BearerScheme),
)]
struct Base;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from POST /v1/auth/token, `tessera token create`, or an \
                         OpenID provider the server trusts.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document the routes are registered into.
pub(crate) fn base() -> OpenApi {
    let mut doc = <Base as utoipa::OpenApi>::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// The finished document: wildcard segments as plain parameters (`{*key}` is axum's
/// spelling; OpenAPI has only `{key}`), and the JSON error as every operation's answer
/// for the statuses it does not list.
pub(crate) fn finish(mut doc: OpenApi) -> OpenApi {
    doc.paths.paths = std::mem::take(&mut doc.paths.paths)
        .into_iter()
        .map(|(path, item)| (path.replace("{*", "{"), item))
        .collect();
    let error = ResponseBuilder::new()
        .description("The request failed: `code` says why (see the Error schema).")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .build();
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            op.responses
                .responses
                .entry("default".to_string())
                .or_insert_with(|| error.clone().into());
        }
    }
    doc
}

/// The document as JSON (pretty: people read it too).
pub(crate) fn to_json(doc: &OpenApi) -> String {
    // Serialising plain data to a string cannot fail; were it to, say so in the body.
    doc.to_pretty_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "encoding the OpenAPI document failed");
        format!("{{\"error\": {:?}}}", e.to_string())
    })
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.head,
        &mut item.patch,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The finished document as JSON, handed to [`document`] (an extension: it is made
/// from the router, after the router's state).
#[derive(Clone)]
pub(crate) struct Document(pub(crate) std::sync::Arc<String>);

/// `GET /v1/openapi.json` (no token needed: the document holds no data).
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "This document", content_type = "application/json"))
)]
pub async fn document(axum::Extension(doc): axum::Extension<Document>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.as_str().to_owned(),
    )
        .into_response()
}

// ---- query parameters several endpoints share ---------------------------------------

/// The group a named thing is in (`?group=`), default the caller's personal group.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InGroup {
    /// A group the caller is a member of; default the caller's personal group.
    #[allow(dead_code)]
    group: Option<String>,
}

/// A listing's groups: one group (`?group=`), default every group the caller sees.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListedGroups {
    /// Only this group's; default all the caller's groups.
    #[allow(dead_code)]
    group: Option<String>,
}

/// Keyset paging: a page size and the token of the page before.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Paging {
    /// Most items in the answer (0: the default).
    #[allow(dead_code)]
    page_size: Option<u32>,
    /// `next_page_token` of the page before.
    #[allow(dead_code)]
    page_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use std::collections::{BTreeMap, BTreeSet};

    fn document() -> Value {
        serde_json::to_value(crate::openapi_document()).expect("the document encodes")
    }

    /// (path, method, operation) of every operation.
    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("a path item") {
                if ["get", "put", "post", "delete", "head", "patch"].contains(&method.as_str()) {
                    out.push((path.clone(), method.clone(), op.clone()));
                }
            }
        }
        out
    }

    fn walk<'a>(v: &'a Value, found: &mut Vec<(&'a str, &'a Value)>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    found.push((k.as_str(), v));
                    walk(v, found);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }

    #[test]
    fn it_is_openapi_3_1_with_the_servers_version() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(
            operations(&doc).len() > 70,
            "every endpoint is in the document"
        );
    }

    #[test]
    fn the_parameters_of_each_path_are_the_ones_its_template_names() {
        for (path, method, op) in operations(&document()) {
            let in_template: BTreeSet<String> = path
                .split('{')
                .skip(1)
                .filter_map(|s| s.split('}').next())
                .map(str::to_string)
                .collect();
            let declared: BTreeSet<String> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect();
            assert_eq!(in_template, declared, "{method} {path}");
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" {
                    assert_eq!(p["required"], true, "{method} {path}: {}", p["name"]);
                }
            }
        }
    }

    #[test]
    fn operation_ids_are_unique_and_every_operation_has_a_tag_and_an_error_answer() {
        let mut seen = BTreeMap::new();
        for (path, method, op) in operations(&document()) {
            let id = op["operationId"].as_str().unwrap_or_default().to_string();
            assert!(!id.is_empty(), "{method} {path} has no operationId");
            if let Some(other) = seen.insert(id.clone(), format!("{method} {path}")) {
                panic!("{id} names both {other} and {method} {path}");
            }
            assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()), "{id}");
            assert_eq!(
                op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/Error",
                "{id}"
            );
        }
    }

    #[test]
    fn only_signing_in_and_the_document_itself_need_no_token() {
        let doc = document();
        assert_eq!(doc["security"], serde_json::json!([{"bearer": []}]));
        let public: BTreeSet<String> = operations(&doc)
            .into_iter()
            .filter(|(_, _, op)| op.get("security").is_some())
            .map(|(path, method, op)| {
                assert_eq!(op["security"], serde_json::json!([{}]), "{method} {path}");
                format!("{method} {path}")
            })
            .collect();
        let expected: BTreeSet<String> = [
            "post /v1/auth/token",
            "get /v1/auth/providers",
            "get /v1/openapi.json",
        ]
        .into_iter()
        .map(str::to_string)
        .collect();
        assert_eq!(public, expected);
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let mut found = Vec::new();
        walk(&doc, &mut found);
        for (k, v) in found {
            if k == "$ref" {
                let name = v
                    .as_str()
                    .and_then(|r| r.strip_prefix("#/components/schemas/"))
                    .unwrap_or_else(|| panic!("an unexpected reference {v}"));
                assert!(
                    doc["components"]["schemas"].get(name).is_some(),
                    "{name} is referenced but not defined"
                );
            }
        }
    }

    #[test]
    fn name_patterns_are_the_rules_the_server_checks() {
        let doc = document();
        let mut found = Vec::new();
        walk(&doc, &mut found);
        let rules = [
            tessera_core::identity::NAME_PATTERN,
            tessera_core::operation::NAME_PATTERN,
        ];
        let patterns: Vec<&str> = found
            .iter()
            .filter(|(k, _)| *k == "pattern")
            .filter_map(|(_, v)| v.as_str())
            .collect();
        assert!(patterns.len() >= 7, "{patterns:?}");
        for p in patterns {
            assert!(
                rules.contains(&p),
                "pattern {p:?} is not a rule of the core"
            );
        }
        let days = &doc["components"]["schemas"]["NewTokenBody"]["properties"]["expires_in_days"];
        assert_eq!(days["maximum"], crate::identity::MAX_TOKEN_DAYS, "{days}");
    }
}
