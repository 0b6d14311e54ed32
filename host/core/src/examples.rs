//! Example documents, shown in the OpenAPI document and sent by its fuzz test: the same
//! files under `examples/` that the README shows and the end-to-end tests submit, so an
//! example cannot go stale without a test failing.

use serde_json::{Value, json};

fn parse(text: &str) -> Value {
    // The files are compiled in; `tests` below holds each one to its type.
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// An operation (`POST /v1/operations`).
pub fn operation() -> Value {
    parse(include_str!("../../../examples/task-api/count.json"))
}

/// An agent (`POST /v1/agents`).
pub fn agent() -> Value {
    parse(include_str!("../../../examples/task-api/agent.json"))
}

/// A cron task (`POST /v1/cron-tasks`).
pub fn cron_task() -> Value {
    parse(include_str!("../../../examples/task-api/cron.json"))
}

/// A TES task (`POST /ga4gh/tes/v1/tasks`).
pub fn tes_task() -> Value {
    parse(include_str!("../../../examples/tes/hello.json"))
}

/// A contextual task (`POST /v1/tasks`).
pub fn task_request() -> Value {
    json!({
        "name": "summarise",
        "agentRef": "default",
        "contexts": [{"text": "Summarise the notes.\n", "filePath": "task.md"}],
        "labels": {"project": "demo"}
    })
}

/// A run request (`POST /v1/operations/{id}/runs`) of [`operation`].
pub fn run_request() -> Value {
    json!({"params": {"count": 3, "greeting": "bonjour"}, "labels": {"project": "demo"}})
}

/// A config's or secret's entries.
pub fn entries() -> Value {
    json!({"name": "settings", "data": {"app.yaml": "level: info\n"}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_is_a_valid_document_of_its_type() {
        let op: crate::operation::OperationSpec =
            serde_json::from_value(operation()).expect("count.json is an operation");
        assert_eq!(op.check(), Ok(()));
        let agent: crate::agent::AgentSpec =
            serde_json::from_value(agent()).expect("agent.json is an agent");
        assert!(agent.check().is_empty(), "{:?}", agent.check());
        let task: crate::tes::Task =
            serde_json::from_value(tes_task()).expect("hello.json is a TES task");
        assert_eq!(task.name.as_deref(), Some("hello"));
        let req: crate::agent::TaskRequest =
            serde_json::from_value(task_request()).expect("a task request");
        assert_eq!(req.agent_ref.as_deref(), Some("default"));
        let run: crate::operation::RunRequest =
            serde_json::from_value(run_request()).expect("a run request");
        assert_eq!(op.resolve(&run.params).map(|_| ()), Ok(()));
        assert!(cron_task().get("schedule").is_some());
        assert!(entries().get("data").is_some());
    }
}
