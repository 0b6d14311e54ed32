//! Request bodies: the one way every handler reads one and parses it as JSON, so that a
//! body that cannot be read or parsed is the JSON error every API promises (413
//! `body_too_large`, 400 `malformed_body` naming the field), never axum's plain text.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use tessera_core::{ApiError, ErrorCode};

use crate::{AppState, Error};

/// A request's whole body (at most the server's `--max-body-bytes`).
pub struct RequestBody(pub Bytes);

impl FromRequest<AppState> for RequestBody {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Error> {
        Bytes::from_request(req, state)
            .await
            .map(RequestBody)
            .map_err(|rej| {
                if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Error::new(
                        ErrorCode::BodyTooLarge,
                        format!(
                            "the request body is larger than this server accepts ({} bytes)",
                            state.0.cfg.max_body_bytes
                        ),
                    )
                } else {
                    Error::new(
                        ErrorCode::MalformedBody,
                        format!("could not read the request body: {rej}"),
                    )
                }
            })
    }
}

/// A JSON body of the type the endpoint takes (`what` names it in errors, e.g. "task").
pub(crate) fn json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, Error> {
    if body.is_empty() {
        return Err(Error::new(
            ErrorCode::MalformedBody,
            format!("the request body is empty; send a JSON {what} document"),
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path.is_empty() || path == "." {
            format!("the body is not a valid {what} document: {inner}")
        } else {
            format!("the body is not a valid {what} document: at {path}: {inner}")
        };
        let mut err = ApiError::new(ErrorCode::MalformedBody, message);
        if !path.is_empty() && path != "." {
            err.details.push(tessera_core::error::FieldError {
                field: path,
                message: inner.to_string(),
            });
        }
        Error(err)
    })
}

/// [`json`] for a body that may be left empty (or blank): all defaults then.
pub(crate) fn json_or_default<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    what: &str,
) -> Result<T, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        json(body, what)
    }
}
