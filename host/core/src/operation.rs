//! Operations and runs (the Task API's Kaizten half): an operation is a named container
//! image with a command template and typed parameters; a run is one execution of an
//! operation version with parameter values, which becomes an ordinary task.
//!
//! Pure: checking an operation, checking a run's values against it, and building the
//! task a run is. The HTTP layer stores and submits; the task then goes the one path
//! every task goes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::FieldError;
use crate::tes;

/// The longest operation or parameter name.
pub const MAX_NAME_CHARS: usize = 63;
/// Priorities a run may ask for (higher runs first).
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -1000..=1000;
/// Where dataset inputs go when a run names no path.
pub const DEFAULT_INPUT_DIR: &str = "/inputs";

pub use crate::params::{ParamType, Parameter, Resolved};

/// An operation as submitted and stored (one version of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(examples(crate::examples::operation)))]
#[serde(deny_unknown_fields)]
pub struct OperationSpec {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub image: String,
    /// The command; `{{param}}` in an element is replaced by the parameter's value.
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
    /// Default environment; values may hold `{{param}}` too. A run may override them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<tes::Resources>,
    /// The longest a run may run, in seconds (the task's maximum run time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// The container directory whose files become the run's artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_dir: Option<String>,
}

impl OperationSpec {
    /// Check an operation document; every broken rule is named.
    pub fn check(&self) -> Result<(), Vec<FieldError>> {
        let mut errs = Vec::new();
        if let Err(m) = check_name(&self.name) {
            errs.push(FieldError::at("name", m));
        }
        if self.image.trim().is_empty() {
            errs.push(FieldError::at("image", "must name a container image"));
        }
        if self.command.is_empty() {
            errs.push(FieldError::at("command", "must have at least one element"));
        }
        crate::params::check_declared(&self.parameters, &mut errs);
        for (i, arg) in self.command.iter().enumerate() {
            let field = format!("command[{i}]");
            crate::params::check_placeholders(&self.parameters, &field, arg, &mut errs);
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                errs.push(FieldError::at(
                    format!("env.{k}"),
                    "is not an environment variable name",
                ));
            }
            crate::params::check_placeholders(&self.parameters, &format!("env.{k}"), v, &mut errs);
        }
        if let Some(dir) = &self.output_dir
            && (!dir.starts_with('/') || dir == "/")
        {
            errs.push(FieldError::at(
                "output_dir",
                "must be an absolute directory other than /",
            ));
        }
        if self.timeout_seconds == Some(0) {
            errs.push(FieldError::at("timeout_seconds", "must be positive"));
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }

    /// The declared parameters as one JSON Schema (draft 2020-12) for a run's `params`.
    pub fn parameters_schema(&self) -> Value {
        crate::params::schema(&self.parameters)
    }

    /// A run's values checked against the declared parameters, defaults filled in.
    /// Every bad value is named (`params.NAME`).
    pub fn resolve(&self, given: &Map<String, Value>) -> Result<Resolved, Vec<FieldError>> {
        crate::params::resolve(&self.parameters, given, "operation")
    }
}

/// The name of an operation, agent, config, secret or cron task: a name by the identity
/// rule ([`crate::identity::check_name`]) of at most 63 characters, so that it fits a
/// Kubernetes label value.
pub fn check_name(name: &str) -> Result<(), String> {
    crate::identity::check_name(name)?;
    if name.len() > MAX_NAME_CHARS {
        return Err(format!(
            "{name:?} is longer than {MAX_NAME_CHARS} characters"
        ));
    }
    Ok(())
}

/// [`check_name`] as a pattern, for the OpenAPI document.
pub const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9._-]{0,62}$";

/// A dataset a run reads: object `key` of `bucket`, placed at `path` in the container
/// (default `/inputs/KEY`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DatasetInput {
    pub bucket: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl DatasetInput {
    pub fn container_path(&self) -> String {
        self.path
            .clone()
            .unwrap_or_else(|| format!("{DEFAULT_INPUT_DIR}/{}", self.key))
    }

    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// What a run asks for (`POST /v1/operations/{id}/runs`), as stored with it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(examples(crate::examples::run_request)))]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Parameter values by name.
    #[serde(default, alias = "parameters")]
    pub params: Map<String, Value>,
    /// Environment overrides (over the operation's defaults).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<DatasetInput>,
    /// Higher runs first (within [`PRIORITY_RANGE`]); FIFO among equals.
    #[serde(default)]
    pub priority: i32,
    /// Where the run's summary is POSTed when it ends.
    #[serde(
        default,
        alias = "responseURL",
        alias = "notificationURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub response_url: Option<String>,
    /// Labels (tags of the task).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The operation version to run; the latest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

/// Overrides of a rerun: each given field replaces the original's (`params` and `env`
/// are merged over the original's, key by key).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RerunRequest {
    #[serde(default, alias = "parameters")]
    pub params: Map<String, Value>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub inputs: Option<Vec<DatasetInput>>,
    #[serde(default)]
    pub priority: Option<i32>,
    #[serde(default, alias = "responseURL", alias = "notificationURL")]
    pub response_url: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Run another version of the operation than the original ran.
    #[serde(default)]
    pub version: Option<i64>,
}

impl RunRequest {
    /// The request of a rerun of this one.
    pub fn rerun(&self, o: RerunRequest) -> RunRequest {
        let mut r = self.clone();
        r.params.extend(o.params);
        r.env.extend(o.env);
        if let Some(inputs) = o.inputs {
            r.inputs = inputs;
        }
        if let Some(p) = o.priority {
            r.priority = p;
        }
        if o.response_url.is_some() {
            r.response_url = o.response_url;
        }
        r.labels.extend(o.labels);
        if o.version.is_some() {
            r.version = o.version;
        }
        r
    }

    /// Rules of the request itself (the parameter values are checked by
    /// [`OperationSpec::resolve`]).
    pub fn check(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if !PRIORITY_RANGE.contains(&self.priority) {
            errs.push(FieldError {
                field: "priority".into(),
                message: format!(
                    "must be within {}..={}",
                    PRIORITY_RANGE.start(),
                    PRIORITY_RANGE.end()
                ),
            });
        }
        if let Some(url) = &self.response_url {
            let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
            if !matches!(scheme.as_deref(), Some("http" | "https")) {
                errs.push(FieldError {
                    field: "response_url".into(),
                    message: "must be an http:// or https:// URL".into(),
                });
            }
        }
        for (i, input) in self.inputs.iter().enumerate() {
            if let Err(e) = crate::objects::check_bucket(&input.bucket) {
                errs.push(FieldError {
                    field: format!("inputs[{i}].bucket"),
                    message: e.0,
                });
            }
            if let Err(e) = crate::objects::check_key(&input.key) {
                errs.push(FieldError {
                    field: format!("inputs[{i}].key"),
                    message: e.0,
                });
            }
        }
        check_labels(&self.labels, &mut errs);
        errs
    }
}

/// Labels a user gives (they become task tags): keys with [`LABEL_PREFIX`] are the
/// server's, and a key must not be empty.
pub fn check_labels(labels: &BTreeMap<String, String>, errs: &mut Vec<FieldError>) {
    for k in labels.keys() {
        if k.is_empty() {
            errs.push(FieldError::at("labels", "a label key must not be empty"));
        } else if k.starts_with(LABEL_PREFIX) {
            errs.push(FieldError::at(
                format!("labels.{k}"),
                format!("keys beginning {LABEL_PREFIX:?} are set by the server"),
            ));
        }
    }
}

/// Tags the server sets on a run's task (users may not set keys with this prefix).
pub const LABEL_PREFIX: &str = "tessera.";
/// The tag naming the operation a run's task ran.
pub const OPERATION_TAG: &str = "tessera.operation";
/// The tag with the operation version.
pub const OPERATION_VERSION_TAG: &str = "tessera.operation-version";

/// The task a run is: the operation version's image and command with the values in
/// place, the env merged, datasets as inputs, the output directory as an output to
/// `artifacts_url` (a prefix URL ending in `/`).
pub fn run_task(
    op: &OperationSpec,
    version: i64,
    req: &RunRequest,
    values: &Resolved,
    artifacts_url: &str,
) -> tes::Task {
    let mut env: BTreeMap<String, String> = op
        .env
        .iter()
        .map(|(k, v)| (k.clone(), values.render(v)))
        .collect();
    env.extend(req.env.clone());
    let executor = tes::Executor {
        image: op.image.clone(),
        command: op.command.iter().map(|a| values.render(a)).collect(),
        workdir: op.workdir.clone(),
        env: (!env.is_empty()).then(|| env.into_iter().collect()),
        ..tes::Executor::default()
    };
    let inputs: Vec<tes::Input> = req
        .inputs
        .iter()
        .map(|i| tes::Input {
            name: Some(i.key.clone()),
            url: Some(i.url()),
            path: i.container_path(),
            r#type: Some(tes::FileType::File),
            ..tes::Input::default()
        })
        .collect();
    let outputs: Vec<tes::Output> = op
        .output_dir
        .iter()
        .map(|dir| tes::Output {
            name: Some("artifacts".into()),
            url: artifacts_url.to_string(),
            path: dir.clone(),
            r#type: Some(tes::FileType::Directory),
            ..tes::Output::default()
        })
        .collect();
    let resources = match op.timeout_seconds {
        Some(t) => Some(
            op.resources
                .clone()
                .unwrap_or_default()
                .with_max_run_time(t),
        ),
        None => op.resources.clone(),
    };
    let mut tags: BTreeMap<String, String> = req.labels.clone();
    tags.insert(OPERATION_TAG.into(), op.name.clone());
    tags.insert(OPERATION_VERSION_TAG.into(), version.to_string());
    tes::Task {
        name: Some(op.name.clone()),
        description: op.description.clone(),
        executors: Some(vec![executor]),
        inputs: (!inputs.is_empty()).then_some(inputs),
        outputs: (!outputs.is_empty()).then_some(outputs),
        resources,
        tags: Some(tags.into_iter().collect()),
        ..tes::Task::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op() -> OperationSpec {
        serde_json::from_value(json!({
            "name": "train",
            "image": "busybox",
            "command": ["sh", "-c", "echo {{lr}} {{ epochs }} {{mode}} > /out/x"],
            "parameters": [
                {"name": "lr", "type": "number", "minimum": 0, "maximum": 1},
                {"name": "epochs", "type": "integer", "default": 3},
                {"name": "mode", "type": "string", "enum": ["fast", "slow"], "required": false},
            ],
            "env": {"LR": "{{lr}}"},
            "output_dir": "/out",
        }))
        .unwrap()
    }

    #[test]
    fn a_good_operation_passes_and_describes_its_parameters() {
        let op = op();
        op.check().unwrap();
        let schema = op.parameters_schema();
        assert_eq!(schema["required"], json!(["lr"]));
        assert_eq!(
            schema["properties"]["mode"]["enum"],
            json!(["fast", "slow"])
        );
        assert_eq!(schema["properties"]["epochs"]["default"], json!(3));
    }

    #[test]
    fn an_operation_with_broken_rules_names_each() {
        let mut op = op();
        op.name = "Bad Name".into();
        op.command.push("{{nope}}".into());
        op.parameters[1].default = Some(json!("three"));
        op.output_dir = Some("out".into());
        let errs = op.check().unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["name", "parameters[1].default", "command[3]", "output_dir"],
            "{errs:?}"
        );
    }

    #[test]
    fn values_are_checked_by_type_bounds_and_enum_and_each_bad_one_is_named() {
        let op = op();
        let given = json!({"lr": 2.5, "epochs": "x", "mode": "medium", "extra": 1});
        let errs = op.resolve(given.as_object().unwrap()).unwrap_err();
        let mut fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        fields.sort();
        assert_eq!(
            fields,
            ["params.epochs", "params.extra", "params.lr", "params.mode"]
        );
        let missing = op.resolve(&Map::new()).unwrap_err();
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].field, "params.lr");
        // 3.0 is a number, not an integer.
        let errs = op
            .resolve(json!({"lr": 0.5, "epochs": 3.5}).as_object().unwrap())
            .unwrap_err();
        assert_eq!(errs[0].field, "params.epochs");
    }

    #[test]
    fn the_run_task_has_values_in_place_and_the_output_dir_as_artifacts() {
        let op = op();
        let values = op
            .resolve(json!({"lr": 0.25}).as_object().unwrap())
            .unwrap();
        let req = RunRequest {
            env: [("EXTRA".to_string(), "1".to_string())].into(),
            inputs: vec![DatasetInput {
                bucket: "team".into(),
                key: "data/a.csv".into(),
                path: None,
            }],
            ..RunRequest::default()
        };
        let task = run_task(&op, 2, &req, &values, "s3://team/runs/r1/");
        let ex = &task.executors.as_ref().unwrap()[0];
        assert_eq!(ex.command[2], "echo 0.25 3  > /out/x");
        let env = ex.env.as_ref().unwrap();
        assert_eq!(env.get("LR").map(String::as_str), Some("0.25"));
        assert_eq!(env.get("EXTRA").map(String::as_str), Some("1"));
        let input = &task.inputs.as_ref().unwrap()[0];
        assert_eq!(input.url.as_deref(), Some("s3://team/data/a.csv"));
        assert_eq!(input.path, "/inputs/data/a.csv");
        let out = &task.outputs.as_ref().unwrap()[0];
        assert_eq!(
            (out.path.as_str(), out.url.as_str()),
            ("/out", "s3://team/runs/r1/")
        );
        let tags = task.tags.as_ref().unwrap();
        assert_eq!(
            tags.get(OPERATION_VERSION_TAG).map(String::as_str),
            Some("2")
        );
    }

    #[test]
    fn a_rerun_merges_its_overrides_over_the_original() {
        let orig = RunRequest {
            params: json!({"lr": 0.1, "epochs": 2}).as_object().unwrap().clone(),
            priority: 5,
            ..RunRequest::default()
        };
        let re = orig.rerun(RerunRequest {
            params: json!({"lr": 0.2}).as_object().unwrap().clone(),
            ..RerunRequest::default()
        });
        assert_eq!(re.params["lr"], json!(0.2));
        assert_eq!(re.params["epochs"], json!(2));
        assert_eq!(re.priority, 5);
    }
}
