//! The three TES views of a stored task.

use crate::task::TaskRecord;
use crate::tes::{Task, View};

/// Render a stored task in a TES view:
/// MINIMAL is exactly `id` and `state`; BASIC omits executor stdout/stderr,
/// `inputs[].content` and `system_logs`; FULL has everything.
pub fn render(record: &TaskRecord, view: View) -> Task {
    if view == View::Minimal {
        return Task {
            id: Some(record.id.clone()),
            state: Some(record.state),
            ..Task::default()
        };
    }
    let mut task = record.spec.clone();
    task.id = Some(record.id.clone());
    task.state = Some(record.state);
    task.creation_time = Some(crate::time_fmt::format_rfc3339(record.creation_time));
    task.logs = Some(record.logs.clone());
    if task.executors.is_none() {
        task.executors = Some(Vec::new());
    }
    if view == View::Basic {
        if let Some(inputs) = task.inputs.as_mut() {
            for input in inputs {
                input.content = None;
            }
        }
        if let Some(logs) = task.logs.as_mut() {
            for log in logs {
                log.system_logs = None;
                for exec in &mut log.logs {
                    exec.stdout = None;
                    exec.stderr = None;
                }
            }
        }
    }
    task
}

/// What a reader that has seen `seen` bytes of a stream has not seen, when the store
/// keeps `tail`, the last bytes of the stream's `total` bytes: how many bytes it missed
/// (they fell out of the tail), and the new text (from a character boundary).
pub fn unseen_tail(tail: &str, total: u64, seen: u64) -> (u64, &str) {
    let new = total.saturating_sub(seen);
    let have = tail.len() as u64;
    let missed = new.saturating_sub(have);
    let from = tail.len() - usize::try_from(new.min(have)).unwrap_or(tail.len());
    let from = (from..=tail.len())
        .find(|i| tail.is_char_boundary(*i))
        .unwrap_or(tail.len());
    (missed, &tail[from..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unseen_part_of_a_tail_is_what_came_after_the_reader() {
        assert_eq!(unseen_tail("abcdef", 6, 0), (0, "abcdef"));
        assert_eq!(unseen_tail("abcdef", 6, 4), (0, "ef"));
        assert_eq!(unseen_tail("abcdef", 6, 6), (0, ""));
        // 10 bytes written, the tail keeps the last 6: a reader at 1 missed 3.
        assert_eq!(unseen_tail("efghij", 10, 1), (3, "efghij"));
        // Never from inside a character.
        assert_eq!(unseen_tail("aé", 3, 1), (0, "é"));
        assert_eq!(unseen_tail("é", 2, 1), (0, ""));
    }
    use crate::state::State;
    use crate::tes::{Executor, ExecutorLog, Input, TaskLog};

    fn record() -> TaskRecord {
        TaskRecord {
            id: "t1".into(),
            seq: 1,
            state: State::Complete,
            reason: None,
            group: String::new(),
            origin: Default::default(),
            priority: 0,
            extra: Default::default(),
            spec: Task {
                name: Some("n".into()),
                inputs: Some(vec![Input {
                    path: "/in".into(),
                    content: Some("secret-ish".into()),
                    ..Input::default()
                }]),
                executors: Some(vec![Executor {
                    image: "busybox".into(),
                    command: vec!["true".into()],
                    ..Executor::default()
                }]),
                ..Task::default()
            },
            logs: vec![TaskLog {
                logs: vec![ExecutorLog {
                    stdout: Some("out".into()),
                    stderr: Some("err".into()),
                    exit_code: 0,
                    ..ExecutorLog::default()
                }],
                system_logs: Some(vec!["sys".into()]),
                ..TaskLog::default()
            }],
            creation_time: time::macros::datetime!(2026-01-01 00:00:00 UTC),
        }
    }

    #[test]
    fn minimal_is_exactly_id_and_state() {
        let v = serde_json::to_value(render(&record(), View::Minimal)).unwrap();
        assert_eq!(v, serde_json::json!({"id": "t1", "state": "COMPLETE"}));
    }

    #[test]
    fn basic_hides_logs_content_and_system_logs() {
        let v = serde_json::to_value(render(&record(), View::Basic)).unwrap();
        assert!(v["inputs"][0].get("content").is_none());
        assert!(v["logs"][0].get("system_logs").is_none());
        assert!(v["logs"][0]["logs"][0].get("stdout").is_none());
        assert!(v["logs"][0]["logs"][0].get("stderr").is_none());
        assert_eq!(v["logs"][0]["logs"][0]["exit_code"], 0);
        assert_eq!(v["name"], "n");
    }

    #[test]
    fn full_has_everything() {
        let v = serde_json::to_value(render(&record(), View::Full)).unwrap();
        assert_eq!(v["inputs"][0]["content"], "secret-ish");
        assert_eq!(v["logs"][0]["system_logs"][0], "sys");
        assert_eq!(v["logs"][0]["logs"][0]["stdout"], "out");
        assert_eq!(v["creation_time"], "2026-01-01T00:00:00Z");
    }
}
