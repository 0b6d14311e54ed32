//! Tokens from an external OpenID provider (Keycloak, or any that publishes a JWKS),
//! checked without I/O: the caller fetches the provider's keys and hands them in.
//!
//! A token is accepted when it is signed with RS256, ES256 or EdDSA (`none` and HMAC are
//! refused before anything else is looked at) by a key of the provider's set, names the
//! configured issuer and audience, and is within its `exp` and `nbf` (with [`LEEWAY`]).
//! Who it is comes from configurable claims, Keycloak's by default.

use std::collections::BTreeMap;

use base64::Engine;
use jsonwebtoken::jwk::Jwk;
pub use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tessera_core::identity::{Role, check_name};

use crate::AuthError;

/// The algorithms accepted from a provider.
pub const ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// How a provider's tokens are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// The `iss` its tokens carry (and where discovery starts).
    pub issuer: String,
    /// The `aud` a token must name.
    pub audience: String,
    /// The claim holding the username (a dotted path).
    pub username_claim: String,
    /// The claim holding a list of roles (a dotted path): `GROUP:ROLE` gives that role
    /// in that group, [`OidcSettings::admin_role`] makes an instance admin, others are
    /// ignored.
    pub roles_claim: String,
    /// The claim holding a list of group names (a dotted path; a leading `/`, as
    /// Keycloak writes groups, is dropped); each gives [`OidcSettings::group_role`].
    pub groups_claim: String,
    pub group_role: Role,
    pub admin_role: String,
}

impl OidcSettings {
    /// Keycloak's claims for `issuer` and `audience`.
    pub fn keycloak(issuer: &str, audience: &str) -> OidcSettings {
        OidcSettings {
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            username_claim: "preferred_username".into(),
            roles_claim: "realm_access.roles".into(),
            groups_claim: "groups".into(),
            group_role: Role::Read,
            admin_role: "tessera-admin".into(),
        }
    }
}

/// Who a provider's token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcIdentity {
    pub username: String,
    pub instance_admin: bool,
    /// Roles in groups the claims name (the highest where several do).
    pub roles: BTreeMap<String, Role>,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
}

/// Why a provider's token was refused, or that its key is not (yet) known.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OidcError {
    /// The token names a key the set does not have: fetch the set again (rate-limited)
    /// and retry once.
    #[error("the token is signed with a key the provider does not publish")]
    UnknownKey,
    #[error(transparent)]
    Refused(#[from] AuthError),
    #[error("the token's {0} claim is missing or not usable")]
    Claim(String),
}

/// The `iss` of a JWT, read without verifying anything (to pick who verifies it).
pub fn peek_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_string)
}

/// The keys of a JWKS document that this verifier can use (others, such as encryption
/// keys or unknown curves, are skipped rather than failing the whole set).
pub fn parse_jwks(doc: &Value) -> JwkSet {
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
                .collect()
        })
        .unwrap_or_default();
    JwkSet { keys }
}

fn claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(claims, |v, part| v.get(part))
}

/// Verify `token` against the provider's `keys` at `now` (seconds since the epoch) and
/// read who it is.
pub fn verify(
    token: &str,
    keys: &JwkSet,
    settings: &OidcSettings,
    now: u64,
) -> Result<OidcIdentity, OidcError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(AuthError::WrongAlgorithm.into());
    }
    let jwk = match &header.kid {
        Some(kid) => keys.find(kid).ok_or(OidcError::UnknownKey)?,
        // Without a kid, only a set of one key says which key it is.
        None => match keys.keys.as_slice() {
            [only] => only,
            _ => return Err(OidcError::UnknownKey),
        },
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|_| AuthError::BadSignature)?;
    let mut validation = Validation::new(header.alg);
    // Times are checked below against the caller's clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.set_issuer(&[settings.issuer.as_str()]);
    validation.set_audience(&[settings.audience.as_str()]);
    let data =
        jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidIssuer
            | jsonwebtoken::errors::ErrorKind::InvalidAudience => AuthError::WrongParty,
            jsonwebtoken::errors::ErrorKind::InvalidSignature
            | jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => AuthError::BadSignature,
            _ => AuthError::Malformed,
        })?;
    let claims = data.claims;
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or_else(|| OidcError::Claim("exp".into()))?;
    if crate::expired(exp, now) {
        return Err(AuthError::Expired.into());
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_u64)
        && crate::not_yet(nbf, now)
    {
        return Err(AuthError::NotYetValid.into());
    }
    if let Some(iat) = claims.get("iat").and_then(Value::as_u64)
        && crate::not_yet(iat, now)
    {
        return Err(AuthError::NotYetValid.into());
    }
    identity(&claims, settings, exp)
}

fn identity(claims: &Value, settings: &OidcSettings, exp: u64) -> Result<OidcIdentity, OidcError> {
    let username = claim(claims, &settings.username_claim)
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .filter(|u| check_name(u).is_ok())
        .ok_or_else(|| OidcError::Claim(settings.username_claim.clone()))?;
    let strings = |path: &str| -> Vec<String> {
        claim(claims, path)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut roles: BTreeMap<String, Role> = BTreeMap::new();
    let mut grant = |group: &str, role: Role| {
        if check_name(group).is_ok() {
            let r = roles.entry(group.to_string()).or_insert(role);
            *r = (*r).max(role);
        }
    };
    for g in strings(&settings.groups_claim) {
        grant(g.trim_start_matches('/'), settings.group_role);
    }
    let mut instance_admin = false;
    for r in strings(&settings.roles_claim) {
        if r == settings.admin_role {
            instance_admin = true;
        } else if let Some((group, role)) = r.split_once(':')
            && let Ok(role) = role.parse::<Role>()
        {
            grant(group, role);
        }
    }
    Ok(OidcIdentity {
        username,
        instance_admin,
        roles,
        exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> OidcSettings {
        OidcSettings::keycloak("https://id.example", "tessera")
    }

    #[test]
    fn claims_become_a_name_roles_and_groups() {
        let claims = json!({
            "preferred_username": "Ada",
            "realm_access": {"roles": ["lab:write", "ops:read", "lab:read", "tessera-admin", "offline_access", "x:owner"]},
            "groups": ["/ops", "bad name"],
        });
        let id = identity(&claims, &settings(), 9).unwrap();
        assert_eq!(id.username, "ada");
        assert!(id.instance_admin);
        assert_eq!(
            id.roles,
            BTreeMap::from([
                ("lab".to_string(), Role::Write),
                ("ops".to_string(), Role::Read)
            ])
        );
        for bad in [json!({}), json!({"preferred_username": "a b"})] {
            assert_eq!(
                identity(&bad, &settings(), 9),
                Err(OidcError::Claim("preferred_username".into()))
            );
        }
    }

    #[test]
    fn the_issuer_is_read_without_verifying() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"iss":"https://id.example","sub":"x"}"#);
        assert_eq!(
            peek_issuer(&format!("e30.{payload}.sig")).as_deref(),
            Some("https://id.example")
        );
        assert_eq!(peek_issuer("no-dots"), None);
    }

    #[test]
    fn unusable_keys_are_skipped_and_none_or_hmac_refused() {
        let set = parse_jwks(&json!({"keys": [
            {"kty": "EC", "crv": "P-999", "x": "AA", "y": "AA", "kid": "odd"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ed"},
        ]}));
        assert_eq!(set.keys.len(), 1);
        // {"alg":"none"} and {"alg":"HS256","kid":"ed"}
        for header in ["eyJhbGciOiJub25lIn0", "eyJhbGciOiJIUzI1NiIsImtpZCI6ImVkIn0"] {
            let token = format!("{header}.e30.");
            // `none` is not even an algorithm the decoder knows.
            assert!(
                matches!(
                    verify(&token, &set, &settings(), 0),
                    Err(OidcError::Refused(
                        AuthError::WrongAlgorithm | AuthError::Malformed
                    ))
                ),
                "{header}"
            );
        }
        // EdDSA with a kid the set lacks: fetch the set again.
        let token = "eyJhbGciOiJFZERTQSIsImtpZCI6Im5ldyJ9.e30.sig";
        assert_eq!(
            verify(token, &set, &settings(), 0),
            Err(OidcError::UnknownKey)
        );
    }
}
