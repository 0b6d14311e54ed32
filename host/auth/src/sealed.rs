//! Secrets at rest: values sealed with ChaCha20-Poly1305 under a key the server keeps in
//! its data directory, each bound to where it is stored (the additional data names the
//! group, the secret and the key), so a sealed value copied elsewhere does not open.

use base64::Engine as _;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// The key's length in bytes.
pub const KEY_LEN: usize = 32;
/// The prefix of a sealed value (the format's version).
const PREFIX: &str = "v1:";

/// Why a sealed value does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the secrets key must be {KEY_LEN} bytes")]
    BadKey,
    #[error("a sealed value is malformed")]
    Malformed,
    /// Altered, moved, or sealed under another key.
    #[error("a sealed value does not open with this key")]
    Rejected,
}

/// The key secrets are sealed with.
pub struct SealKey(LessSafeKey);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl SealKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<SealKey, SealError> {
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes).map_err(|_| SealError::BadKey)?;
        Ok(SealKey(LessSafeKey::new(key)))
    }

    /// A new random key's bytes.
    pub fn generate() -> [u8; KEY_LEN] {
        rand::random()
    }

    /// `plain` sealed for the place `aad` names (a fresh random nonce each time).
    pub fn seal(&self, aad: &str, plain: &[u8]) -> String {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut buf = plain.to_vec();
        // Sealing in place cannot fail for inputs below ChaCha20's 256 GiB limit.
        if self
            .0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .is_err()
        {
            buf.clear();
        }
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(out)
        )
    }

    /// The value sealed for `aad`.
    pub fn open(&self, aad: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(SealError::Malformed)?;
        let mut bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(body)
            .map_err(|_| SealError::Malformed)?;
        if bytes.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return Err(SealError::Malformed);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[..NONCE_LEN]);
        let plain = self
            .0
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut bytes[NONCE_LEN..],
            )
            .map_err(|_| SealError::Rejected)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_place() {
        let key = SealKey::from_bytes(&SealKey::generate()).unwrap();
        let sealed = key.seal("team/db/password", b"hunter2");
        assert!(!sealed.contains("hunter2"));
        assert_ne!(
            sealed,
            key.seal("team/db/password", b"hunter2"),
            "fresh nonces"
        );
        assert_eq!(key.open("team/db/password", &sealed).unwrap(), b"hunter2");
        assert_eq!(
            key.open("other/db/password", &sealed),
            Err(SealError::Rejected)
        );
        let other = SealKey::from_bytes(&SealKey::generate()).unwrap();
        assert_eq!(
            other.open("team/db/password", &sealed),
            Err(SealError::Rejected)
        );
        let mut altered = sealed.clone();
        altered.pop();
        altered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(key.open("team/db/password", &altered).is_err());
        assert_eq!(key.open("x", "plain"), Err(SealError::Malformed));
        assert!(SealKey::from_bytes(&[0; 16]).is_err());
    }
}
