//! Errors, mapped from the SDK's.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// Why an object-store call failed. Messages name the operation and the bucket/key, and
/// never the credentials.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum S3Error {
    /// No such object (or, where the store says so, no such bucket).
    #[error("not found")]
    NotFound,
    /// The store refused the credentials or the request (wrong key or signature, no
    /// permission on the bucket).
    #[error("access denied: {0}")]
    Denied(String),
    /// The request itself is wrong: an empty or invalid bucket or key, a limit of 0, a
    /// body that is not the size announced, …
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The store could not be reached or answered with a server-side failure (5xx,
    /// throttling, time-out, connection refused or reset); retrying later may help.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Removes the credentials from messages that could carry them (a store may echo the
/// access key id back).
#[derive(Clone)]
pub(crate) struct Scrubber {
    words: Vec<String>,
}

impl Scrubber {
    pub(crate) fn new(access_key_id: &str, secret: &str) -> Self {
        let words = [access_key_id, secret]
            .into_iter()
            .filter(|w| w.len() >= 4)
            .map(str::to_owned)
            .collect();
        Self { words }
    }

    pub(crate) fn scrub(&self, mut message: String) -> String {
        for word in &self.words {
            if message.contains(word.as_str()) {
                message = message.replace(word.as_str(), "<redacted>");
            }
        }
        message
    }
}

/// Maps an SDK error of operation `op` on `target` (`bucket` or `bucket/key`).
pub(crate) fn from_sdk<E>(
    op: &str,
    target: &str,
    err: SdkError<E, HttpResponse>,
    scrubber: &Scrubber,
) -> S3Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let error = match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code();
            let detail = service.err().message().unwrap_or("");
            let mut message = format!("{op} {target}: ");
            match code {
                Some(code) => message.push_str(code),
                // HEAD responses have no body, so no code: say what the status means.
                None if status == 401 || status == 403 => message.push_str(&format!(
                    "HTTP {status}: the credentials are wrong or lack permission on the bucket"
                )),
                None => message.push_str(&format!("HTTP {status}")),
            }
            if !detail.is_empty() {
                message.push_str(": ");
                message.push_str(detail);
            }
            if code.is_some() {
                message.push_str(&format!(" (HTTP {status})"));
            }
            classify(status, code, message)
        }
        SdkError::ConstructionFailure(_) => {
            S3Error::InvalidInput(format!("{op} {target}: {}", chain(&err)))
        }
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            S3Error::Unavailable(format!("{op} {target}: {}", chain(&err)))
        }
        SdkError::DispatchFailure(failure) => {
            let message = format!("{op} {target}: {}", chain(&err));
            if failure.is_user() {
                S3Error::InvalidInput(message)
            } else if failure.is_io() || failure.is_timeout() {
                S3Error::Unavailable(message)
            } else {
                S3Error::Other(message)
            }
        }
        _ => S3Error::Other(format!("{op} {target}: {}", chain(&err))),
    };
    scrub(error, scrubber)
}

pub(crate) use tessera_core::error::chain;

pub(crate) fn scrub(error: S3Error, scrubber: &Scrubber) -> S3Error {
    match error {
        S3Error::NotFound => S3Error::NotFound,
        S3Error::Denied(m) => S3Error::Denied(scrubber.scrub(m)),
        S3Error::InvalidInput(m) => S3Error::InvalidInput(scrubber.scrub(m)),
        S3Error::Unavailable(m) => S3Error::Unavailable(scrubber.scrub(m)),
        S3Error::Other(m) => S3Error::Other(scrubber.scrub(m)),
    }
}

/// Classifies a store's answer by its S3 error code first, its HTTP status second.
fn classify(status: u16, code: Option<&str>, message: String) -> S3Error {
    match code.unwrap_or("") {
        "NoSuchKey" | "NoSuchBucket" | "NotFound" | "NoSuchUpload" => return S3Error::NotFound,
        "AccessDenied"
        | "AllAccessDisabled"
        | "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "Forbidden"
        | "AccountProblem"
        | "InvalidToken"
        | "ExpiredToken"
        | "TokenRefreshRequired"
        | "RequestTimeTooSkewed"
        | "AuthorizationHeaderMalformed"
        | "InvalidSecurity" => return S3Error::Denied(message),
        "SlowDown" | "ServiceUnavailable" | "InternalError" | "RequestTimeout" | "Unavailable" => {
            return S3Error::Unavailable(message);
        }
        "InvalidBucketName"
        | "InvalidArgument"
        | "InvalidRequest"
        | "InvalidRange"
        | "InvalidPart"
        | "InvalidPartOrder"
        | "KeyTooLongError"
        | "EntityTooLarge"
        | "EntityTooSmall"
        | "MalformedXML"
        | "IncompleteBody"
        | "InvalidDigest"
        | "BadDigest"
        | "MissingContentLength"
        | "InvalidURI" => return S3Error::InvalidInput(message),
        _ => {}
    }
    match status {
        404 => S3Error::NotFound,
        401 | 403 => S3Error::Denied(message),
        408 | 429 | 500..=599 => S3Error::Unavailable(message),
        400 | 411 | 413 | 414 | 416 => S3Error::InvalidInput(message),
        _ => S3Error::Other(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_come_before_statuses() {
        let m = || "m".to_owned();
        assert_eq!(classify(404, Some("NoSuchBucket"), m()), S3Error::NotFound);
        assert_eq!(classify(404, None, m()), S3Error::NotFound);
        assert_eq!(
            classify(403, Some("InvalidAccessKeyId"), m()),
            S3Error::Denied(m())
        );
        assert_eq!(
            classify(400, Some("AccessDenied"), m()),
            S3Error::Denied(m())
        );
        assert_eq!(classify(403, None, m()), S3Error::Denied(m()));
        assert_eq!(
            classify(503, Some("SlowDown"), m()),
            S3Error::Unavailable(m())
        );
        assert_eq!(classify(502, None, m()), S3Error::Unavailable(m()));
        assert_eq!(
            classify(400, Some("InvalidBucketName"), m()),
            S3Error::InvalidInput(m())
        );
        assert_eq!(
            classify(400, Some("Whatever"), m()),
            S3Error::InvalidInput(m())
        );
        assert_eq!(
            classify(409, Some("BucketNotEmpty"), m()),
            S3Error::Other(m())
        );
    }

    #[test]
    fn scrubbing_removes_credentials() {
        let s = Scrubber::new("GK1234abcd", "s3cr3t-value");
        let e = scrub(
            S3Error::Denied("No such key: GK1234abcd (s3cr3t-value)".into()),
            &s,
        );
        assert_eq!(
            e,
            S3Error::Denied("No such key: <redacted> (<redacted>)".into())
        );
        // Too short to be a credential: left alone rather than mangling every message.
        let s = Scrubber::new("", "ab");
        assert_eq!(s.scrub("ab cd".into()), "ab cd");
    }
}
