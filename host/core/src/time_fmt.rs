//! RFC 3339 timestamps, the only time format on the wire.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, in RFC 3339 with UTC offset and sub-second precision.
pub fn now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

pub fn format_rfc3339(t: OffsetDateTime) -> String {
    // Formatting a valid OffsetDateTime as RFC 3339 only fails for years outside 0..=9999.
    t.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// RFC 3339 in UTC with all nine fractional digits: text that sorts as the times do (for
/// columns compared as strings).
pub fn format_sortable(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000000Z".to_string())
}

/// Milliseconds since the Unix epoch (0 before it), as plugins and routing see times.
pub fn unix_ms(t: OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// Milliseconds since the Unix epoch as the store keeps times (signed; saturating).
pub fn store_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(if t.year() < 1970 {
        i64::MIN
    } else {
        i64::MAX
    })
}

/// Now, as [`store_ms`].
pub fn now_ms() -> i64 {
    store_ms(OffsetDateTime::now_utc())
}

/// The time `ms` milliseconds after the Unix epoch; `None` beyond what a time can hold.
pub fn from_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// Now, or `start` if the clock reads earlier than it (an end time is never before its
/// start, even when the wall clock steps back).
pub fn end_not_before(start: Option<&str>) -> String {
    let now = OffsetDateTime::now_utc();
    format_rfc3339(start.and_then(parse_rfc3339).map_or(now, |s| now.max(s)))
}

/// Milliseconds between two RFC 3339 timestamps, if both parse and `end >= start`.
pub fn millis_between(start: &str, end: &str) -> Option<i64> {
    let (s, e) = (parse_rfc3339(start)?, parse_rfc3339(end)?);
    let ms = (e - s).whole_milliseconds();
    (ms >= 0).then_some(ms as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_milliseconds_round_trip_and_saturate() {
        let t = parse_rfc3339("2026-12-07T08:50:06.704162Z").unwrap();
        assert_eq!(store_ms(t), 1_796_633_406_704);
        assert_eq!(
            from_ms(1_796_633_406_704).map(format_rfc3339).as_deref(),
            Some("2026-12-07T08:50:06.704Z")
        );
        assert_eq!(store_ms(OffsetDateTime::UNIX_EPOCH), 0);
        let before = parse_rfc3339("1969-12-31T23:59:59Z").unwrap();
        assert_eq!(store_ms(before), -1000);
        assert_eq!(from_ms(i64::MAX), None);
        assert!(now_ms() > 1_796_633_406_704);
    }
}
