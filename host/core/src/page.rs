//! Opaque keyset page tokens for task lists.
//!
//! A token names the position after the last task of a page (its store sequence number),
//! so pages stay stable while new tasks are created: new tasks get higher sequence
//! numbers and a newest-first list only ever continues below the token.

const PREFIX: &str = "p1.";

pub fn encode(seq: i64) -> String {
    // Mix the sequence with a constant so that tokens are not mistaken for counts; the
    // tag makes tampered or foreign tokens fail to decode instead of paging silently.
    let mixed = (seq as u64) ^ 0x5eed_7e55_e7a0_0001;
    let tag = checksum(mixed);
    format!("{PREFIX}{mixed:016x}{tag:04x}")
}

pub fn decode(token: &str) -> Option<i64> {
    let body = token.strip_prefix(PREFIX)?;
    if body.len() != 20 || !body.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mixed = u64::from_str_radix(&body[..16], 16).ok()?;
    let tag = u16::from_str_radix(&body[16..], 16).ok()?;
    if tag != checksum(mixed) {
        return None;
    }
    let seq = (mixed ^ 0x5eed_7e55_e7a0_0001) as i64;
    (seq > 0).then_some(seq)
}

fn checksum(v: u64) -> u16 {
    // FNV-1a over the bytes, folded to 16 bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in v.to_le_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h ^ (h >> 16) ^ (h >> 32) ^ (h >> 48)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        for seq in [1, 2, 255, 100_000, i64::MAX] {
            assert_eq!(decode(&encode(seq)), Some(seq));
        }
        assert_eq!(decode(""), None);
        assert_eq!(decode("p1.zz"), None);
        assert_eq!(decode("12"), None);
        let mut t = encode(42);
        t.replace_range(5..6, if &t[5..6] == "0" { "1" } else { "0" });
        assert_eq!(decode(&t), None, "a tampered token must not decode");
    }
}
