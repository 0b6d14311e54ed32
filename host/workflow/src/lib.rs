//! Workflows, engine-agnostic, and the native engine's logic.
//!
//! - [`state`]: the states of a workflow run and of its task runs (Kaapana's names), and
//!   how a task's TES state reads as a task-run state.
//! - [`dag`]: a workflow's task graph as an engine reports it, its rules (no unknown
//!   dependencies, no cycles, each named) and the questions the scheduler and retry ask.
//! - [`native`]: the native engine's format (YAML or JSON): tasks with image, command,
//!   env, inputs and outputs, resources, retries with backoff, a timeout and
//!   `depends_on`; checked whole at POST time.
//! - [`plan`]: the scheduler. One pure function from a run's current task runs and the
//!   time to what to do next (start, retry later, mark upstream-failed, cancel, finish),
//!   so every rule is tested without a store, a clock or a container.
//!
//! Everything here is pure: the HTTP layer stores, submits tasks and calls adapters.

pub mod dag;
pub mod native;
pub mod plan;
pub mod state;

pub use dag::Dag;
pub use state::{CleanupPolicy, RunState, TaskRunState};

/// The id of attempt `attempt` of task `task` of run `run_id` (made at `created`), which
/// is also the id of the task that runs it: the same wherever it is computed, so a plan
/// applied twice (two servers, or one before and after a crash) starts it once.
pub fn task_run_id(
    run_id: &str,
    created: time::OffsetDateTime,
    task: &str,
    attempt: u32,
) -> String {
    let seed = format!("workflow-run/{run_id}/{task}/{attempt}");
    tessera_core::id::task_id_from(created, seed.as_bytes())
}

/// The hex SHA-256 of a definition's canonical form: JSON with sorted keys and no
/// insignificant whitespace when the definition is JSON or YAML, else its text as given.
/// Posting a definition with the same digest again returns the existing revision.
pub fn definition_digest(canonical: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(canonical.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The canonical text of a definition given as JSON (an object, or a string holding the
/// engine's own format): a JSON value as compact JSON with keys sorted at every level
/// (whatever order the map type keeps), a string as it is.
pub fn canonical_definition(definition: &serde_json::Value) -> String {
    match definition {
        serde_json::Value::String(s) => s.clone(),
        other => {
            let mut out = String::new();
            write_canonical(other, &mut out);
            out
        }
    }
}

fn write_canonical(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_digest_does_not_depend_on_key_order_or_spacing() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"tasks": [{"name": "a", "image": "x"}], "b": 1}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"tasks":[{"image":"x","name":"a"}]}"#).unwrap();
        assert_eq!(canonical_definition(&a), canonical_definition(&b));
        assert_eq!(
            definition_digest(&canonical_definition(&a)),
            definition_digest(&canonical_definition(&b))
        );
        let c = json!({"b": 2, "tasks": [{"image": "x", "name": "a"}]});
        assert_ne!(canonical_definition(&a), canonical_definition(&c));
        assert_eq!(canonical_definition(&json!("dag_id: x")), "dag_id: x");
        assert_eq!(definition_digest("").len(), 64);
    }
}
