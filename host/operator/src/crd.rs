//! The custom resources, group `tessera.dev`, version `v1alpha1`, as Rust types: the CRDs
//! in `deploy/kubernetes/crds/` are generated from them (`tessera operator crds`).
//!
//! The specs are the Task API's own documents in Kubernetes' camelCase: the server checks
//! them (one set of rules), and the operator writes what it said into the resource's
//! status. Parts the server defines in depth (contexts, credentials, resources) are kept
//! as given (`x-kubernetes-preserve-unknown-fields`).

// Several `printcolumn(…)` in one `#[kube]` repeat their keys, which clippy reads as a
// duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A schema that keeps whatever object it is given.
fn free_form(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

/// A list of such objects.
fn free_form_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}

/// A task with contexts, run by an agent (the Task API's `POST /v1/tasks`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "tessera.dev",
    version = "v1alpha1",
    kind = "Task",
    namespaced,
    status = "TaskStatus",
    shortname = "ttask",
    category = "tessera",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Job", type_ = "string", json_path = ".status.jobName"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    /// The agent that runs it (`default` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_ref: Option<String>,
    /// Files for the task: `{text, filePath}`, `{config, key, filePath}`, … as in the
    /// Task API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_form_list")]
    pub contexts: Vec<serde_json::Value>,
    /// Replaces the agent's command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub priority: i32,
}

/// What the operator writes back.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    /// Queued, Pending, Running, Completed or Failed (the Task API's phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The task's id on the server (the REST APIs show it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The Job it runs as, on a Kubernetes target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// Why it is where it is (the server's reason, or why it was refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A condition, as Kubernetes objects carry them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// How to run tasks: image, command, default contexts, credentials, where its pods go
/// (the Task API's agents; the resource's name is the agent's).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "tessera.dev",
    version = "v1alpha1",
    kind = "Agent",
    namespaced,
    status = "SyncStatus",
    category = "tessera",
    printcolumn(name = "Synced", type_ = "string", json_path = ".status.synced"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    pub image: String,
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_form_list")]
    pub contexts: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_form_list")]
    pub credentials: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_tasks: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub human_in_the_loop: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub resources: Option<serde_json::Value>,
    /// Service account, node selector, tolerations, pod labels of its tasks' pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub kubernetes: Option<serde_json::Value>,
}

/// Whether the server took the resource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    #[serde(default)]
    pub synced: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A task on a schedule (the Task API's cron tasks): children are named
/// `{name}-{unix-timestamp}`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "tessera.dev",
    version = "v1alpha1",
    kind = "CronTask",
    namespaced,
    status = "SyncStatus",
    category = "tessera",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(name = "Synced", type_ = "string", json_path = ".status.synced")
)]
#[serde(rename_all = "camelCase")]
pub struct CronTaskSpec {
    /// Five fields, as cron.
    pub schedule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Allow, Forbid or Replace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<String>,
    #[serde(default)]
    pub suspend: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_history_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_history_limit: Option<u32>,
    /// The task each tick makes (a Task's spec).
    pub task: TaskSpec,
}

/// Settings of the operator in its namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "tessera.dev",
    version = "v1alpha1",
    kind = "TesseraConfig",
    namespaced,
    category = "tessera"
)]
#[serde(rename_all = "camelCase")]
pub struct TesseraConfigSpec {
    /// Finished Tasks are deleted this long after they ended (kept when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<u64>,
}

/// The CRDs, as one YAML stream (what `deploy/kubernetes/crds/tessera.dev.yaml` holds).
pub fn crds_yaml() -> Result<String, serde_json::Error> {
    use kube::CustomResourceExt;
    let crds = [
        Task::crd(),
        CronTask::crd(),
        Agent::crd(),
        TesseraConfig::crd(),
    ];
    let mut out = String::from(
        "# Generated from host/operator/src/crd.rs by `tessera operator crds`; do not edit.\n",
    );
    for crd in crds {
        // JSON is YAML: one document per CRD, readable by kubectl and kustomize.
        out.push_str("---\n");
        out.push_str(&serde_json::to_string_pretty(&crd)?);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_crds_are_the_generated_ones() {
        let shipped = include_str!("../../../deploy/kubernetes/crds/tessera.dev.yaml");
        assert_eq!(
            shipped,
            crds_yaml().unwrap(),
            "regenerate: tessera operator crds > deploy/kubernetes/crds/tessera.dev.yaml"
        );
    }

    #[test]
    fn a_task_resource_reads_as_kubectl_users_write_it() {
        let t: Task = serde_json::from_value(serde_json::json!({
            "apiVersion": "tessera.dev/v1alpha1", "kind": "Task",
            "metadata": {"name": "hello"},
            "spec": {"agentRef": "coder", "contexts": [{"text": "hi", "filePath": "a.md"}]}
        }))
        .unwrap();
        assert_eq!(t.spec.agent_ref.as_deref(), Some("coder"));
        assert_eq!(t.spec.contexts[0]["filePath"], "a.md");
    }
}
