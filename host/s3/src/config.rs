//! Connection settings.

pub use tessera_core::secret::Secret;

/// Where the store is and how to sign requests to it (static credentials).
#[derive(Clone, Debug)]
pub struct S3Config {
    /// The store's base URL, e.g. `http://127.0.0.1:3900`; `None` for AWS S3 itself
    /// (the endpoint is then derived from the region). `http://` endpoints are spoken to
    /// in plain HTTP, `https://` ones over rustls (ring) with the system's root
    /// certificates.
    pub endpoint: Option<String>,
    /// The signing region, e.g. `us-east-1`, or `garage` for Garage's default.
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// Address buckets as `endpoint/bucket/key` rather than `bucket.endpoint/key`
    /// (needed for most self-hosted stores and for IP-address endpoints).
    pub path_style: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let config = S3Config {
            endpoint: Some("http://127.0.0.1:3900".into()),
            region: "garage".into(),
            access_key_id: "GKexample".into(),
            secret_access_key: Secret::new("very-secret-value"),
            path_style: true,
        };
        let shown = format!("{config:?} {config:#?}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert_eq!(config.secret_access_key.expose(), "very-secret-value");
    }
}
