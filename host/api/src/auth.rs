//! Who is calling: every request but health, metrics and the password exchange carries a
//! bearer token, resolved here to a [`Principal`] that the handlers ask what the caller
//! may do (`tessera_core::identity` holds the rules).
//!
//! Two kinds of token:
//! * host-issued access tokens (JWTs signed with the host's Ed25519 key, from
//!   `POST /v1/auth/token`), recognised by their two dots;
//! * personal access tokens (anything else), looked up by their SHA-256. The bootstrap
//!   token in `<data_dir>/api-token` and a configured `--auth-token` are personal access
//!   tokens of the instance admin, registered at start.
//!
//! Users, memberships and personal access tokens are cached for [`CACHE_TTL`]: changes
//! made through this server apply at once (its caches are cleared), changes made through
//! another server of the same store within that time. The per-user token generation
//! (raised by "revoke all") is checked on every request against the cached user.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tessera_auth::{AccessToken, SigningKey, pat};
use tessera_core::identity::{Principal, Role};
use tessera_core::{ApiError, ErrorCode};
use tessera_store::Store;

use crate::{AppState, Error};

/// The instance admin a fresh store is given, and whom `--no-auth` acts as.
pub const BOOTSTRAP_ADMIN: &str = "admin";

/// How long users, memberships and personal access tokens are cached.
pub const CACHE_TTL: Duration = Duration::from_secs(1);

/// Verified access tokens kept (by digest) so the signature is checked once per token,
/// not once per request; the cache is emptied when it reaches this size.
const MAX_CACHED_JWTS: usize = 10_000;

/// How identity is configured.
#[derive(Clone)]
pub struct AuthConfig {
    /// `false`: every request acts as [`BOOTSTRAP_ADMIN`] (`--no-auth`, loopback only).
    pub enabled: bool,
    /// The host's key for access tokens.
    pub signing_key: Arc<SigningKey>,
    /// Longest lifetime of an access token from `POST /v1/auth/token` (also the default).
    pub access_token_lifetime: Duration,
    /// The TES tag that names the group a task is submitted to.
    pub group_tag: String,
    /// An external OpenID provider whose tokens are accepted too.
    pub oidc: Option<crate::oidc::OidcConfig>,
}

/// The caller of a request, put into the request's extensions by [`authenticate`].
#[derive(Clone, Debug)]
pub struct Caller(pub Arc<Principal>);

impl std::ops::Deref for Caller {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl Caller {
    /// The server acting for something of `group` it runs (a cron task, a workflow
    /// run), named `name`: a writer of that group and nothing else.
    pub fn writer_of(group: &str, name: &str) -> Caller {
        Caller(Arc::new(Principal {
            username: name.to_string(),
            instance_admin: false,
            roles: [(group.to_string(), Role::Write)].into(),
            default_group: group.to_string(),
            read_only: false,
        }))
    }

    /// Objects of `group` exist for the caller; otherwise `what` `id` is not found.
    pub fn check_sees(&self, group: &str, what: &str, id: &str) -> Result<(), Error> {
        if self.sees(group) {
            Ok(())
        } else {
            Err(Error(ApiError::not_found(what, id)))
        }
    }

    /// The caller may do what `needed` allows in `group`: 404 when the group's objects
    /// do not exist for it, 403 when it sees them with a lesser role.
    pub fn check_role(&self, needed: Role, group: &str, what: &str, id: &str) -> Result<(), Error> {
        self.check_sees(group, what, id)?;
        if self.may(needed, group) {
            return Ok(());
        }
        Err(forbidden_role(self, needed, group))
    }

    /// Instance administrators only.
    pub fn check_instance_admin(&self) -> Result<(), Error> {
        if self.is_instance_admin() {
            Ok(())
        } else if self.instance_admin {
            Err(Error::new(
                ErrorCode::Forbidden,
                "this needs an instance administrator's token that is not read-only",
            ))
        } else {
            Err(Error::new(
                ErrorCode::Forbidden,
                "only instance administrators may do this",
            ))
        }
    }

    /// A token that may change things (not read-only).
    pub fn check_not_read_only(&self) -> Result<(), Error> {
        if self.read_only {
            Err(Error::new(
                ErrorCode::Forbidden,
                "this token is read-only; use one that is not",
            ))
        } else {
            Ok(())
        }
    }
}

fn forbidden_role(p: &Principal, needed: Role, group: &str) -> Error {
    let has = p.role_in(group).map_or("none", Role::as_str);
    let why = if p.read_only {
        " (this token is read-only)"
    } else {
        ""
    };
    Error::new(
        ErrorCode::Forbidden,
        format!(
            "this needs the {} role in group {group:?}; yours is {has}{why}",
            needed.as_str()
        ),
    )
}

/// Tokens whose signature was checked, by the SHA-256 of the token, so a signature is
/// checked once per token rather than once per request; emptied when it reaches
/// [`MAX_CACHED_JWTS`].
struct VerifiedTokens<T>(Mutex<HashMap<[u8; 32], T>>);

impl<T> Default for VerifiedTokens<T> {
    fn default() -> Self {
        VerifiedTokens(Mutex::new(HashMap::new()))
    }
}

/// What a verified token is cached under.
fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl<T: Clone> VerifiedTokens<T> {
    fn get(&self, key: &[u8; 32]) -> Option<T> {
        lock(&self.0).get(key).cloned()
    }

    fn put(&self, key: [u8; 32], value: T) {
        let mut map = lock(&self.0);
        if map.len() >= MAX_CACHED_JWTS {
            map.clear();
        }
        map.insert(key, value);
    }
}

/// A user as cached: its principal (full rights; a token may narrow them) and its token
/// generation.
struct CachedUser {
    principal: Arc<Principal>,
    generation: i64,
    fetched: Instant,
}

/// Resolves tokens to principals, with the caches described in the module docs.
pub struct Authenticator {
    store: Store,
    cfg: AuthConfig,
    users: Mutex<HashMap<String, CachedUser>>,
    pats: Mutex<HashMap<String, (tessera_store::TokenRow, Instant)>>,
    jwts: VerifiedTokens<AccessToken>,
    oidc: Option<crate::oidc::Oidc>,
    /// Verified provider tokens (by digest): who they are, their groups checked.
    oidc_tokens: VerifiedTokens<(tessera_auth::oidc::OidcIdentity, u64)>,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    tessera_core::time_fmt::unix_ms(time::OffsetDateTime::now_utc()) / 1000
}

fn unauthorized(message: &str) -> Error {
    Error::new(ErrorCode::Unauthorized, message)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a cache lock leaves a cache, not an invariant: go on.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Authenticator {
    pub fn new(store: Store, cfg: AuthConfig) -> Result<Self, String> {
        let oidc = cfg.oidc.clone().map(crate::oidc::Oidc::new).transpose()?;
        Ok(Authenticator {
            store,
            cfg,
            users: Mutex::new(HashMap::new()),
            pats: Mutex::new(HashMap::new()),
            jwts: VerifiedTokens::default(),
            oidc,
            oidc_tokens: VerifiedTokens::default(),
        })
    }

    /// The external OpenID provider, when one is configured.
    pub fn oidc(&self) -> Option<&crate::oidc::Oidc> {
        self.oidc.as_ref()
    }

    pub fn config(&self) -> &AuthConfig {
        &self.cfg
    }

    /// Forget what is cached about `user` (after a change through this server).
    pub fn forget_user(&self, user: &str) {
        lock(&self.users).remove(user);
    }

    /// Forget every cached user (after a group changed).
    pub fn forget_users(&self) {
        lock(&self.users).clear();
    }

    /// Forget every cached personal access token (after one was revoked).
    pub fn forget_tokens(&self) {
        lock(&self.pats).clear();
    }

    /// The principal behind a bearer token.
    pub async fn resolve(&self, token: &str) -> Result<Arc<Principal>, Error> {
        if token.bytes().filter(|b| *b == b'.').count() == 2 {
            if let Some(oidc) = &self.oidc
                && tessera_auth::oidc::peek_issuer(token).as_deref() == Some(oidc.issuer())
            {
                return self.resolve_oidc(oidc, token).await;
            }
            return self.resolve_jwt(token).await;
        }
        let digest = pat::digest(token);
        let cached = lock(&self.pats)
            .get(&digest)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(row, _)| row.clone());
        let row = match cached {
            Some(row) => row,
            None => {
                let row = self
                    .store
                    .token_by_digest(&digest)
                    .await
                    .map_err(|e| Error::internal("looking up the token failed", e))?
                    .ok_or_else(|| unauthorized("the bearer token is not valid"))?;
                lock(&self.pats).insert(digest, (row.clone(), Instant::now()));
                row
            }
        };
        if row
            .expires_at
            .is_some_and(|t| t <= time::OffsetDateTime::now_utc())
        {
            return Err(unauthorized(
                "the personal access token has expired; make a new one",
            ));
        }
        let (principal, _) = self
            .user(&row.user)
            .await?
            .ok_or_else(|| unauthorized("the bearer token is not valid"))?;
        Ok(narrow(principal, row.read_only))
    }

    async fn resolve_jwt(&self, token: &str) -> Result<Arc<Principal>, Error> {
        let key = token_key(token);
        let now = unix_now();
        let claims = match self.jwts.get(&key) {
            // Verified before; only the clock can have changed.
            Some(c) if !tessera_auth::expired(c.exp, now) => c,
            Some(_) => return Err(unauthorized("the access token has expired; log in again")),
            None => {
                let claims = AccessToken::verify(token, &self.cfg.signing_key, now).map_err(
                    |e| match e {
                        tessera_auth::AuthError::Expired => {
                            unauthorized("the access token has expired; log in again")
                        }
                        _ => unauthorized("the bearer token is not valid"),
                    },
                )?;
                self.jwts.put(key, claims.clone());
                claims
            }
        };
        let (principal, generation) = self
            .user(&claims.sub)
            .await?
            .ok_or_else(|| unauthorized("the bearer token is not valid"))?;
        if i64::try_from(claims.generation).unwrap_or(i64::MAX) < generation {
            return Err(unauthorized("the access token was revoked; log in again"));
        }
        Ok(narrow(principal, claims.ro))
    }

    async fn resolve_oidc(
        &self,
        oidc: &crate::oidc::Oidc,
        token: &str,
    ) -> Result<Arc<Principal>, Error> {
        let key = token_key(token);
        let now = unix_now();
        // A token verified under the current key set: only the clock can have changed.
        let cached = self
            .oidc_tokens
            .get(&key)
            .filter(|(_, version)| *version == oidc.keys_version())
            .map(|(id, _)| id);
        let id = match cached {
            Some(id) if !tessera_auth::expired(id.exp, now) => id,
            Some(_) => {
                return Err(unauthorized(
                    "the access token has expired; get a new one from your OpenID provider",
                ));
            }
            None => {
                let (mut id, version) = oidc.verify(token, now).await?;
                self.provision(&mut id).await?;
                self.oidc_tokens.put(key, (id.clone(), version));
                id
            }
        };
        let (base, _) = self
            .user(&id.username)
            .await?
            .ok_or_else(|| unauthorized("the bearer token is not valid"))?;
        // What the provider says adds to what is stored (roles given in Tessera stay).
        let mut p = (*base).clone();
        p.instance_admin |= id.instance_admin;
        for (group, role) in &id.roles {
            let r = p.roles.entry(group.clone()).or_insert(*role);
            *r = (*r).max(*role);
        }
        Ok(Arc::new(p))
    }

    /// A provider's user seen for the first time becomes a Tessera user (no password);
    /// the shared groups its claims name are made when missing. A claim naming another
    /// user's personal group is dropped: a provider grants shared groups only.
    async fn provision(&self, id: &mut tessera_auth::oidc::OidcIdentity) -> Result<(), Error> {
        let internal = |e| Error::internal("provisioning the OpenID user failed", e);
        if self
            .store
            .user(&id.username)
            .await
            .map_err(internal)?
            .is_none()
        {
            match self.store.create_user(&id.username, None, false).await {
                Ok(()) => {
                    tracing::info!(user = %id.username, issuer = ?self.oidc.as_ref().map(|o| o.issuer()), "provisioned a user from the OpenID provider");
                }
                // Made meanwhile by another request: fine. Taken by a group: refused.
                Err(tessera_store::StoreError::Conflict(_)) => {
                    if self
                        .store
                        .user(&id.username)
                        .await
                        .map_err(internal)?
                        .is_none()
                    {
                        return Err(unauthorized(
                            "the token's username is the name of a group here; ask an admin",
                        ));
                    }
                }
                Err(e) => return Err(internal(e)),
            }
        }
        let mut keep = std::collections::BTreeMap::new();
        for (group, role) in std::mem::take(&mut id.roles) {
            match self.store.group(&group).await.map_err(internal)? {
                Some(g) if g.personal_of.is_some() => {
                    tracing::warn!(user = %id.username, %group, "an OpenID claim names a personal group; ignored");
                    continue;
                }
                Some(_) => {}
                None => match self.store.create_group(&group).await {
                    Ok(()) => {
                        tracing::info!(%group, "provisioned a group from the OpenID provider")
                    }
                    Err(tessera_store::StoreError::Conflict(_)) => {
                        // A user of that name, or made meanwhile: only a shared group counts.
                        if self
                            .store
                            .group(&group)
                            .await
                            .map_err(internal)?
                            .is_none_or(|g| g.personal_of.is_some())
                        {
                            continue;
                        }
                    }
                    Err(e) => return Err(internal(e)),
                },
            }
            keep.insert(group, role);
        }
        id.roles = keep;
        Ok(())
    }

    /// A user's principal and token generation, cached; `None` for an unknown user.
    pub async fn user(&self, name: &str) -> Result<Option<(Arc<Principal>, i64)>, Error> {
        if let Some(u) = lock(&self.users)
            .get(name)
            .filter(|u| u.fetched.elapsed() < CACHE_TTL)
        {
            return Ok(Some((u.principal.clone(), u.generation)));
        }
        let Some(row) = self
            .store
            .user(name)
            .await
            .map_err(|e| Error::internal("reading the user failed", e))?
        else {
            return Ok(None);
        };
        let roles = self
            .store
            .memberships(name)
            .await
            .map_err(|e| Error::internal("reading the user's groups failed", e))?;
        let principal = Arc::new(Principal {
            username: row.name.clone(),
            instance_admin: row.instance_admin,
            roles: roles.into_iter().collect(),
            default_group: row.name.clone(),
            read_only: false,
        });
        lock(&self.users).insert(
            name.to_string(),
            CachedUser {
                principal: principal.clone(),
                generation: row.token_generation,
                fetched: Instant::now(),
            },
        );
        Ok(Some((principal, row.token_generation)))
    }

    /// A signed access token for `user` valid for `lifetime`.
    pub fn issue(
        &self,
        user: &str,
        generation: i64,
        read_only: bool,
        lifetime: Duration,
    ) -> Result<String, Error> {
        AccessToken::new(
            user,
            u64::try_from(generation).unwrap_or(0),
            read_only,
            unix_now(),
            lifetime,
        )
        .sign(&self.cfg.signing_key)
        .map_err(|e| Error::internal("signing the access token failed", e))
    }
}

/// The principal as a token narrows it (a read-only token caps every role at Read).
fn narrow(principal: Arc<Principal>, read_only: bool) -> Arc<Principal> {
    if read_only {
        let mut p = (*principal).clone();
        p.read_only = true;
        Arc::new(p)
    } else {
        principal
    }
}

/// The middleware in front of every authenticated route: resolves the bearer token and
/// puts the [`Caller`] into the request.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let auth = state.auth();
    let principal = if auth.cfg.enabled {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = given else {
            return unauthorized(
                "authentication required: send 'Authorization: Bearer <token>' (the \
                 instance admin's token is in <data_dir>/api-token; `tessera login` gets one)",
            )
            .into_response();
        };
        auth.resolve(token).await
    } else {
        auth.user(BOOTSTRAP_ADMIN).await.and_then(|u| {
            u.map(|(p, _)| p).ok_or_else(|| {
                Error::new(
                    ErrorCode::Unavailable,
                    "authentication is off and the instance admin is gone",
                )
            })
        })
    };
    match principal {
        Ok(p) => {
            req.extensions_mut().insert(Caller(p));
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// What [`bootstrap`] registers: a personal access token of the instance admin that
/// already exists as text (the `api-token` file, or `--auth-token`).
pub struct BootstrapToken<'a> {
    pub name: &'a str,
    pub token: &'a str,
}

/// On a store without users, create the instance admin (no password: it logs in with
/// its token) and give it the tasks from before groups. Then make sure `token` is one of
/// its personal access tokens, replacing an older token of the same name.
pub async fn bootstrap(
    store: &Store,
    token: Option<BootstrapToken<'_>>,
) -> Result<(), tessera_store::StoreError> {
    if store.count_users().await? == 0 {
        match store.create_user(BOOTSTRAP_ADMIN, None, true).await {
            // Another server of the same store made it first.
            Ok(()) | Err(tessera_store::StoreError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        let moved = store.adopt_ungrouped_tasks(BOOTSTRAP_ADMIN).await?;
        tracing::info!(
            user = BOOTSTRAP_ADMIN,
            tasks_moved = moved,
            "created the instance admin"
        );
    }
    let Some(t) = token else { return Ok(()) };
    let digest = pat::digest(t.token);
    if store.token_by_digest(&digest).await?.is_some() {
        return Ok(());
    }
    if store.user(BOOTSTRAP_ADMIN).await?.is_none() {
        tracing::warn!(
            user = BOOTSTRAP_ADMIN,
            "the instance admin was deleted; the bootstrap token is not registered"
        );
        return Ok(());
    }
    store.revoke_token(BOOTSTRAP_ADMIN, t.name).await?;
    store
        .add_token(BOOTSTRAP_ADMIN, t.name, &digest, false, None)
        .await?;
    tracing::info!(
        user = BOOTSTRAP_ADMIN,
        token = t.name,
        "registered the bootstrap token"
    );
    Ok(())
}
