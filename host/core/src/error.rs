//! Errors every API returns: JSON with a stable machine-readable code and a message
//! that tells the caller what to fix.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not JSON, or JSON of the wrong shape (types, missing fields).
    MalformedBody,
    /// The body parsed but a field breaks a rule (see `details`).
    InvalidTask,
    /// The same for the Task API's other documents (operations, run requests, agents,
    /// configs, cron tasks): each broken rule is in `details`.
    InvalidDocument,
    /// A query parameter is invalid.
    InvalidParameter,
    /// A `page_token` this server did not issue.
    InvalidPageToken,
    NotFound,
    /// An uploaded plugin is refused: a bad manifest, or a component that does not load
    /// as the world it claims (see `message`).
    InvalidPlugin,
    /// The request contradicts the current state (e.g. deleting a plugin version in use).
    Conflict,
    BodyTooLarge,
    /// An upload without a `Content-Length` header (objects are stored with their size).
    LengthRequired,
    Unauthorized,
    /// The caller may not do this (or the storage behind the server refused it).
    Forbidden,
    UnsupportedMediaType,
    /// A group's quota refuses the request (e.g. its queue is full).
    QuotaExceeded,
    Internal,
    Unavailable,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::MalformedBody
            | ErrorCode::InvalidTask
            | ErrorCode::InvalidDocument
            | ErrorCode::InvalidParameter
            | ErrorCode::InvalidPageToken
            | ErrorCode::InvalidPlugin => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::LengthRequired => 411,
            ErrorCode::BodyTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::QuotaExceeded => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }
}

/// One broken rule: where (a JSON path such as `executors[0].image`) and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn at(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Error))]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("{what} {id:?} does not exist"))
    }

    /// A `what` document (e.g. "operation") with the broken rules in `details`.
    pub fn invalid_document(what: &str, details: Vec<FieldError>) -> Self {
        let message = match details.as_slice() {
            [one] => format!("invalid {what}: {}: {}", one.field, one.message),
            many => format!(
                "invalid {what}: {} problems, first: {}: {}",
                many.len(),
                many.first().map(|d| d.field.as_str()).unwrap_or(""),
                many.first().map(|d| d.message.as_str()).unwrap_or("")
            ),
        };
        ApiError {
            code: ErrorCode::InvalidDocument,
            message,
            details,
        }
    }

    pub fn invalid_task(details: Vec<FieldError>) -> Self {
        let message = match details.as_slice() {
            [one] => format!("invalid task: {}: {}", one.field, one.message),
            many => format!(
                "invalid task: {} problems, first: {}: {}",
                many.len(),
                many.first().map(|d| d.field.as_str()).unwrap_or(""),
                many.first().map(|d| d.message.as_str()).unwrap_or("")
            ),
        };
        ApiError {
            code: ErrorCode::InvalidTask,
            message,
            details,
        }
    }
}

/// An error and its sources, joined with ": " — what to log or show where the top-level
/// message says little (hyper's "error sending request", the AWS SDK's "dispatch
/// failure"). A source whose text the message already holds is left out.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !text.is_empty() && !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = e.source();
    }
    message
}

#[cfg(test)]
mod chain_tests {
    use super::chain;

    #[derive(Debug)]
    struct Wrapped(&'static str, Option<Box<Wrapped>>);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn the_sources_follow_the_message_once_each() {
        let inner = Wrapped("connection refused", None);
        let mid = Wrapped("client error (Connect)", Some(Box::new(inner)));
        let top = Wrapped("error sending request", Some(Box::new(mid)));
        assert_eq!(
            chain(&top),
            "error sending request: client error (Connect): connection refused"
        );
        let repeated = Wrapped("dns error: failed", Some(Box::new(Wrapped("failed", None))));
        assert_eq!(chain(&repeated), "dns error: failed");
    }
}
