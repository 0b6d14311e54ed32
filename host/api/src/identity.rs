//! Users, groups and tokens over HTTP.
//!
//! - `POST /v1/auth/token` (no token needed): `{"username", "password", "lifetime_secs"?,
//!   "read_only"?}` → `{"access_token", "token_type": "Bearer", "expires_in"}`
//! - `GET /v1/auth/whoami`: the caller, its groups and roles
//! - `GET /v1/auth/tokens`, `POST /v1/auth/tokens` (`{"name", "expires_in_days"?,
//!   "read_only"?}`, the token shown once), `DELETE /v1/auth/tokens/{name}`,
//!   `POST /v1/auth/tokens/revoke-all` (personal access tokens and access tokens at once)
//! - `GET/POST /v1/admin/users`, `GET/DELETE /v1/admin/users/{name}`,
//!   `PUT /v1/admin/users/{name}/password`, `POST /v1/admin/users/{name}/revoke-tokens`:
//!   instance admins
//! - `GET/POST /v1/groups` (creating: instance admins), `GET/DELETE /v1/groups/{name}`,
//!   `PUT/DELETE /v1/groups/{name}/members/{user}` (`{"role"}`): the group's admins

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use tessera_auth::{password, pat};
use tessera_core::ErrorCode;
use tessera_core::identity::{Role, check_name};
use tessera_store::StoreError;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::body::RequestBody;
use crate::{AppState, Error};

fn store_error(context: &str, e: StoreError) -> Error {
    match e {
        StoreError::Conflict(m) => Error::new(ErrorCode::Conflict, m),
        StoreError::NotFound(m) => Error::new(ErrorCode::NotFound, m),
        e => Error::internal(context, e),
    }
}

fn bad_name(what: &str, e: String) -> Error {
    Error::new(ErrorCode::InvalidParameter, format!("the {what}: {e}"))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: String,
    password: String,
    lifetime_secs: Option<u64>,
    #[serde(default)]
    read_only: bool,
}

#[derive(Serialize, ToSchema)]
pub struct AccessTokenResponse {
    access_token: String,
    /// `Bearer`.
    token_type: &'static str,
    expires_in: u64,
}

/// Password checks are deliberately slow (argon2); at most this many run at once so a
/// flood of logins cannot take every core.
const CONCURRENT_PASSWORD_CHECKS: usize = 2;

fn password_checks() -> &'static tokio::sync::Semaphore {
    static CHECKS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    CHECKS.get_or_init(|| tokio::sync::Semaphore::new(CONCURRENT_PASSWORD_CHECKS))
}

/// A hash no password matches, checked for unknown users so that they take as long as
/// known ones.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| password::hash(&pat::generate().0).unwrap_or_default())
}

/// A short-lived access token for a user name and password.
#[utoipa::path(
    post,
    path = "/v1/auth/token",
    tag = "identity",
    request_body = LoginBody,
    security(()),
    responses((status = 200, body = AccessTokenResponse))
)]
pub async fn login(
    State(state): State<AppState>,
    RequestBody(body): RequestBody,
) -> Result<Json<AccessTokenResponse>, Error> {
    let body: LoginBody = crate::body::json(&body, "request")?;
    let max = state.auth().config().access_token_lifetime;
    let lifetime = body
        .lifetime_secs
        .map_or(max, |s| Duration::from_secs(s).min(max));
    if lifetime.is_zero() {
        return Err(Error::new(
            ErrorCode::InvalidParameter,
            "lifetime_secs must be positive",
        ));
    }
    let user = state
        .runner()
        .store()
        .user(&body.username)
        .await
        .map_err(|e| Error::internal("reading the user failed", e))?;
    let stored = user
        .as_ref()
        .and_then(|u| u.password_hash.clone())
        .unwrap_or_else(|| decoy_hash().to_string());
    let permit = password_checks()
        .acquire()
        .await
        .map_err(|e| Error::internal("checking the password failed", e))?;
    let given = body.password;
    let ok = tokio::task::spawn_blocking(move || password::verify(&given, &stored))
        .await
        .map_err(|e| Error::internal("checking the password failed", e))?;
    drop(permit);
    let refused = !ok || user.as_ref().is_none_or(|u| u.password_hash.is_none());
    state
        .audit()
        .record(
            &body.username,
            "POST",
            "/v1/auth/token",
            &body.username,
            if refused { 401 } else { 200 },
        )
        .await;
    let Some(user) = user.filter(|_| !refused) else {
        tracing::info!(user = %body.username, "a login was refused");
        return Err(Error::new(
            ErrorCode::Unauthorized,
            "the username or the password is wrong",
        ));
    };
    let token = state
        .auth()
        .issue(&user.name, user.token_generation, body.read_only, lifetime)?;
    Ok(Json(AccessTokenResponse {
        access_token: token,
        token_type: "Bearer",
        expires_in: lifetime.as_secs(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct GroupRole {
    group: String,
    role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct WhoAmI {
    username: String,
    instance_admin: bool,
    read_only: bool,
    default_group: String,
    groups: Vec<GroupRole>,
}

/// Who the token is.
#[utoipa::path(
    get,
    path = "/v1/auth/whoami",
    tag = "identity",
    responses((status = 200, body = WhoAmI))
)]
pub async fn whoami(Extension(caller): Extension<Caller>) -> Json<WhoAmI> {
    Json(WhoAmI {
        username: caller.username.clone(),
        instance_admin: caller.instance_admin,
        read_only: caller.read_only,
        default_group: caller.default_group.clone(),
        groups: caller
            .roles
            .iter()
            .map(|(g, r)| GroupRole {
                group: g.clone(),
                role: caller.role_in(g).unwrap_or(*r),
            })
            .collect(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct TokenView {
    name: String,
    read_only: bool,
    expires_at: Option<String>,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    tokens: Vec<TokenView>,
}

/// A new token: the only time its secret is shown.
#[derive(Serialize, ToSchema)]
pub struct NewToken {
    name: String,
    token: String,
    read_only: bool,
    expires_at: Option<String>,
    note: &'static str,
}

fn token_view(t: tessera_store::TokenRow) -> TokenView {
    use tessera_core::time_fmt::format_rfc3339;
    TokenView {
        name: t.name,
        read_only: t.read_only,
        expires_at: t.expires_at.map(format_rfc3339),
        created_at: format_rfc3339(t.created_at),
    }
}

async fn list_tokens_of(state: &AppState, user: &str) -> Result<Response, Error> {
    let tokens = state
        .runner()
        .store()
        .tokens_of(user)
        .await
        .map_err(|e| Error::internal("listing tokens failed", e))?;
    let tokens: Vec<TokenView> = tokens.into_iter().map(token_view).collect();
    Ok(Json(TokenList { tokens }).into_response())
}

/// The caller's personal access tokens (never their secrets).
#[utoipa::path(
    get,
    path = "/v1/auth/tokens",
    tag = "identity",
    responses((status = 200, body = TokenList))
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, Error> {
    list_tokens_of(&state, &caller.username).await
}

/// Personal access tokens last this long unless asked otherwise.
const DEFAULT_TOKEN_DAYS: u32 = 90;
/// The longest lifetime a token may ask for (0 asks for no expiry at all).
pub(crate) const MAX_TOKEN_DAYS: u32 = 36_500;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenBody {
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$")]
    name: String,
    /// Default 90; 0: never expires.
    #[schema(maximum = 36_500)]
    expires_in_days: Option<u32>,
    #[serde(default)]
    read_only: bool,
}

/// A personal access token.
#[utoipa::path(
    post,
    path = "/v1/auth/tokens",
    tag = "identity",
    request_body = NewTokenBody,
    responses((status = 201, body = NewToken))
)]
pub async fn create_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RequestBody(body): RequestBody,
) -> Result<Response, Error> {
    let body: NewTokenBody = crate::body::json(&body, "request")?;
    check_name(&body.name).map_err(|e| bad_name("token name", e))?;
    // A read-only token cannot mint one that writes.
    if caller.read_only && !body.read_only {
        return Err(Error::new(
            ErrorCode::Forbidden,
            "a read-only token can only make read-only tokens",
        ));
    }
    let days = body.expires_in_days.unwrap_or(DEFAULT_TOKEN_DAYS);
    if days > MAX_TOKEN_DAYS {
        return Err(Error::new(
            ErrorCode::InvalidParameter,
            format!("expires_in_days must be at most {MAX_TOKEN_DAYS} (0: never expires)"),
        ));
    }
    let expires_at =
        (days > 0).then(|| time::OffsetDateTime::now_utc() + time::Duration::days(i64::from(days)));
    let (token, digest) = pat::generate();
    state
        .runner()
        .store()
        .add_token(
            &caller.username,
            &body.name,
            &digest,
            body.read_only,
            expires_at,
        )
        .await
        .map_err(|e| store_error("storing the token failed", e))?;
    tracing::info!(user = %caller.username, token = %body.name, read_only = body.read_only, "personal access token created");
    let object = format!("{}/{}", caller.username, body.name);
    let body = NewToken {
        name: body.name,
        token,
        read_only: body.read_only,
        expires_at: expires_at.map(tessera_core::time_fmt::format_rfc3339),
        note: "this is the only time the token is shown",
    };
    Ok(crate::audit::naming(
        (StatusCode::CREATED, Json(body)),
        &object,
    ))
}

/// Revoke one of the caller's tokens.
#[utoipa::path(
    delete,
    path = "/v1/auth/tokens/{name}",
    tag = "identity",
    params(("name" = String, Path)),
    responses((status = 204, description = "Done"))
)]
pub async fn delete_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    let found = state
        .runner()
        .store()
        .revoke_token(&caller.username, &name)
        .await
        .map_err(|e| Error::internal("revoking the token failed", e))?;
    state.auth().forget_tokens();
    if !found {
        return Err(Error(tessera_core::ApiError::not_found("token", &name)));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn revoke_all_of(state: &AppState, user: &str) -> Result<Response, Error> {
    let generation = state
        .runner()
        .store()
        .revoke_all_tokens(user)
        .await
        .map_err(|e| Error::internal("revoking the tokens failed", e))?;
    state.auth().forget_tokens();
    state.auth().forget_user(user);
    if generation.is_none() {
        return Err(Error(tessera_core::ApiError::not_found("user", user)));
    }
    tracing::info!(user, "every token of the user revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Revoke every token of the caller (and the access tokens issued to it).
#[utoipa::path(
    post,
    path = "/v1/auth/tokens/revoke-all",
    tag = "identity",
    responses((status = 204, description = "Done"))
)]
pub async fn revoke_all(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, Error> {
    revoke_all_of(&state, &caller.username).await
}

// ---- users (instance admins) ----

#[derive(Serialize, ToSchema)]
pub struct UserView {
    name: String,
    instance_admin: bool,
    password_login: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<Vec<GroupRole>>,
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    users: Vec<UserView>,
}

#[utoipa::path(
    get,
    path = "/v1/admin/users",
    tag = "identity",
    responses((status = 200, body = UserList))
)]
pub async fn list_users(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, Error> {
    caller.check_instance_admin()?;
    let users = state
        .runner()
        .store()
        .users()
        .await
        .map_err(|e| Error::internal("listing users failed", e))?;
    let users: Vec<UserView> = users
        .into_iter()
        .map(|u| UserView {
            name: u.name,
            instance_admin: u.instance_admin,
            password_login: u.password_hash.is_some(),
            groups: None,
        })
        .collect();
    Ok(Json(UserList { users }).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$")]
    name: String,
    password: Option<String>,
    #[serde(default)]
    instance_admin: bool,
}

/// Shortest password accepted.
const MIN_PASSWORD_CHARS: usize = 8;

async fn hash_password(password: String) -> Result<String, Error> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::new(
            ErrorCode::InvalidParameter,
            format!("the password must have at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|e| Error::internal("hashing the password failed", e))?
        .map_err(|e| Error::internal("hashing the password failed", e))
}

/// Add a user (instance admins).
#[utoipa::path(
    post,
    path = "/v1/admin/users",
    tag = "identity",
    request_body = NewUserBody,
    responses((status = 201, body = UserView))
)]
pub async fn create_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RequestBody(body): RequestBody,
) -> Result<Response, Error> {
    caller.check_instance_admin()?;
    let body: NewUserBody = crate::body::json(&body, "request")?;
    check_name(&body.name).map_err(|e| bad_name("user name", e))?;
    let hash = match body.password {
        Some(p) => Some(hash_password(p).await?),
        None => None,
    };
    state
        .runner()
        .store()
        .create_user(&body.name, hash.as_deref(), body.instance_admin)
        .await
        .map_err(|e| store_error("creating the user failed", e))?;
    tracing::info!(user = %body.name, instance_admin = body.instance_admin, by = %caller.username, "user created");
    let view = UserView {
        name: body.name.clone(),
        instance_admin: body.instance_admin,
        password_login: hash.is_some(),
        groups: Some(vec![GroupRole {
            group: body.name,
            role: Role::Admin,
        }]),
    };
    let object = view.name.clone();
    Ok(crate::audit::naming(
        (StatusCode::CREATED, Json(view)),
        &object,
    ))
}

/// A user with their groups (instance admins).
#[utoipa::path(
    get,
    path = "/v1/admin/users/{name}",
    tag = "identity",
    params(("name" = String, Path)),
    responses((status = 200, body = UserView))
)]
pub async fn show_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    caller.check_instance_admin()?;
    let store = state.runner().store();
    let user = store
        .user(&name)
        .await
        .map_err(|e| Error::internal("reading the user failed", e))?
        .ok_or_else(|| Error(tessera_core::ApiError::not_found("user", &name)))?;
    let groups = store
        .memberships(&name)
        .await
        .map_err(|e| Error::internal("reading the user's groups failed", e))?;
    Ok(Json(UserView {
        name: user.name,
        instance_admin: user.instance_admin,
        password_login: user.password_hash.is_some(),
        groups: Some(
            groups
                .into_iter()
                .map(|(group, role)| GroupRole { group, role })
                .collect(),
        ),
    })
    .into_response())
}

/// Remove a user (instance admins).
#[utoipa::path(
    delete,
    path = "/v1/admin/users/{name}",
    tag = "identity",
    params(("name" = String, Path)),
    responses((status = 204, description = "Done"))
)]
pub async fn delete_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    caller.check_instance_admin()?;
    if name == caller.username {
        return Err(Error::new(
            ErrorCode::Conflict,
            "you cannot delete yourself; ask another instance admin",
        ));
    }
    let found = state
        .runner()
        .store()
        .delete_user(&name)
        .await
        .map_err(|e| Error::internal("deleting the user failed", e))?;
    state.auth().forget_users();
    state.auth().forget_tokens();
    if !found {
        return Err(Error(tessera_core::ApiError::not_found("user", &name)));
    }
    tracing::info!(user = %name, by = %caller.username, "user deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    /// `null`: no password login.
    password: Option<String>,
}

/// Set or clear a user's password (instance admins).
#[utoipa::path(
    put,
    path = "/v1/admin/users/{name}/password",
    tag = "identity",
    params(("name" = String, Path)),
    request_body = PasswordBody,
    responses((status = 204, description = "Done"))
)]
pub async fn set_password(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RequestBody(body): RequestBody,
) -> Result<Response, Error> {
    caller.check_instance_admin()?;
    let body: PasswordBody = crate::body::json(&body, "request")?;
    let hash = match body.password {
        Some(p) => Some(hash_password(p).await?),
        None => None,
    };
    let found = state
        .runner()
        .store()
        .set_password(&name, hash.as_deref())
        .await
        .map_err(|e| Error::internal("setting the password failed", e))?;
    state.auth().forget_user(&name);
    if !found {
        return Err(Error(tessera_core::ApiError::not_found("user", &name)));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Revoke every token of a user (instance admins).
#[utoipa::path(
    post,
    path = "/v1/admin/users/{name}/revoke-tokens",
    tag = "identity",
    params(("name" = String, Path)),
    responses((status = 204, description = "Done"))
)]
pub async fn revoke_user_tokens(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    caller.check_instance_admin()?;
    revoke_all_of(&state, &name).await
}

// ---- groups ----

#[derive(Serialize, ToSchema)]
pub struct GroupView {
    name: String,
    /// The user whose personal group this is.
    #[serde(skip_serializing_if = "Option::is_none")]
    personal_of: Option<String>,
    /// The caller's role here.
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<Vec<Member>>,
    /// The group's limits (shown on a single group).
    #[serde(skip_serializing_if = "Option::is_none")]
    quota: Option<tessera_core::identity::Quota>,
}

#[derive(Serialize, ToSchema)]
pub struct Member {
    user: String,
    role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct GroupList {
    groups: Vec<GroupView>,
}

/// The groups the caller sees.
#[utoipa::path(
    get,
    path = "/v1/groups",
    tag = "identity",
    responses((status = 200, body = GroupList))
)]
pub async fn list_groups(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, Error> {
    let groups = state
        .runner()
        .store()
        .groups()
        .await
        .map_err(|e| Error::internal("listing groups failed", e))?;
    let groups: Vec<GroupView> = groups
        .into_iter()
        .filter(|g| caller.sees(&g.name))
        .map(|g| GroupView {
            role: caller.role_in(&g.name),
            name: g.name,
            personal_of: g.personal_of,
            members: None,
            quota: None,
        })
        .collect();
    Ok(Json(GroupList { groups }).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroupBody {
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$")]
    name: String,
}

/// Add a group (instance admins).
#[utoipa::path(
    post,
    path = "/v1/groups",
    tag = "identity",
    request_body = NewGroupBody,
    responses((status = 201, body = GroupView))
)]
pub async fn create_group(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RequestBody(body): RequestBody,
) -> Result<Response, Error> {
    caller.check_instance_admin()?;
    let body: NewGroupBody = crate::body::json(&body, "request")?;
    check_name(&body.name).map_err(|e| bad_name("group name", e))?;
    state
        .runner()
        .store()
        .create_group(&body.name)
        .await
        .map_err(|e| store_error("creating the group failed", e))?;
    tracing::info!(group = %body.name, by = %caller.username, "group created");
    let object = body.name.clone();
    Ok(crate::audit::naming(
        (
            StatusCode::CREATED,
            Json(GroupView {
                name: body.name,
                personal_of: None,
                role: None,
                members: Some(Vec::new()),
                quota: None,
            }),
        ),
        &object,
    ))
}

/// A group with its members and quota.
#[utoipa::path(
    get,
    path = "/v1/groups/{name}",
    tag = "identity",
    params(("name" = String, Path)),
    responses((status = 200, body = GroupView))
)]
pub async fn show_group(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    caller.check_sees(&name, "group", &name)?;
    let store = state.runner().store();
    let group = store
        .group(&name)
        .await
        .map_err(|e| Error::internal("reading the group failed", e))?
        .ok_or_else(|| Error(tessera_core::ApiError::not_found("group", &name)))?;
    let members = store
        .members(&name)
        .await
        .map_err(|e| Error::internal("reading the group's members failed", e))?;
    let quota = state
        .runner()
        .quotas()
        .await
        .map_err(|e| Error::internal("reading the group's quota failed", e))?
        .get(&name)
        .copied()
        .unwrap_or_default();
    Ok(Json(GroupView {
        quota: Some(quota),
        role: caller.role_in(&name),
        name: group.name,
        personal_of: group.personal_of,
        members: Some(
            members
                .into_iter()
                .map(|(user, role)| Member { user, role })
                .collect(),
        ),
    })
    .into_response())
}

/// Remove a group (instance admins).
#[utoipa::path(
    delete,
    path = "/v1/groups/{name}",
    tag = "identity",
    params(("name" = String, Path)),
    responses((status = 204, description = "Done"))
)]
pub async fn delete_group(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    caller.check_sees(&name, "group", &name)?;
    caller.check_instance_admin()?;
    let found = state
        .runner()
        .store()
        .delete_group(&name)
        .await
        .map_err(|e| store_error("deleting the group failed", e))?;
    state.auth().forget_users();
    if !found {
        return Err(Error(tessera_core::ApiError::not_found("group", &name)));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    role: Role,
}

/// Add a member or change their role (the group's admins).
#[utoipa::path(
    put,
    path = "/v1/groups/{name}/members/{user}",
    tag = "identity",
    params(("name" = String, Path), ("user" = String, Path)),
    request_body = MemberBody,
    responses((status = 200, body = Member))
)]
pub async fn set_member(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((group, user)): Path<(String, String)>,
    RequestBody(body): RequestBody,
) -> Result<Response, Error> {
    caller.check_role(Role::Admin, &group, "group", &group)?;
    let body: MemberBody = crate::body::json(&body, "request")?;
    state
        .runner()
        .store()
        .set_member(&group, &user, body.role)
        .await
        .map_err(|e| store_error("changing the membership failed", e))?;
    state.auth().forget_user(&user);
    tracing::info!(%group, %user, role = body.role.as_str(), by = %caller.username, "membership set");
    Ok(Json(Member {
        user,
        role: body.role,
    })
    .into_response())
}

/// Remove a member (the group's admins).
#[utoipa::path(
    delete,
    path = "/v1/groups/{name}/members/{user}",
    tag = "identity",
    params(("name" = String, Path), ("user" = String, Path)),
    responses((status = 204, description = "Done"))
)]
pub async fn remove_member(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((group, user)): Path<(String, String)>,
) -> Result<Response, Error> {
    caller.check_role(Role::Admin, &group, "group", &group)?;
    let found = state
        .runner()
        .store()
        .remove_member(&group, &user)
        .await
        .map_err(|e| Error::internal("changing the membership failed", e))?;
    state.auth().forget_user(&user);
    if !found {
        return Err(Error(tessera_core::ApiError::not_found("member", &user)));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /v1/groups/{name}/quota` (instance admins): the group's limits, replacing the
/// ones it had; `{}` removes them.
#[utoipa::path(
    put,
    path = "/v1/groups/{name}/quota",
    tag = "identity",
    params(("name" = String, Path)),
    request_body = tessera_core::identity::Quota,
    responses((status = 200, body = tessera_core::identity::Quota))
)]
pub async fn set_quota(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RequestBody(body): RequestBody,
) -> Result<Response, Error> {
    caller.check_sees(&name, "group", &name)?;
    caller.check_instance_admin()?;
    let quota: tessera_core::identity::Quota = crate::body::json(&body, "request")?;
    if quota.max_ram_gb.is_some_and(|r| !r.is_finite() || r < 0.0) {
        return Err(Error::new(
            ErrorCode::InvalidParameter,
            "max_ram_gb must be a non-negative number",
        ));
    }
    let found = state
        .runner()
        .store()
        .set_quota(&name, &quota)
        .await
        .map_err(|e| Error::internal("setting the quota failed", e))?;
    if !found {
        return Err(Error(tessera_core::ApiError::not_found("group", &name)));
    }
    state.runner().forget_quotas();
    tracing::info!(group = %name, ?quota, by = %caller.username, "quota set");
    Ok(Json(quota).into_response())
}

/// `PUT /v1/groups/{name}/retention` body: days (0: forever), or null for the server's
/// default.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionBody {
    days: Option<u32>,
}

/// A group's retention of finished tasks.
#[derive(Serialize, ToSchema)]
pub struct Retention {
    group: String,
    /// Days (0: forever); null: the server's default.
    retention_days: Option<u32>,
}

#[utoipa::path(
    put,
    path = "/v1/groups/{name}/retention",
    tag = "identity",
    params(("name" = String, Path)),
    request_body = RetentionBody,
    responses((status = 200, body = Retention))
)]
/// `PUT /v1/groups/{name}/retention` (instance admins): how long the group's finished
/// tasks are kept.
pub async fn set_retention(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RequestBody(body): RequestBody,
) -> Result<Response, Error> {
    caller.check_sees(&name, "group", &name)?;
    caller.check_instance_admin()?;
    let body: RetentionBody = crate::body::json(&body, "request")?;
    let found = state
        .runner()
        .store()
        .set_retention(&name, body.days)
        .await
        .map_err(|e| Error::internal("setting the retention failed", e))?;
    if !found {
        return Err(Error(tessera_core::ApiError::not_found("group", &name)));
    }
    tracing::info!(group = %name, days = ?body.days, by = %caller.username, "retention set");
    Ok(Json(Retention {
        group: name,
        retention_days: body.days,
    })
    .into_response())
}

/// `GET /v1/auth/providers` (no token needed): how to get a token here, for clients
/// such as `tessera login`.
#[utoipa::path(
    get,
    path = "/v1/auth/providers",
    tag = "identity",
    security(()),
    responses((status = 200, body = Providers))
)]
pub async fn providers(State(state): State<AppState>) -> Json<Providers> {
    let oidc = state.auth().oidc().map(|o| OidcProvider {
        issuer: o.issuer().to_string(),
        audience: o.audience().to_string(),
    });
    Json(Providers {
        password: true,
        oidc,
    })
}

/// How to get a token here.
#[derive(Serialize, ToSchema)]
pub struct Providers {
    /// `POST /v1/auth/token` with a user name and password.
    password: bool,
    /// The OpenID provider whose access tokens the server accepts.
    oidc: Option<OidcProvider>,
}

#[derive(Serialize, ToSchema)]
pub struct OidcProvider {
    issuer: String,
    audience: String,
}
