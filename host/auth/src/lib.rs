//! Tessera's credentials, without I/O: the caller stores what these functions return and
//! hands back what it stored.
//!
//! * [`password`]: argon2id hashes of user passwords (PHC strings).
//! * [`SigningKey`]: the host's Ed25519 key pair (PKCS#8, made on first start, kept by
//!   the server in its data directory with mode 0600).
//! * [`AccessToken`]: JWTs the host issues and verifies, EdDSA only: a token that names
//!   any other algorithm (`none`, HMAC, RSA) is refused before its signature is looked at.
//! * [`pat`]: personal access tokens: random, shown once, stored as their SHA-256.
//! * [`oidc`]: tokens from an external OpenID provider, checked against its keys.

pub mod oidc;
pub mod password;
pub mod pat;
pub mod sealed;

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::KeyPair;
use serde::{Deserialize, Serialize};

/// Slack allowed between clocks when checking expiry and not-before.
pub const LEEWAY: Duration = Duration::from_secs(30);

/// Whether a token that expires at `exp` has expired at `now` (seconds since the epoch),
/// with [`LEEWAY`].
pub fn expired(exp: u64, now: u64) -> bool {
    exp.saturating_add(LEEWAY.as_secs()) < now
}

/// Whether a time a token names (`iat`, `nbf`) is still ahead of `now`, with [`LEEWAY`].
pub fn not_yet(at: u64, now: u64) -> bool {
    at > now.saturating_add(LEEWAY.as_secs())
}

/// Why a credential was refused. Deliberately coarse: the caller answers 401 either way.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token is not signed with EdDSA")]
    WrongAlgorithm,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued for another audience or by another issuer")]
    WrongParty,
    #[error("the signing key is unusable: {0}")]
    Key(String),
}

/// The host's Ed25519 key pair.
pub struct SigningKey {
    pkcs8: Vec<u8>,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(Ed25519, private)")
    }
}

impl SigningKey {
    /// A new random key pair.
    pub fn generate() -> Result<SigningKey, AuthError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|e| AuthError::Key(e.to_string()))?;
        SigningKey::from_pkcs8(pkcs8.as_ref())
    }

    /// The key pair from its PKCS#8 document: as [`SigningKey::pkcs8`] gave it (v2, with
    /// the public key), or v1 without it as `openssl genpkey -algorithm ed25519 -outform
    /// DER` writes it (a key made for servers that share a store).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<SigningKey, AuthError> {
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|e| AuthError::Key(e.to_string()))?;
        Ok(SigningKey {
            pkcs8: pkcs8.to_vec(),
            encoding: EncodingKey::from_ed_der(pkcs8),
            decoding: DecodingKey::from_ed_der(pair.public_key().as_ref()),
        })
    }

    /// The PKCS#8 document to keep (secret).
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }
}

/// What a host-issued access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessToken {
    /// The user's name.
    pub sub: String,
    /// Issued at and expires at, seconds since the Unix epoch.
    pub iat: u64,
    pub exp: u64,
    /// The user's token generation when it was issued: raising the stored generation
    /// revokes every token issued before, at once.
    #[serde(rename = "gen")]
    pub generation: u64,
    /// Read-only: every role counts as Read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ro: bool,
    pub iss: String,
    pub aud: String,
}

/// Who issues host tokens and for whom (checked on every token).
pub const ISSUER: &str = "tessera";
pub const AUDIENCE: &str = "tessera-api";

impl AccessToken {
    /// A token for `user` valid for `lifetime` from `now` (seconds since the epoch).
    pub fn new(user: &str, generation: u64, read_only: bool, now: u64, lifetime: Duration) -> Self {
        AccessToken {
            sub: user.to_string(),
            iat: now,
            exp: now.saturating_add(lifetime.as_secs()),
            generation,
            ro: read_only,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
        }
    }

    /// The signed token.
    pub fn sign(&self, key: &SigningKey) -> Result<String, AuthError> {
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), self, &key.encoding)
            .map_err(|e| AuthError::Key(e.to_string()))
    }

    /// Verify `token` with `key` at `now` (seconds since the epoch): EdDSA only, signed
    /// by this host for this API, not expired (with [`LEEWAY`]).
    pub fn verify(token: &str, key: &SigningKey, now: u64) -> Result<AccessToken, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::WrongAlgorithm);
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Expiry is checked below against the caller's clock, not the library's.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        let data = jsonwebtoken::decode::<AccessToken>(token, &key.decoding, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => AuthError::BadSignature,
                jsonwebtoken::errors::ErrorKind::InvalidIssuer
                | jsonwebtoken::errors::ErrorKind::InvalidAudience => AuthError::WrongParty,
                _ => AuthError::Malformed,
            },
        )?;
        let claims = data.claims;
        if expired(claims.exp, now) {
            return Err(AuthError::Expired);
        }
        if not_yet(claims.iat, now) {
            return Err(AuthError::NotYetValid);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const HOUR: Duration = Duration::from_secs(3600);

    fn b64(bytes: &[u8]) -> String {
        use base64_free::encode;
        encode(bytes)
    }

    /// Base64url without padding, for forging tokens in tests (no dependency needed).
    mod base64_free {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        pub fn encode(bytes: &[u8]) -> String {
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
                    << (8 * (3 - chunk.len()));
                for i in 0..=chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        }
    }

    #[test]
    fn a_pkcs8_v1_key_as_openssl_writes_it_signs_and_verifies() {
        // RFC 8410 section 10.3's example private key (PKCS#8 v1, no public key).
        let v1: [u8; 48] = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20, 0xd4, 0xee, 0x72, 0xdb, 0xf9, 0x13, 0x58, 0x4a, 0xd5, 0xb6, 0xd8, 0xf1,
            0xf7, 0x69, 0xf8, 0xad, 0x3a, 0xfe, 0x7c, 0x28, 0xcb, 0xf1, 0xd4, 0xfb, 0xe0, 0x97,
            0xa8, 0x8f, 0x44, 0x75, 0x58, 0x42,
        ];
        let key = SigningKey::from_pkcs8(&v1).unwrap();
        let token = AccessToken::new("ada", 1, false, NOW, HOUR);
        let signed = token.sign(&key).unwrap();
        assert_eq!(AccessToken::verify(&signed, &key, NOW).unwrap(), token);
        assert!(SigningKey::from_pkcs8(&v1[..40]).is_err());
    }

    #[test]
    fn a_token_round_trips_with_its_key_and_no_other() {
        let key = SigningKey::generate().unwrap();
        let token = AccessToken::new("ada", 3, true, NOW, HOUR);
        let signed = token.sign(&key).unwrap();
        assert_eq!(AccessToken::verify(&signed, &key, NOW + 10).unwrap(), token);
        // The key survives being stored and read back.
        let again = SigningKey::from_pkcs8(key.pkcs8()).unwrap();
        assert_eq!(AccessToken::verify(&signed, &again, NOW).unwrap(), token);
        let other = SigningKey::generate().unwrap();
        assert_eq!(
            AccessToken::verify(&signed, &other, NOW),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn expiry_is_checked_with_a_small_leeway() {
        let key = SigningKey::generate().unwrap();
        let signed = AccessToken::new("ada", 0, false, NOW, HOUR)
            .sign(&key)
            .unwrap();
        let exp = NOW + HOUR.as_secs();
        assert!(AccessToken::verify(&signed, &key, exp + LEEWAY.as_secs()).is_ok());
        assert_eq!(
            AccessToken::verify(&signed, &key, exp + LEEWAY.as_secs() + 1),
            Err(AuthError::Expired)
        );
        assert_eq!(
            AccessToken::verify(&signed, &key, NOW - LEEWAY.as_secs() - 1),
            Err(AuthError::NotYetValid)
        );
    }

    #[test]
    fn altered_unsigned_and_hmac_tokens_are_refused() {
        let key = SigningKey::generate().unwrap();
        let signed = AccessToken::new("ada", 0, false, NOW, HOUR)
            .sign(&key)
            .unwrap();
        let parts: Vec<&str> = signed.split('.').collect();
        // Another user in the payload, the signature kept.
        let forged_claims =
            serde_json::to_vec(&AccessToken::new("root", 0, false, NOW, HOUR)).unwrap();
        let altered = format!("{}.{}.{}", parts[0], b64(&forged_claims), parts[2]);
        assert_eq!(
            AccessToken::verify(&altered, &key, NOW),
            Err(AuthError::BadSignature)
        );
        // `alg: none` with no signature, and HMAC keyed with anything.
        for alg in ["none", "HS256", "RS256"] {
            let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
            let token = format!("{header}.{}.{}", b64(&forged_claims), parts[2]);
            assert!(
                matches!(
                    AccessToken::verify(&token, &key, NOW),
                    Err(AuthError::WrongAlgorithm | AuthError::Malformed)
                ),
                "{alg}"
            );
        }
        assert_eq!(
            AccessToken::verify("not a token", &key, NOW),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn a_token_for_another_audience_is_refused() {
        let key = SigningKey::generate().unwrap();
        let mut token = AccessToken::new("ada", 0, false, NOW, HOUR);
        token.aud = "another-service".into();
        let signed = token.sign(&key).unwrap();
        assert_eq!(
            AccessToken::verify(&signed, &key, NOW),
            Err(AuthError::WrongParty)
        );
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_not_a_panic() {
        assert!(matches!(
            SigningKey::from_pkcs8(b"garbage"),
            Err(AuthError::Key(_))
        ));
    }
}
