//! Task identifiers: 26 characters of Crockford base32 over a millisecond timestamp and
//! 80 random bits, so ids sort roughly by creation and never collide in practice.

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

pub fn new_task_id() -> String {
    let ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    encode(ms as u128, rand::random::<u128>())
}

/// The id of a task that must be the same wherever it is made (a cron tick's child): the
/// time part from `at`, the rest from `seed` (FNV-1a, stable across versions and
/// machines).
pub fn task_id_from(at: time::OffsetDateTime, seed: &[u8]) -> String {
    let ms = at.unix_timestamp_nanos() / 1_000_000;
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in seed {
        h ^= u128::from(*b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    encode(ms as u128, h)
}

/// 48 bits of milliseconds then 80 bits of `random`, in 26 characters of Crockford's
/// base 32 (so ids sort by time).
fn encode(ms: u128, random: u128) -> String {
    let random = random & ((1u128 << 80) - 1);
    let value: u128 = ((ms & ((1u128 << 48) - 1)) << 80) | random;
    let mut out = [0u8; 26];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 125 - 5 * i as i32;
        let idx = if shift >= 0 {
            (value >> shift) & 0x1f
        } else {
            (value << (-shift)) & 0x1f
        };
        *slot = ALPHABET[idx as usize];
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `s` looks like an id this server could have issued. Used to answer 404 early
/// and to keep arbitrary strings out of container names and labels.
pub fn is_valid_task_id(s: &str) -> bool {
    s.len() == 26 && s.bytes().all(|b| ALPHABET.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_unique_and_roughly_ordered() {
        let a = new_task_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_task_id();
        assert!(is_valid_task_id(&a), "{a}");
        assert!(is_valid_task_id(&b), "{b}");
        assert_ne!(a, b);
        assert!(a < b, "{a} should sort before {b}");
        assert!(!is_valid_task_id("../etc/passwd"));
        assert!(!is_valid_task_id(""));
    }
}
