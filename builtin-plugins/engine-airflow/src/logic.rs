//! Translation between Tessera's engine contract and Airflow 3's REST API v2, as plain
//! Rust (tested natively): the workflow definition, names that go into URL paths,
//! states, try numbers, times and logs.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde_json::{Map, Value};

/// A workflow on Airflow: the DAG to run (its file lives in Airflow's DAGs folder) and
/// `conf` given to every run, under the run's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// The DAG's id at Airflow.
    pub dag_id: String,
    /// `conf` of every run (the run's parameters are laid over it).
    pub conf: Map<String, Value>,
}

/// The run id Airflow gives a run from Tessera: the Tessera run's id, so a repeated
/// submit of the same run finds the run it made.
pub const RUN_LABEL: &str = "tessera.workflow-run";

/// Parses a definition: `{"dag_id": "…", "conf": {…}}` (`conf` optional).
pub fn parse_definition(text: &str) -> Result<Definition, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("the definition is not JSON: {e}"))?;
    let Value::Object(mut obj) = value else {
        return Err(
            "the definition must be an object: {\"dag_id\": \"…\", \"conf\": {…}}".to_string(),
        );
    };
    let dag_id = match obj.remove("dag_id") {
        Some(Value::String(s)) => s,
        Some(_) => return Err("`dag_id` must be a string".to_string()),
        None => return Err("`dag_id` is missing: name the Airflow DAG to run".to_string()),
    };
    check_name("dag_id", &dag_id)?;
    let conf = match obj.remove("conf") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err("`conf` must be an object".to_string()),
    };
    if let Some(k) = obj.keys().next() {
        return Err(format!(
            "unknown field `{k}` (a definition has `dag_id` and `conf`)"
        ));
    }
    Ok(Definition { dag_id, conf })
}

/// A name that goes into a URL path (DAG, run and task ids): Airflow's own character
/// set, so nothing can escape its path segment.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 250
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'~' | b'+' | b':')
        });
    if ok && name != "." && name != ".." {
        Ok(())
    } else {
        Err(format!(
            "`{what}` {name:?} is not an Airflow id (letters, digits, `_ - . ~ + :`)"
        ))
    }
}

/// The engine's id of a run: `DAG_ID/RUN_ID`.
pub fn external_id(dag_id: &str, run_id: &str) -> String {
    format!("{dag_id}/{run_id}")
}

/// The DAG and run ids of an engine's id, each checked for a URL path.
pub fn split_external(external: &str) -> Result<(&str, &str), String> {
    let (dag, run) = external
        .split_once('/')
        .ok_or_else(|| format!("{external:?} is not a run of this adapter (DAG_ID/RUN_ID)"))?;
    check_name("dag_id", dag)?;
    check_name("dag_run_id", run)?;
    Ok((dag, run))
}

/// The run's `conf`: the definition's, then each parameter (given as JSON text; text
/// that is not JSON stays a string).
pub fn conf(def: &Definition, parameters: &[(String, String)]) -> Map<String, Value> {
    let mut conf = def.conf.clone();
    for (k, v) in parameters {
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone()));
        conf.insert(k.clone(), value);
    }
    conf
}

/// The run id to ask Airflow for: the Tessera run's id when it is a valid Airflow id.
pub fn run_id_of(labels: &[(String, String)]) -> Option<String> {
    labels
        .iter()
        .find(|(k, _)| k == RUN_LABEL)
        .map(|(_, v)| format!("tessera-{v}"))
        .filter(|id| check_name("dag_run_id", id).is_ok())
}

/// States as the engine contract names them (`engine.state` of tessera:plugin@0.2.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum State {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
    Skipped,
    UpstreamFailed,
    Unknown,
}

/// A DAG run's state (`queued`, `running`, `success`, `failed`).
pub fn run_state(s: Option<&str>) -> State {
    match s {
        Some("queued") => State::Queued,
        Some("running") => State::Running,
        Some("success") => State::Succeeded,
        Some("failed") => State::Failed,
        _ => State::Unknown,
    }
}

/// A task instance's state.
pub fn task_state(s: Option<&str>) -> State {
    match s {
        // Not run yet: no state, or waiting for the scheduler, a slot or a retry.
        None
        | Some("scheduled" | "queued" | "up_for_retry" | "up_for_reschedule" | "restarting") => {
            State::Queued
        }
        Some("running" | "deferred") => State::Running,
        Some("success") => State::Succeeded,
        Some("failed") => State::Failed,
        Some("skipped") => State::Skipped,
        Some("upstream_failed") => State::UpstreamFailed,
        Some("removed") => State::Canceled,
        Some(_) => State::Unknown,
    }
}

/// Which try a task instance's state is about. Airflow counts a try when the scheduler
/// schedules it: until then (no state, waiting for a retry, or never run because of its
/// upstream) the instance still shows the number of the try before, and the state is
/// about the next one.
pub fn try_of(state: Option<&str>, try_number: u64) -> u32 {
    let next = matches!(
        state,
        None | Some(
            "up_for_retry"
                | "up_for_reschedule"
                | "restarting"
                | "upstream_failed"
                | "skipped"
                | "removed"
        )
    );
    let n = if next {
        try_number + 1
    } else {
        try_number.max(1)
    };
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Milliseconds since the Unix epoch of an RFC 3339 time in UTC as Airflow writes it
/// (`2026-12-07T08:50:06.704162Z` or with `+00:00`).
pub fn time_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: core::ops::Range<usize>| -> Option<u64> { s.get(r)?.parse().ok() };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = &s[19..];
    let (frac, zone) = match rest.strip_prefix('.') {
        Some(r) => {
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            (&r[..end], &r[end..])
        }
        None => ("", rest),
    };
    if zone != "Z" && zone != "+00:00" {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let ms: u64 = frac
        .bytes()
        .chain(core::iter::repeat(b'0'))
        .take(3)
        .fold(0, |acc, d| acc * 10 + u64::from(d - b'0'));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(((days * 86_400 + hour * 3600 + min * 60 + sec) * 1000) + ms)
}

/// A task instance's log as text: one line per record (`TIME LEVEL EVENT`, or the
/// event alone for records without them). Airflow 3 answers `content` as a list of
/// structured records (older servers: one string).
pub fn render_log(content: &Value) -> String {
    let mut out = String::new();
    match content {
        Value::String(s) => out.push_str(s),
        Value::Array(records) => {
            for r in records {
                let field = |k: &str| r.get(k).and_then(Value::as_str);
                let event = match r.get("event") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => r.to_string(),
                };
                if let Some(t) = field("timestamp") {
                    out.push_str(t);
                    out.push(' ');
                }
                if let Some(l) = field("level") {
                    out.push_str(l);
                    out.push(' ');
                }
                out.push_str(&event);
                out.push('\n');
            }
        }
        Value::Null => {}
        other => out.push_str(&other.to_string()),
    }
    out
}

/// Up to `max` bytes of `text` from byte `offset` (never splitting a character), and
/// the offset after them.
pub fn slice(text: &str, offset: u64, max: u32) -> (String, u64) {
    let len = text.len();
    let mut start = usize::try_from(offset).unwrap_or(usize::MAX).min(len);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let mut end = start.saturating_add(max as usize).min(len);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let piece = &text[start..end];
    (
        piece.to_string(),
        offset.max(start as u64) + piece.len() as u64,
    )
}

/// The task graph of `GET /api/v2/dags/{id}/tasks`: each task with the tasks it waits
/// for (Airflow lists downstream edges).
pub fn graph(tasks: &Value) -> Result<Vec<(String, Vec<String>)>, String> {
    let list = tasks
        .get("tasks")
        .and_then(Value::as_array)
        .ok_or("Airflow's task list has no `tasks`")?;
    let mut order: Vec<String> = Vec::new();
    let mut upstream: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in list {
        let id = t
            .get("task_id")
            .and_then(Value::as_str)
            .ok_or("a task without `task_id`")?;
        order.push(id.to_string());
        upstream.entry(id.to_string()).or_default();
    }
    for t in list {
        let id = t.get("task_id").and_then(Value::as_str).unwrap_or_default();
        for d in t
            .get("downstream_task_ids")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            upstream
                .entry(d.to_string())
                .or_default()
                .push(id.to_string());
        }
    }
    Ok(order
        .into_iter()
        .map(|id| {
            let mut up = upstream.remove(&id).unwrap_or_default();
            up.sort();
            (id, up)
        })
        .collect())
}

/// What Airflow said, from an error answer's `detail` (a string or an object).
pub fn detail(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => match v.get("detail") {
            Some(Value::String(s)) => s.clone(),
            Some(d) => d.to_string(),
            None => text.chars().take(300).collect(),
        },
        Err(_) => text.chars().take(300).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use serde_json::json;

    #[test]
    fn definitions_name_a_dag() {
        let d = parse_definition(r#"{"dag_id":"etl","conf":{"n":1}}"#).unwrap();
        assert_eq!(d.dag_id, "etl");
        assert_eq!(d.conf["n"], 1);
        assert!(
            parse_definition(r#"{"dag_id":"etl"}"#)
                .unwrap()
                .conf
                .is_empty()
        );
        for (bad, why) in [
            ("[]", "must be an object"),
            ("{}", "`dag_id` is missing"),
            (r#"{"dag_id":3}"#, "must be a string"),
            (r#"{"dag_id":"../x"}"#, "not an Airflow id"),
            (r#"{"dag_id":"a/b"}"#, "not an Airflow id"),
            (r#"{"dag_id":"a","extra":1}"#, "unknown field `extra`"),
            (r#"{"dag_id":"a","conf":[]}"#, "`conf` must be an object"),
            ("dag_id: x", "not JSON"),
        ] {
            let e = parse_definition(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn external_ids_round_trip_and_refuse_paths() {
        let e = external_id("etl", "tessera-abc");
        assert_eq!(split_external(&e), Ok(("etl", "tessera-abc")));
        assert!(split_external("etl").is_err());
        assert!(split_external("etl/a/../b").is_err());
        assert!(split_external("etl/..").is_err());
        assert_eq!(
            run_id_of(&[(RUN_LABEL.into(), "r1".into())]).as_deref(),
            Some("tessera-r1")
        );
        assert_eq!(run_id_of(&[(RUN_LABEL.into(), "a b".into())]), None);
        assert_eq!(run_id_of(&[]), None);
    }

    #[test]
    fn parameters_are_typed_conf_over_the_definitions() {
        let d = parse_definition(r#"{"dag_id":"etl","conf":{"n":1,"keep":true}}"#).unwrap();
        let c = conf(
            &d,
            &[
                ("n".into(), "3".into()),
                ("name".into(), "\"abc\"".into()),
                ("raw".into(), "not json".into()),
            ],
        );
        assert_eq!(
            Value::Object(c),
            json!({"n": 3, "keep": true, "name": "abc", "raw": "not json"})
        );
    }

    #[test]
    fn tries_follow_airflows_counting() {
        // Before its first try, and waiting after a clear: the next try.
        assert_eq!(try_of(None, 0), 1);
        assert_eq!(try_of(None, 1), 2);
        assert_eq!(try_of(Some("up_for_retry"), 1), 2);
        assert_eq!(try_of(Some("upstream_failed"), 0), 1);
        // Scheduled, running or ended: the try it counts.
        assert_eq!(try_of(Some("scheduled"), 2), 2);
        assert_eq!(try_of(Some("running"), 1), 1);
        assert_eq!(try_of(Some("failed"), 1), 1);
        assert_eq!(task_state(None), State::Queued);
        assert_eq!(task_state(Some("upstream_failed")), State::UpstreamFailed);
        assert_eq!(task_state(Some("weird")), State::Unknown);
        assert_eq!(run_state(Some("success")), State::Succeeded);
    }

    #[test]
    fn times_are_read_in_utc() {
        assert_eq!(time_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            time_ms("2026-12-07T08:50:06.704162Z"),
            Some(1_796_633_406_704)
        );
        assert_eq!(
            time_ms("2026-12-07T08:50:06+00:00"),
            Some(1_796_633_406_000)
        );
        assert_eq!(time_ms("2024-02-29T12:00:00.5Z"), Some(1_709_208_000_500));
        assert_eq!(time_ms("2026-12-07T08:50:06+02:00"), None);
        assert_eq!(time_ms("yesterday"), None);
    }

    #[test]
    fn logs_render_as_lines_and_page_on_characters() {
        let content = json!([
            {"event": "::group::source"},
            {"timestamp": "T1", "level": "info", "event": "try 1"},
            {"timestamp": "T2", "level": "error", "event": "Task failed"},
        ]);
        let text = render_log(&content);
        assert_eq!(
            text,
            "::group::source\nT1 info try 1\nT2 error Task failed\n"
        );
        assert_eq!(render_log(&json!("plain\n")), "plain\n");
        let (a, next) = slice(&text, 0, 16);
        assert_eq!((a.as_str(), next), ("::group::source\n", 16));
        let (b, next) = slice(&text, next, 1 << 20);
        assert_eq!(b, "T1 info try 1\nT2 error Task failed\n");
        assert_eq!(slice(&text, next, 10), (String::new(), next));
        // Never half a character.
        assert_eq!(slice("é!", 0, 1), (String::new(), 0));
        assert_eq!(slice("é!", 0, 2), ("é".to_string(), 2));
    }

    #[test]
    fn the_graph_is_turned_upstream() {
        let tasks = json!({"tasks": [
            {"task_id": "extract", "downstream_task_ids": ["transform"]},
            {"task_id": "load", "downstream_task_ids": []},
            {"task_id": "transform", "downstream_task_ids": ["load"]},
        ]});
        assert_eq!(
            graph(&tasks).unwrap(),
            vec![
                ("extract".to_string(), vec![]),
                ("load".to_string(), vec!["transform".to_string()]),
                ("transform".to_string(), vec!["extract".to_string()]),
            ]
        );
        assert!(graph(&json!({})).is_err());
        assert_eq!(detail(br#"{"detail":"no such DAG"}"#), "no such DAG");
    }
}
