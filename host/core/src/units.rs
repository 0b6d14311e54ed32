//! Units of quantities, decided once.
//!
//! TES's `ram_gb` and `disk_gb` (and a target's `ram_gb` in the configuration) are in
//! gibibytes here: 1 GB = 2^30 bytes, as container runtimes count memory. Every
//! conversion between them and bytes goes through this module, so that what the router
//! admits on a target and the limit a container gets are the same number.

/// Bytes in one "GB" of TES: a gibibyte.
pub const BYTES_PER_GB: u64 = 1 << 30;

/// `gb` as bytes, rounded down; 0 for zero, negative, NaN or infinite values (which
/// validation refuses anyway), `u64::MAX` beyond it.
pub fn gb_to_bytes(gb: f64) -> u64 {
    if !(gb.is_finite() && gb > 0.0) {
        return 0;
    }
    // `as` saturates at u64::MAX.
    (gb * BYTES_PER_GB as f64) as u64
}

/// `bytes` as GB (GiB).
pub fn bytes_to_gb(bytes: u64) -> f64 {
    bytes as f64 / BYTES_PER_GB as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gigabytes_are_gibibytes() {
        assert_eq!(gb_to_bytes(1.0), 1_073_741_824);
        assert_eq!(gb_to_bytes(0.5), 536_870_912);
        assert_eq!(gb_to_bytes(0.0), 0);
        assert_eq!(gb_to_bytes(-1.0), 0);
        assert_eq!(gb_to_bytes(f64::NAN), 0);
        assert_eq!(gb_to_bytes(f64::INFINITY), 0);
        assert_eq!(gb_to_bytes(1e30), u64::MAX);
        assert_eq!(bytes_to_gb(3 << 30), 3.0);
    }

    proptest::proptest! {
        #[test]
        fn a_round_trip_loses_less_than_a_byte(gb in 0.0f64..4096.0) {
            let back = bytes_to_gb(gb_to_bytes(gb));
            proptest::prop_assert!((gb - back) * BYTES_PER_GB as f64 <= 1.0);
        }
    }
}
