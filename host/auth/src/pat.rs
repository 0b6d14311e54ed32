//! Personal access tokens: 32 random bytes behind a recognisable prefix, shown to their
//! owner once; the store keeps only their SHA-256, so a leaked database holds no usable
//! token.

use sha2::{Digest, Sha256};

/// Every personal access token starts with this (so secret scanners can find leaked ones).
pub const PREFIX: &str = "tsr_pat_";

/// A new token: the text to show once, and the digest to store.
pub fn generate() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let token = format!("{PREFIX}{}", hex(&bytes));
    let digest = digest(&token);
    (token, digest)
}

/// The stored form of a presented token (look it up by this).
pub fn digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Whether a bearer token is a personal access token (and not a JWT).
pub fn looks_like(token: &str) -> bool {
    token.starts_with(PREFIX)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_found_by_its_digest_and_the_digest_does_not_reveal_it() {
        let (token, stored) = generate();
        assert!(looks_like(&token) && token.len() == PREFIX.len() + 64);
        assert_eq!(digest(&token), stored);
        assert!(!stored.contains(&token[PREFIX.len()..]));
        let (other, other_stored) = generate();
        assert_ne!(token, other);
        assert_ne!(stored, other_stored);
        assert!(!looks_like("eyJhbGciOiJFZERTQSJ9.e30.sig"));
    }
}
