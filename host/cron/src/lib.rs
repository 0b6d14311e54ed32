//! Cron tasks, as plain functions over time passed in (so tests never wait for a clock):
//!
//! - [`Schedule`]: a 5-field cron expression (minute, hour, day of month, month, day of
//!   week; `*`, lists, ranges, steps, month and day names), evaluated in an IANA time
//!   zone (UTC by default) with [`Schedule::next_after`];
//! - [`CronSpec`]: a cron task document (schedule, zone, concurrency policy, suspend,
//!   starting deadline, history limits, the task to make);
//! - [`due`] and [`decide`]: which tick is due at `now`, and what it does given the
//!   children still running.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use tessera_core::agent::TaskRequest;
use tessera_core::error::FieldError;
use time::OffsetDateTime;

/// The tag naming a cron child's parent.
pub const CRON_TAG: &str = "tessera.cron";
/// How far ahead [`Schedule::next_after`] looks (a schedule such as Feb 30 never fires).
const SEARCH_DAYS: i64 = 366 * 8;

/// Why a schedule or zone is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(pub String);

/// A parsed 5-field cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: BTreeSet<u8>,
    hours: BTreeSet<u8>,
    days: BTreeSet<u8>,
    months: BTreeSet<u8>,
    weekdays: BTreeSet<u8>,
    /// Whether day of month / day of week were `*` (Vixie cron: when both are
    /// restricted, a day matching either fires).
    days_any: bool,
    weekdays_any: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(s: &str, min: u8, max: u8, names: &[&str], base: u8) -> Result<u8, CronError> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        return Ok(i as u8 + base);
    }
    let v: u8 = s
        .parse()
        .map_err(|_| CronError(format!("{s:?} is not a number or name")))?;
    // Day of week 7 is Sunday too.
    let v = if max == 6 && v == 7 { 0 } else { v };
    if v < min || v > max {
        return Err(CronError(format!("{v} is outside {min}-{max}")));
    }
    Ok(v)
}

fn field(
    s: &str,
    min: u8,
    max: u8,
    names: &[&str],
    base: u8,
) -> Result<(BTreeSet<u8>, bool), CronError> {
    let mut out = BTreeSet::new();
    let any = s == "*";
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => {
                let st: u8 =
                    st.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        CronError(format!("step {st:?} is not a positive number"))
                    })?;
                (r, st)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, if max == 6 { 6 } else { max })
        } else if let Some((a, b)) = range.split_once('-') {
            (
                value(a, min, max, names, base)?,
                value(b, min, max, names, base)?,
            )
        } else {
            let v = value(range, min, max, names, base)?;
            // `5/15`: from 5 to the end, every 15.
            (v, if part.contains('/') { max } else { v })
        };
        if lo > hi {
            return Err(CronError(format!("range {range:?} runs backwards")));
        }
        out.extend((lo..=hi).step_by(step as usize));
    }
    Ok((out, any))
}

impl Schedule {
    pub fn parse(expr: &str) -> Result<Schedule, CronError> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let [m, h, dom, mon, dow] = fields.as_slice() else {
            return Err(CronError(format!(
                "{expr:?} is not a 5-field cron expression (minute hour day-of-month month day-of-week)"
            )));
        };
        let at = |name: &str, r: Result<(BTreeSet<u8>, bool), CronError>| {
            r.map_err(|e| CronError(format!("{name}: {}", e.0)))
        };
        let (minutes, _) = at("minute", field(m, 0, 59, &[], 0))?;
        let (hours, _) = at("hour", field(h, 0, 23, &[], 0))?;
        let (days, days_any) = at("day of month", field(dom, 1, 31, &[], 0))?;
        let (months, _) = at("month", field(mon, 1, 12, &MONTHS, 1))?;
        let (weekdays, weekdays_any) = at("day of week", field(dow, 0, 6, &WEEKDAYS, 0))?;
        Ok(Schedule {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_any,
            weekdays_any,
        })
    }

    fn day_matches(&self, d: jiff::civil::Date) -> bool {
        if !self.months.contains(&(d.month() as u8)) {
            return false;
        }
        let dom = self.days.contains(&(d.day() as u8));
        let dow = self
            .weekdays
            .contains(&(d.weekday().to_sunday_zero_offset() as u8));
        match (self.days_any, self.weekdays_any) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// The first time after `after` (strictly) the schedule fires in `zone`; `None`
    /// when it never does (e.g. February 30).
    pub fn next_after(&self, after: OffsetDateTime, zone: &Zone) -> Option<OffsetDateTime> {
        let ts = jiff::Timestamp::from_second(after.unix_timestamp()).ok()?;
        let start = ts.to_zoned(zone.0.clone()).datetime();
        let mut day = start.date();
        for _ in 0..SEARCH_DAYS {
            if self.day_matches(day) {
                for &h in &self.hours {
                    for &m in &self.minutes {
                        let civil = day.at(h as i8, m as i8, 0, 0);
                        // A time a DST change skips is taken as the moment after the gap;
                        // a repeated one as its first occurrence.
                        let Ok(zoned) = civil.to_zoned(zone.0.clone()) else {
                            continue;
                        };
                        let secs = zoned.timestamp().as_second();
                        if secs > after.unix_timestamp() {
                            return OffsetDateTime::from_unix_timestamp(secs).ok();
                        }
                    }
                }
            }
            day = day.tomorrow().ok()?;
        }
        None
    }
}

/// An IANA time zone.
#[derive(Debug, Clone)]
pub struct Zone(jiff::tz::TimeZone);

impl Zone {
    pub fn utc() -> Zone {
        Zone(jiff::tz::TimeZone::UTC)
    }

    /// A zone by IANA name (e.g. `Europe/Berlin`), from the bundled database.
    pub fn named(name: &str) -> Result<Zone, CronError> {
        jiff::tz::db()
            .get(name)
            .map(Zone)
            .map_err(|_| CronError(format!("{name:?} is not an IANA time zone")))
    }
}

/// What a tick does while an earlier child still runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ConcurrencyPolicy {
    /// Start another child beside it.
    Allow,
    /// Skip the tick.
    #[default]
    Forbid,
    /// Cancel it and start the new child.
    Replace,
}

fn default_successful() -> u32 {
    3
}

fn default_failed() -> u32 {
    1
}

/// A cron task as submitted and stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(examples(tessera_core::examples::cron_task))
)]
#[serde(deny_unknown_fields)]
pub struct CronSpec {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$"))]
    pub name: String,
    pub schedule: String,
    /// IANA zone the schedule is read in; UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "timeZone")]
    pub time_zone: Option<String>,
    #[serde(default, alias = "concurrencyPolicy")]
    pub concurrency_policy: ConcurrencyPolicy,
    #[serde(default)]
    pub suspend: bool,
    /// A tick started later than this after its time is skipped (a server that was
    /// down does not start stale work).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "startingDeadlineSeconds"
    )]
    pub starting_deadline_seconds: Option<u64>,
    /// Finished children kept (the older are deleted).
    #[serde(
        default = "default_successful",
        alias = "successfulHistoryLimit",
        alias = "successfulTasksHistoryLimit"
    )]
    pub successful_history_limit: u32,
    #[serde(
        default = "default_failed",
        alias = "failedHistoryLimit",
        alias = "failedTasksHistoryLimit"
    )]
    pub failed_history_limit: u32,
    /// The task each tick makes (a contextual task: agent, contexts, labels).
    #[serde(default, alias = "taskTemplate")]
    pub task: TaskRequest,
}

impl CronSpec {
    /// The schedule and zone, or every broken rule.
    pub fn parsed(&self) -> Result<(Schedule, Zone), Vec<FieldError>> {
        let mut errs = Vec::new();
        if let Err(m) = tessera_core::operation::check_name(&self.name) {
            errs.push(FieldError::at("name", m));
        }
        let schedule = Schedule::parse(&self.schedule)
            .map_err(|e| errs.push(FieldError::at("schedule", e.0)))
            .ok();
        let zone = match &self.time_zone {
            None => Some(Zone::utc()),
            Some(z) => Zone::named(z)
                .map_err(|e| errs.push(FieldError::at("time_zone", e.0)))
                .ok(),
        };
        match (schedule, zone) {
            (Some(s), Some(z)) if errs.is_empty() => Ok((s, z)),
            _ => Err(errs),
        }
    }
}

/// The tick due at `now`: the latest scheduled time at or before `now`, starting from
/// the stored `next` (ticks missed while no server ran collapse into the latest, as
/// Kubernetes CronJobs do), and the next one after `now`.
pub fn due(
    schedule: &Schedule,
    zone: &Zone,
    next: OffsetDateTime,
    now: OffsetDateTime,
) -> (Option<OffsetDateTime>, Option<OffsetDateTime>) {
    if next > now {
        return (None, Some(next));
    }
    let mut tick = next;
    // Bounded: a schedule every minute missed for a week is ~10k steps.
    for _ in 0..100_000 {
        match schedule.next_after(tick, zone) {
            Some(t) if t <= now => tick = t,
            after => return (Some(tick), after),
        }
    }
    (Some(tick), schedule.next_after(now, zone))
}

/// What a due tick does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Make a child, after canceling these (Replace).
    Fire { cancel: Vec<String> },
    /// Let the tick pass, for this reason.
    Skip(String),
}

/// What the tick at `tick` does at `now`, given the ids of the children still running.
pub fn decide(
    spec: &CronSpec,
    tick: OffsetDateTime,
    now: OffsetDateTime,
    running: &[String],
) -> Decision {
    if spec.suspend {
        return Decision::Skip("suspended".into());
    }
    if let Some(d) = spec.starting_deadline_seconds {
        let late = (now - tick).whole_seconds();
        if late > i64::try_from(d).unwrap_or(i64::MAX) {
            return Decision::Skip(format!(
                "missed: {late} s after its time, past the starting deadline of {d} s"
            ));
        }
    }
    match (spec.concurrency_policy, running.is_empty()) {
        (_, true) | (ConcurrencyPolicy::Allow, false) => Decision::Fire { cancel: Vec::new() },
        (ConcurrencyPolicy::Forbid, false) => Decision::Skip(format!(
            "{} earlier child(ren) still running (concurrency policy Forbid)",
            running.len()
        )),
        (ConcurrencyPolicy::Replace, false) => Decision::Fire {
            cancel: running.to_vec(),
        },
    }
}

/// The name of the child a tick makes: `{cron}-{unix seconds}`.
pub fn child_name(cron: &str, tick: OffsetDateTime) -> String {
    format!("{cron}-{}", tick.unix_timestamp())
}

/// The id of the child a tick makes, the same on every server: a task id whose time
/// part is the tick and whose random part comes from the cron task's identity, so two
/// servers firing the same tick make the same task and the store keeps one.
pub fn child_id(group: &str, cron: &str, tick: OffsetDateTime) -> String {
    let seed = format!("cron/{group}/{cron}/{}", tick.unix_timestamp());
    tessera_core::id::task_id_from(tick, seed.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn spec(policy: ConcurrencyPolicy) -> CronSpec {
        serde_json::from_value(serde_json::json!({
            "name": "nightly",
            "schedule": "*/15 * * * *",
            "concurrencyPolicy": policy,
        }))
        .unwrap()
    }

    #[test]
    fn schedules_fire_at_their_times_in_their_zone() {
        let s = Schedule::parse("30 2 * * mon-fri").unwrap();
        let utc = Zone::utc();
        // Saturday 2026-12-05 → Monday 2026-12-07 02:30 UTC.
        assert_eq!(
            s.next_after(datetime!(2026-12-05 10:00 UTC), &utc),
            Some(datetime!(2026-12-07 02:30 UTC))
        );
        let berlin = Zone::named("Europe/Berlin").unwrap();
        // 02:30 in Berlin (UTC+1 in December) is 01:30 UTC.
        assert_eq!(
            s.next_after(datetime!(2026-12-05 10:00 UTC), &berlin),
            Some(datetime!(2026-12-07 01:30 UTC))
        );
        let every = Schedule::parse("*/15 * * * *").unwrap();
        assert_eq!(
            every.next_after(datetime!(2026-12-07 10:15 UTC), &utc),
            Some(datetime!(2026-12-07 10:30 UTC)),
            "strictly after"
        );
        // Day of month and day of week both restricted: either matches.
        let either = Schedule::parse("0 0 1 * sun").unwrap();
        assert_eq!(
            either.next_after(datetime!(2026-12-01 00:00 UTC), &utc),
            Some(datetime!(2026-12-06 00:00 UTC))
        );
        assert_eq!(
            Schedule::parse("0 0 30 feb *")
                .unwrap()
                .next_after(datetime!(2026-01-01 00:00 UTC), &utc),
            None
        );
        // The spring-forward gap in Berlin (02:00–03:00 on 2027-03-28) is skipped.
        let gap = Schedule::parse("30 2 * * *").unwrap();
        assert_eq!(
            gap.next_after(datetime!(2027-03-28 00:00 UTC), &berlin),
            Some(datetime!(2027-03-28 01:30 UTC))
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_named() {
        for bad in [
            "* * * *",
            "61 * * * *",
            "* 24 * * *",
            "5-1 * * * *",
            "*/0 * * * *",
            "x * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
        let mut s = spec(ConcurrencyPolicy::Allow);
        s.schedule = "nope".into();
        s.time_zone = Some("Mars/Olympus".into());
        let errs = s.parsed().unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["schedule", "time_zone"]);
    }

    #[test]
    fn missed_ticks_collapse_into_the_latest() {
        let s = Schedule::parse("*/15 * * * *").unwrap();
        let z = Zone::utc();
        let (tick, next) = due(
            &s,
            &z,
            datetime!(2026-12-07 10:00 UTC),
            datetime!(2026-12-07 11:07 UTC),
        );
        assert_eq!(tick, Some(datetime!(2026-12-07 11:00 UTC)));
        assert_eq!(next, Some(datetime!(2026-12-07 11:15 UTC)));
        let (tick, next) = due(
            &s,
            &z,
            datetime!(2026-12-07 11:15 UTC),
            datetime!(2026-12-07 11:07 UTC),
        );
        assert_eq!((tick, next), (None, Some(datetime!(2026-12-07 11:15 UTC))));
    }

    #[test]
    fn each_policy_decides_as_documented() {
        let tick = datetime!(2026-12-07 11:00 UTC);
        let now = datetime!(2026-12-07 11:00:05 UTC);
        let running = vec!["old".to_string()];
        for policy in [
            ConcurrencyPolicy::Allow,
            ConcurrencyPolicy::Forbid,
            ConcurrencyPolicy::Replace,
        ] {
            assert_eq!(
                decide(&spec(policy), tick, now, &[]),
                Decision::Fire { cancel: vec![] },
                "{policy:?} with nothing running"
            );
        }
        assert_eq!(
            decide(&spec(ConcurrencyPolicy::Allow), tick, now, &running),
            Decision::Fire { cancel: vec![] }
        );
        assert!(matches!(
            decide(&spec(ConcurrencyPolicy::Forbid), tick, now, &running),
            Decision::Skip(r) if r.contains("Forbid")
        ));
        assert_eq!(
            decide(&spec(ConcurrencyPolicy::Replace), tick, now, &running),
            Decision::Fire {
                cancel: running.clone()
            }
        );
        let mut suspended = spec(ConcurrencyPolicy::Allow);
        suspended.suspend = true;
        assert_eq!(
            decide(&suspended, tick, now, &[]),
            Decision::Skip("suspended".into())
        );
        let mut strict = spec(ConcurrencyPolicy::Allow);
        strict.starting_deadline_seconds = Some(3);
        assert!(matches!(
            decide(&strict, tick, now, &[]),
            Decision::Skip(r) if r.contains("deadline")
        ));
        assert_eq!(
            spec(ConcurrencyPolicy::Allow).concurrency_policy,
            ConcurrencyPolicy::Allow
        );
        let default: CronSpec =
            serde_json::from_value(serde_json::json!({"name": "x", "schedule": "* * * * *"}))
                .unwrap();
        assert_eq!(default.concurrency_policy, ConcurrencyPolicy::Forbid);
        assert_eq!(
            (
                default.successful_history_limit,
                default.failed_history_limit
            ),
            (3, 1)
        );
    }

    #[test]
    fn a_ticks_child_has_one_id_and_name_everywhere() {
        let tick = datetime!(2026-12-07 11:00 UTC);
        assert_eq!(child_name("nightly", tick), "nightly-1796641200");
        let id = child_id("team", "nightly", tick);
        assert_eq!(id, child_id("team", "nightly", tick));
        assert_ne!(id, child_id("other", "nightly", tick));
        assert!(tessera_core::id::is_valid_task_id(&id));
    }
}
