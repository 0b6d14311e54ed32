//! The native engine's workflow format (`engine: "tessera"`), in YAML or JSON:
//!
//! ```yaml
//! concurrency: {max_tasks_per_run: 8}
//! tasks:
//!   - name: extract
//!     image: tessera-test/busybox:latest
//!     command: [sh, -c, "seq 1 $N > /out/numbers.txt"]
//!     env: {N: "{{count}}"}
//!     outputs: [{name: numbers, path: /out/numbers.txt}]
//!     retries: {count: 2, backoff_seconds: 1}
//!     timeout_seconds: 600
//!   - name: sum
//!     depends_on: [extract]
//!     image: tessera-test/busybox:latest
//!     command: [sh, -c, "awk '{s+=$1} END {print s}' /in/numbers.txt"]
//!     inputs: [{from: extract.numbers, path: /in/numbers.txt}]
//! ```
//!
//! Each task run is one task of the one task model: the task's image, command and env
//! (`{{param}}` replaced by the run's values), its inputs (a URL, inline content, or
//! `from: TASK.OUTPUT`, an output of a task upstream of it), its outputs (kept in the
//! group's bucket under the run's prefix, where downstream inputs find them), resources
//! and timeout.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tessera_core::error::FieldError;
use tessera_core::params::{Parameter, Resolved, check_placeholders};
use tessera_core::tes;

use crate::dag::Dag;

/// The engine name of the native engine.
pub const ENGINE: &str = "tessera";

/// Most task runs of one task (its first attempt and its retries).
pub const MAX_RETRIES: u32 = 100;
/// Most tasks in one workflow.
pub const MAX_TASKS: usize = 10_000;
/// The longest backoff a retry may ask for (a day).
pub const MAX_BACKOFF_SECONDS: f64 = 86_400.0;

/// A task or output name: a name by the core's rule, without `.` (inputs name outputs
/// as `TASK.OUTPUT`).
fn check_part_name(name: &str) -> Result<(), String> {
    tessera_core::operation::check_name(name)?;
    if name.contains('.') {
        return Err(format!(
            "{name:?} contains '.', which separates task and output in TASK.OUTPUT"
        ));
    }
    Ok(())
}

/// A native workflow definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = NativeWorkflow))]
#[serde(deny_unknown_fields)]
pub struct Definition {
    #[serde(default)]
    pub concurrency: Concurrency,
    pub tasks: Vec<TaskDef>,
}

/// How many task runs may run at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    /// Of one run (absent: no limit of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tasks_per_run: Option<u32>,
    /// Of all runs of the workflow together (absent: no limit of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tasks_per_workflow: Option<u32>,
}

/// One task of a native workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = NativeTask))]
#[serde(deny_unknown_fields)]
pub struct TaskDef {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Values may hold `{{param}}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputDef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<tes::Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// The longest one attempt may run, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

/// One input of a task: exactly one of `url`, `content` or `from`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = NativeInput))]
#[serde(deny_unknown_fields)]
pub struct InputDef {
    /// Where it goes in the container.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Inline text (may hold `{{param}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// `TASK.OUTPUT`: an output of a task this one depends on (directly or not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// One output of a task, kept for the tasks downstream and for the run's data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = NativeOutput))]
#[serde(deny_unknown_fields)]
pub struct OutputDef {
    pub name: String,
    /// A file, or with `type: DIRECTORY` a directory, in the container.
    pub path: String,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<tes::FileType>,
}

/// Retries of a failed task run, each after a backoff that grows by `backoff_factor`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Retries {
    /// Retries after the first attempt.
    pub count: u32,
    #[serde(default = "default_backoff")]
    pub backoff_seconds: f64,
    #[serde(default = "default_factor")]
    pub backoff_factor: f64,
    #[serde(default = "default_max_backoff")]
    pub max_backoff_seconds: f64,
}

fn default_backoff() -> f64 {
    1.0
}

fn default_factor() -> f64 {
    2.0
}

fn default_max_backoff() -> f64 {
    300.0
}

impl Retries {
    /// The wait before attempt `attempt` (2 is the first retry), in milliseconds.
    pub fn backoff_ms(&self, attempt: u32) -> i64 {
        let n = attempt.saturating_sub(2).min(64) as i32;
        let secs =
            (self.backoff_seconds * self.backoff_factor.powi(n)).min(self.max_backoff_seconds);
        (secs.max(0.0) * 1000.0) as i64
    }
}

impl Definition {
    /// A definition as posted: a JSON object, or a string of YAML (or JSON).
    pub fn parse(definition: &Value) -> Result<Definition, Vec<FieldError>> {
        let parsed = match definition {
            Value::String(text) => {
                yaml_serde::from_str::<Definition>(text).map_err(|e| e.to_string())
            }
            Value::Object(_) => {
                serde_json::from_value::<Definition>(definition.clone()).map_err(|e| e.to_string())
            }
            _ => Err("must be an object, or a string of YAML or JSON".to_string()),
        };
        parsed.map_err(|m| vec![FieldError::at("definition", m)])
    }

    /// The definition as JSON (the canonical form is taken of this).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Check the whole definition against the workflow's declared parameters; the task
    /// graph, or every broken rule (fields under `definition.`).
    pub fn check(&self, params: &[Parameter]) -> Result<Dag, Vec<FieldError>> {
        let mut errs = Vec::new();
        let at = |i: usize, f: &str| format!("definition.tasks[{i}].{f}");
        if self.tasks.is_empty() {
            errs.push(FieldError::at(
                "definition.tasks",
                "must have at least one task",
            ));
        }
        if self.tasks.len() > MAX_TASKS {
            errs.push(FieldError::at(
                "definition.tasks",
                format!("at most {MAX_TASKS} tasks"),
            ));
        }
        for (name, limit) in [
            ("max_tasks_per_run", self.concurrency.max_tasks_per_run),
            (
                "max_tasks_per_workflow",
                self.concurrency.max_tasks_per_workflow,
            ),
        ] {
            if limit == Some(0) {
                errs.push(FieldError::at(
                    format!("definition.concurrency.{name}"),
                    "must be positive",
                ));
            }
        }
        for (i, t) in self.tasks.iter().enumerate() {
            if let Err(m) = check_part_name(&t.name) {
                errs.push(FieldError::at(at(i, "name"), m));
            }
            if t.image.trim().is_empty() {
                errs.push(FieldError::at(
                    at(i, "image"),
                    "must name a container image",
                ));
            }
            if t.command.is_empty() {
                errs.push(FieldError::at(
                    at(i, "command"),
                    "must have at least one element",
                ));
            }
            for (j, arg) in t.command.iter().enumerate() {
                check_placeholders(params, &at(i, &format!("command[{j}]")), arg, &mut errs);
            }
            for (k, v) in &t.env {
                if k.is_empty() || k.contains('=') || k.contains('\0') {
                    errs.push(FieldError::at(
                        at(i, &format!("env.{k}")),
                        "is not an environment variable name",
                    ));
                }
                check_placeholders(params, &at(i, &format!("env.{k}")), v, &mut errs);
            }
            let mut outputs = BTreeSet::new();
            for (j, o) in t.outputs.iter().enumerate() {
                let field = at(i, &format!("outputs[{j}]"));
                if let Err(m) = check_part_name(&o.name) {
                    errs.push(FieldError::at(format!("{field}.name"), m));
                }
                if !outputs.insert(o.name.as_str()) {
                    errs.push(FieldError::at(
                        format!("{field}.name"),
                        format!("{:?} is declared twice", o.name),
                    ));
                }
                if !o.path.starts_with('/') {
                    errs.push(FieldError::at(format!("{field}.path"), "must be absolute"));
                }
            }
            for (j, input) in t.inputs.iter().enumerate() {
                let field = at(i, &format!("inputs[{j}]"));
                let given = [&input.url, &input.content, &input.from]
                    .iter()
                    .filter(|v| v.is_some())
                    .count();
                if given != 1 {
                    errs.push(FieldError::at(
                        field.clone(),
                        "needs exactly one of url, content and from",
                    ));
                }
                if !input.path.starts_with('/') {
                    errs.push(FieldError::at(format!("{field}.path"), "must be absolute"));
                }
                if let Some(c) = &input.content {
                    check_placeholders(params, &format!("{field}.content"), c, &mut errs);
                }
            }
            if let Some(r) = &t.retries {
                if r.count > MAX_RETRIES {
                    errs.push(FieldError::at(
                        at(i, "retries.count"),
                        format!("at most {MAX_RETRIES}"),
                    ));
                }
                let in_range = [r.backoff_seconds, r.max_backoff_seconds]
                    .iter()
                    .all(|v| v.is_finite() && (0.0..=MAX_BACKOFF_SECONDS).contains(v));
                if !in_range || !(1.0..=100.0).contains(&r.backoff_factor) {
                    errs.push(FieldError::at(
                        at(i, "retries"),
                        format!(
                            "backoffs must be 0 to {MAX_BACKOFF_SECONDS} seconds and the factor 1 to 100"
                        ),
                    ));
                }
            }
            if t.timeout_seconds == Some(0) {
                errs.push(FieldError::at(at(i, "timeout_seconds"), "must be positive"));
            }
        }
        let graph: Vec<(String, Vec<String>)> = self
            .tasks
            .iter()
            .map(|t| (t.name.clone(), t.depends_on.clone()))
            .collect();
        let dag = match Dag::new(&graph) {
            Ok(d) => Some(d),
            Err(e) => {
                errs.extend(e.into_iter().map(|mut f| {
                    f.field = format!("definition.{}", f.field);
                    f
                }));
                None
            }
        };
        // Inputs from other tasks' outputs: a task upstream of this one, an output it has.
        if let Some(dag) = &dag {
            for (i, t) in self.tasks.iter().enumerate() {
                for (j, input) in t.inputs.iter().enumerate() {
                    let Some(from) = &input.from else { continue };
                    let field = at(i, &format!("inputs[{j}].from"));
                    let Some((task, output)) = from.split_once('.') else {
                        errs.push(FieldError::at(
                            field,
                            format!("{from:?} is not TASK.OUTPUT"),
                        ));
                        continue;
                    };
                    let Some(source) = self.tasks.iter().find(|s| s.name == task) else {
                        errs.push(FieldError::at(field, format!("{task:?} is not a task")));
                        continue;
                    };
                    if !dag.is_upstream(task, &t.name) {
                        errs.push(FieldError::at(
                            field,
                            format!(
                                "{task:?} is not upstream of {:?}: add it to depends_on",
                                t.name
                            ),
                        ));
                    } else if !source.outputs.iter().any(|o| o.name == output) {
                        errs.push(FieldError::at(
                            field,
                            format!("{task:?} has no output {output:?}"),
                        ));
                    }
                }
            }
        }
        match dag {
            Some(d) if errs.is_empty() => Ok(d),
            _ => Err(errs),
        }
    }

    pub fn task(&self, name: &str) -> Option<&TaskDef> {
        self.tasks.iter().find(|t| t.name == name)
    }
}

/// Tags the server puts on a workflow task run's task.
pub const WORKFLOW_TAG: &str = "tessera.workflow";
pub const WORKFLOW_VERSION_TAG: &str = "tessera.workflow-version";
pub const RUN_TAG: &str = "tessera.workflow-run";
pub const TASK_TAG: &str = "tessera.workflow-task";
pub const ATTEMPT_TAG: &str = "tessera.attempt";

/// What a task run's task needs to know of its run.
#[derive(Debug, Clone)]
pub struct RunContext<'a> {
    pub workflow: &'a str,
    pub version: i64,
    pub run_id: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub values: &'a Resolved,
    /// Where the run's outputs are kept: a URL prefix ending in `/`
    /// (`s3://GROUP/workflow-runs/RUN/`).
    pub data_url: &'a str,
}

impl RunContext<'_> {
    /// The URL of output `output` of task `task` of this run.
    pub fn output_url(&self, task: &str, output: &str, kind: Option<tes::FileType>) -> String {
        let slash = if kind == Some(tes::FileType::Directory) {
            "/"
        } else {
            ""
        };
        format!("{}{task}/{output}{slash}", self.data_url)
    }
}

/// The task attempt `attempt` of `t` is, in run `ctx`.
pub fn task_for(def: &Definition, t: &TaskDef, attempt: u32, ctx: &RunContext) -> tes::Task {
    let v = ctx.values;
    let env: BTreeMap<String, String> = t
        .env
        .iter()
        .map(|(k, val)| (k.clone(), v.render(val)))
        .collect();
    let executor = tes::Executor {
        image: t.image.clone(),
        command: t.command.iter().map(|a| v.render(a)).collect(),
        workdir: t.workdir.clone(),
        env: (!env.is_empty()).then_some(env),
        ..tes::Executor::default()
    };
    let inputs: Vec<tes::Input> = t
        .inputs
        .iter()
        .map(|i| {
            let (url, kind) = match &i.from {
                Some(from) => {
                    let (task, output) = from.split_once('.').unwrap_or((from, ""));
                    let kind = def
                        .task(task)
                        .and_then(|s| s.outputs.iter().find(|o| o.name == output))
                        .and_then(|o| o.kind);
                    (Some(ctx.output_url(task, output, kind)), kind)
                }
                None => (i.url.clone(), None),
            };
            tes::Input {
                url,
                path: i.path.clone(),
                content: i.content.as_ref().map(|c| v.render(c)),
                r#type: Some(kind.unwrap_or(tes::FileType::File)),
                ..tes::Input::default()
            }
        })
        .collect();
    let outputs: Vec<tes::Output> = t
        .outputs
        .iter()
        .map(|o| tes::Output {
            name: Some(o.name.clone()),
            url: ctx.output_url(&t.name, &o.name, o.kind),
            path: o.path.clone(),
            r#type: Some(o.kind.unwrap_or(tes::FileType::File)),
            ..tes::Output::default()
        })
        .collect();
    let resources = match t.timeout_seconds {
        Some(secs) => Some(
            t.resources
                .clone()
                .unwrap_or_default()
                .with_max_run_time(secs),
        ),
        None => t.resources.clone(),
    };
    let mut tags = ctx.labels.clone();
    tags.insert(WORKFLOW_TAG.into(), ctx.workflow.to_string());
    tags.insert(WORKFLOW_VERSION_TAG.into(), ctx.version.to_string());
    tags.insert(RUN_TAG.into(), ctx.run_id.to_string());
    tags.insert(TASK_TAG.into(), t.name.clone());
    tags.insert(ATTEMPT_TAG.into(), attempt.to_string());
    tes::Task {
        name: Some(format!("{}.{}", ctx.workflow, t.name)),
        executors: Some(vec![executor]),
        inputs: (!inputs.is_empty()).then_some(inputs),
        outputs: (!outputs.is_empty()).then_some(outputs),
        resources,
        tags: Some(tags),
        ..tes::Task::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params() -> Vec<Parameter> {
        serde_json::from_value(json!([{"name": "count", "type": "integer", "default": 3}])).unwrap()
    }

    const ETL: &str = r#"
concurrency: {max_tasks_per_run: 8}
tasks:
  - name: extract
    image: tessera-test/busybox:latest
    command: [sh, -c, "seq 1 $N > /out/numbers.txt"]
    env: {N: "{{count}}"}
    outputs: [{name: numbers, path: /out/numbers.txt}]
    retries: {count: 2, backoff_seconds: 1}
    timeout_seconds: 600
  - name: sum
    depends_on: [extract]
    image: tessera-test/busybox:latest
    command: [sh, -c, "awk '{s+=$1} END {print s}' /in/numbers.txt"]
    inputs: [{from: extract.numbers, path: /in/numbers.txt}]
"#;

    #[test]
    fn yaml_and_json_are_the_same_definition() {
        let from_yaml = Definition::parse(&Value::String(ETL.into())).unwrap();
        let from_json = Definition::parse(&from_yaml.to_value()).unwrap();
        assert_eq!(from_yaml, from_json);
        let from_json_text =
            Definition::parse(&Value::String(from_yaml.to_value().to_string())).unwrap();
        assert_eq!(from_yaml, from_json_text);
        let dag = from_yaml.check(&params()).unwrap();
        assert_eq!(dag.task("extract").unwrap().downstream, ["sum"]);
    }

    #[test]
    fn each_broken_rule_is_named_at_post_time() {
        let def: Definition = serde_json::from_value(json!({
            "tasks": [
                {"name": "a", "image": "x", "command": ["echo", "{{missing}}"],
                 "outputs": [{"name": "o", "path": "rel"}]},
                {"name": "b", "image": "x", "command": ["true"], "depends_on": ["a", "ghost"],
                 "inputs": [{"from": "a.nope", "path": "/in"}, {"path": "/x"}]},
                {"name": "c", "image": "", "command": [], "depends_on": ["d"]},
                {"name": "d", "image": "x", "command": ["true"], "depends_on": ["c"],
                 "retries": {"count": 1000}},
                {"name": "load.v2", "image": "x", "command": ["true"],
                 "retries": {"count": 1, "backoff_seconds": 1e16}}
            ]
        }))
        .unwrap();
        let errs = def.check(&params()).unwrap_err();
        let text: Vec<String> = errs
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        for want in [
            "definition.tasks[0].command[1]: {{missing}} names no declared parameter",
            "definition.tasks[0].outputs[0].path: must be absolute",
            "definition.tasks[1].depends_on[1]: \"b\" depends on \"ghost\", which is not a task",
            "definition.tasks[1].inputs[1]: needs exactly one of url, content and from",
            "definition.tasks[2].image: must name a container image",
            "definition.tasks[2].command: must have at least one element",
            "definition.tasks[3].retries.count: at most 100",
            "definition.tasks[4].name: \"load.v2\" contains '.', which separates task and output in TASK.OUTPUT",
            "definition.tasks[4].retries: backoffs must be 0 to 86400 seconds and the factor 1 to 100",
        ] {
            assert!(text.iter().any(|t| t == want), "{want} not in {text:#?}");
        }
        // The graph's own rules wait until every name is known: a cycle, then outputs.
        let cyclic: Definition = serde_json::from_value(json!({"tasks": [
            {"name": "c", "image": "x", "command": ["true"], "depends_on": ["d"]},
            {"name": "d", "image": "x", "command": ["true"], "depends_on": ["c"]}
        ]}))
        .unwrap();
        let errs = cyclic.check(&[]).unwrap_err();
        assert!(errs[0].message.contains("c -> d -> c"), "{errs:?}");
        let unrelated: Definition = serde_json::from_value(json!({"tasks": [
            {"name": "a", "image": "x", "command": ["true"], "outputs": [{"name": "o", "path": "/o"}]},
            {"name": "b", "image": "x", "command": ["true"], "inputs": [{"from": "a.o", "path": "/i"}]},
            {"name": "c", "image": "x", "command": ["true"], "depends_on": ["a"],
             "inputs": [{"from": "a.p", "path": "/i"}]}
        ]}))
        .unwrap();
        let errs = unrelated.check(&[]).unwrap_err();
        let text: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
        assert!(
            text.iter()
                .any(|m| m.contains("\"a\" is not upstream of \"b\"")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|m| m.contains("\"a\" has no output \"p\"")),
            "{text:?}"
        );
    }

    #[test]
    fn a_task_run_is_a_task_with_its_values_outputs_and_tags() {
        let def = Definition::parse(&Value::String(ETL.into())).unwrap();
        let values =
            tessera_core::params::resolve(&params(), &serde_json::Map::new(), "workflow").unwrap();
        let labels: BTreeMap<String, String> = [("project".to_string(), "demo".to_string())].into();
        let ctx = RunContext {
            workflow: "etl",
            version: 2,
            run_id: "r1",
            labels: &labels,
            values: &values,
            data_url: "s3://lab/workflow-runs/r1/",
        };
        let extract = task_for(&def, def.task("extract").unwrap(), 1, &ctx);
        let ex = &extract.executors.as_ref().unwrap()[0];
        assert_eq!(ex.env.as_ref().unwrap()["N"], "3");
        assert_eq!(
            extract.outputs.as_ref().unwrap()[0].url,
            "s3://lab/workflow-runs/r1/extract/numbers"
        );
        assert_eq!(
            extract
                .resources
                .as_ref()
                .unwrap()
                .max_run_time()
                .unwrap()
                .as_secs(),
            600
        );
        let tags = extract.tags.as_ref().unwrap();
        assert_eq!(tags[RUN_TAG], "r1");
        assert_eq!(tags[TASK_TAG], "extract");
        assert_eq!(tags["project"], "demo");
        let sum = task_for(&def, def.task("sum").unwrap(), 3, &ctx);
        let input = &sum.inputs.as_ref().unwrap()[0];
        assert_eq!(
            input.url.as_deref(),
            Some("s3://lab/workflow-runs/r1/extract/numbers")
        );
        assert_eq!(sum.tags.as_ref().unwrap()[ATTEMPT_TAG], "3");
    }

    #[test]
    fn backoff_grows_by_its_factor_up_to_its_cap() {
        let r = Retries {
            count: 5,
            backoff_seconds: 1.5,
            backoff_factor: 2.0,
            max_backoff_seconds: 5.0,
        };
        assert_eq!(
            (2..=5).map(|a| r.backoff_ms(a)).collect::<Vec<_>>(),
            [1500, 3000, 5000, 5000]
        );
    }
}
