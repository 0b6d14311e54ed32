//! An external OpenID provider's keys: discovered from its issuer URL
//! (`/.well-known/openid-configuration` → `jwks_uri`), cached for a while, and fetched
//! again early when a token names a key the cache lacks (a rotation) — at most once per
//! `refetch_interval`, so a flood of tokens with made-up key ids cannot make the server
//! hammer the provider. The checks themselves are `tessera_auth::oidc`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tessera_auth::oidc::{self, JwkSet, OidcError, OidcIdentity, OidcSettings};
use tessera_core::ErrorCode;
use tokio::time::Instant;

use crate::Error;

/// How the provider is used.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub settings: OidcSettings,
    /// How long fetched keys are used before they are fetched again.
    pub jwks_ttl: Duration,
    /// Fewest time between two fetches caused by unknown keys.
    pub refetch_interval: Duration,
    /// PEM certificates to trust for the provider besides the Mozilla roots (a
    /// provider behind a private CA).
    pub extra_roots_pem: Option<Vec<u8>>,
}

/// A GET returning JSON (the provider's documents).
pub type FetchFuture = Pin<Box<dyn Future<Output = Result<Value, String>> + Send>>;
pub trait Fetch: Send + Sync {
    fn get_json(&self, url: &str) -> FetchFuture;
}

/// Largest provider document read.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

struct HttpFetch(reqwest::Client);

impl Fetch for HttpFetch {
    fn get_json(&self, url: &str) -> FetchFuture {
        let req = self.0.get(url);
        let url = url.to_string();
        Box::pin(async move {
            let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("{url}: {}", resp.status()));
            }
            let bytes = resp.bytes().await.map_err(|e| format!("{url}: {e}"))?;
            if bytes.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("{url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
            }
            serde_json::from_slice(&bytes).map_err(|e| format!("{url}: {e}"))
        })
    }
}

#[derive(Default)]
struct Keys {
    jwks_uri: Option<String>,
    keys: Option<(Arc<JwkSet>, Instant)>,
    last_fetch: Option<Instant>,
}

/// The provider, as the server sees it.
pub struct Oidc {
    cfg: OidcConfig,
    fetch: Arc<dyn Fetch>,
    /// Raised whenever a fetch finds the set of key ids changed: tokens verified under
    /// an earlier set are verified again (so a key rotated out stops working).
    version: std::sync::atomic::AtomicU64,
    // Held across a fetch: concurrent requests wait for one fetch instead of making many.
    keys: tokio::sync::Mutex<Keys>,
}

/// The issuer must be HTTPS, or HTTP on a loopback address (tests, a provider beside
/// the server).
pub fn check_issuer(issuer: &str) -> Result<(), String> {
    if issuer.starts_with("https://") {
        return Ok(());
    }
    let host = issuer
        .strip_prefix("http://")
        .and_then(|rest| rest.split(['/', '?']).next())
        .map(|authority| {
            authority
                .rsplit_once(':')
                .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
                .map_or(authority, |(h, _)| h)
        });
    match host {
        Some("localhost" | "127.0.0.1" | "[::1]") => Ok(()),
        _ => Err(format!(
            "the OpenID issuer {issuer:?} must be an https:// URL (http:// only on loopback)"
        )),
    }
}

impl Oidc {
    pub fn new(cfg: OidcConfig) -> Result<Oidc, String> {
        check_issuer(&cfg.settings.issuer)?;
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &cfg.extra_roots_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("the OpenID provider's CA certificates: {e}"))?;
            for c in certs {
                http = http.add_root_certificate(c);
            }
        }
        let http = http.build().map_err(|e| e.to_string())?;
        Ok(Oidc::with_fetch(cfg, Arc::new(HttpFetch(http))))
    }

    pub fn with_fetch(cfg: OidcConfig, fetch: Arc<dyn Fetch>) -> Oidc {
        Oidc {
            cfg,
            fetch,
            version: std::sync::atomic::AtomicU64::new(0),
            keys: tokio::sync::Mutex::new(Keys::default()),
        }
    }

    /// The key set's version (see the field).
    pub fn keys_version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn issuer(&self) -> &str {
        &self.cfg.settings.issuer
    }

    pub fn audience(&self) -> &str {
        &self.cfg.settings.audience
    }

    /// The provider's keys: the cached set while it is fresh; fetched again when stale,
    /// or (`unknown_key`) when a token named a key it lacks and the last fetch is older
    /// than the refetch interval.
    async fn keys(&self, unknown_key: bool) -> Result<Arc<JwkSet>, Error> {
        let mut k = self.keys.lock().await;
        let cached = k.keys.clone();
        let fresh = cached
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() < self.cfg.jwks_ttl);
        let may_refetch = k
            .last_fetch
            .is_none_or(|at| at.elapsed() >= self.cfg.refetch_interval);
        match (&cached, fresh, unknown_key) {
            (Some((set, _)), true, false) => return Ok(set.clone()),
            (Some((set, _)), _, true) if !may_refetch => return Ok(set.clone()),
            _ => {}
        }
        k.last_fetch = Some(Instant::now());
        match self.fetch_keys(&mut k).await {
            Ok(set) => {
                let kid_list = |s: &JwkSet| -> Vec<Option<String>> {
                    let mut v: Vec<_> = s.keys.iter().map(|k| k.common.key_id.clone()).collect();
                    v.sort();
                    v
                };
                if cached
                    .as_ref()
                    .is_none_or(|(old, _)| kid_list(old) != kid_list(&set))
                {
                    self.version
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                let set = Arc::new(set);
                k.keys = Some((set.clone(), Instant::now()));
                Ok(set)
            }
            Err(e) => {
                tracing::warn!(issuer = %self.cfg.settings.issuer, error = %e, "fetching the OpenID provider's keys failed");
                // Keys that worked keep working while the provider is away.
                match cached {
                    Some((set, _)) => Ok(set),
                    None => Err(Error::new(
                        ErrorCode::Unavailable,
                        "the OpenID provider's keys cannot be fetched; the server log has why",
                    )),
                }
            }
        }
    }

    async fn fetch_keys(&self, k: &mut Keys) -> Result<JwkSet, String> {
        let issuer = &self.cfg.settings.issuer;
        let jwks_uri = match &k.jwks_uri {
            Some(u) => u.clone(),
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                let doc = self.fetch.get_json(&url).await?;
                if doc.get("issuer").and_then(Value::as_str) != Some(issuer.as_str()) {
                    return Err(format!("{url} names another issuer"));
                }
                let uri = doc
                    .get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{url} has no jwks_uri"))?
                    .to_string();
                k.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let doc = self.fetch.get_json(&jwks_uri).await?;
        Ok(oidc::parse_jwks(&doc))
    }

    /// Verify a token of this provider and read who it is, with the key set's version
    /// it was verified under.
    pub async fn verify(&self, token: &str, now: u64) -> Result<(OidcIdentity, u64), Error> {
        let refused = |e: OidcError| {
            tracing::debug!(error = %e, "an OpenID token was refused");
            match e {
                OidcError::Refused(tessera_auth::AuthError::Expired) => Error::new(
                    ErrorCode::Unauthorized,
                    "the access token has expired; get a new one from your OpenID provider",
                ),
                OidcError::Claim(c) => Error::new(
                    ErrorCode::Unauthorized,
                    format!("the token's {c} claim is missing or not a valid Tessera name"),
                ),
                _ => Error::new(ErrorCode::Unauthorized, "the bearer token is not valid"),
            }
        };
        let keys = self.keys(false).await?;
        let version = self.keys_version();
        match oidc::verify(token, &keys, &self.cfg.settings, now) {
            Err(OidcError::UnknownKey) => {
                let keys = self.keys(true).await?;
                let version = self.keys_version();
                oidc::verify(token, &keys, &self.cfg.settings, now)
                    .map(|id| (id, version))
                    .map_err(refused)
            }
            other => other.map(|id| (id, version)).map_err(refused),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A provider whose key set the test changes, counting fetches.
    struct FakeProvider {
        jwks_fetches: AtomicUsize,
        kid: std::sync::Mutex<String>,
    }

    impl Fetch for FakeProvider {
        fn get_json(&self, url: &str) -> FetchFuture {
            let doc = if url.ends_with("openid-configuration") {
                serde_json::json!({"issuer": "https://id.example", "jwks_uri": "https://id.example/jwks"})
            } else {
                self.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                let kid = self.kid.lock().unwrap().clone();
                serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": kid}]})
            };
            Box::pin(async move { Ok(doc) })
        }
    }

    fn kids(set: &JwkSet) -> Vec<String> {
        set.keys
            .iter()
            .filter_map(|k| k.common.key_id.clone())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_cached_and_unknown_keys_refetch_at_most_once_per_interval() {
        let provider = Arc::new(FakeProvider {
            jwks_fetches: AtomicUsize::new(0),
            kid: std::sync::Mutex::new("k1".into()),
        });
        let oidc = Oidc::with_fetch(
            OidcConfig {
                settings: OidcSettings::keycloak("https://id.example", "tessera"),
                jwks_ttl: Duration::from_secs(300),
                refetch_interval: Duration::from_secs(30),
                extra_roots_pem: None,
            },
            provider.clone(),
        );
        let fetches = || provider.jwks_fetches.load(Ordering::SeqCst);
        assert_eq!(kids(&oidc.keys(false).await.unwrap()), ["k1"]);
        assert_eq!(kids(&oidc.keys(false).await.unwrap()), ["k1"]);
        assert_eq!(fetches(), 1, "cached");
        // The provider rotates; an unknown key right after a fetch waits for the interval.
        *provider.kid.lock().unwrap() = "k2".into();
        assert_eq!(kids(&oidc.keys(true).await.unwrap()), ["k1"]);
        assert_eq!(fetches(), 1, "rate-limited");
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(kids(&oidc.keys(true).await.unwrap()), ["k2"]);
        assert_eq!(fetches(), 2);
        for _ in 0..100 {
            oidc.keys(true).await.unwrap();
        }
        assert_eq!(fetches(), 2, "a flood of unknown keys fetches nothing more");
        // A stale set is fetched again when next used.
        tokio::time::advance(Duration::from_secs(301)).await;
        oidc.keys(false).await.unwrap();
        assert_eq!(fetches(), 3);
    }

    #[test]
    fn issuers_are_https_or_loopback() {
        for ok in [
            "https://id.example/realms/x",
            "http://127.0.0.1:8080",
            "http://localhost:9/realms/t",
            "http://[::1]:80",
        ] {
            assert_eq!(check_issuer(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://id.example",
            "http://127.0.0.1.evil.example",
            "ftp://x",
            "",
        ] {
            assert!(check_issuer(bad).is_err(), "{bad}");
        }
    }
}
