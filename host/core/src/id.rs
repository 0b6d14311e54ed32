//! Task identifiers: 26 characters of Crockford base32 over a millisecond timestamp and
//! 80 random bits, so ids sort roughly by creation and never collide in practice.

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

pub fn new_task_id() -> String {
    let ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let random: u128 = rand::random::<u128>() & ((1u128 << 80) - 1);
    let value: u128 = ((ms as u128 & ((1u128 << 48) - 1)) << 80) | random;
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
