//! The Task API's KubeTask half: agents (how to run: image, command, default contexts,
//! credentials, labels, placement, human in the loop, a concurrency limit) and
//! contextual tasks (an agent plus contexts: text or stored config entries placed as
//! files, or a whole config as a directory). Pure: checking documents, resolving
//! contexts into files, and building the one internal task.
//!
//! Secrets never enter a task document: a task carries references (`TaskExtra`), which
//! the runner resolves when it starts the task.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::task::{SecretEnv, SecretFile, TaskExtra};
use crate::tes;

/// Where an agent's command runs, and where relative context paths go.
pub const DEFAULT_WORKDIR: &str = "/workspace";
/// How long a human-in-the-loop container is kept after the command ends.
pub const DEFAULT_KEEP_ALIVE_SECS: u64 = 3600;
/// The longest keep-alive.
pub const MAX_KEEP_ALIVE_SECS: u64 = 7 * 24 * 3600;
/// The agent that serves tasks naming none.
pub const DEFAULT_AGENT: &str = "default";
/// The tag naming a task's agent.
pub const AGENT_TAG: &str = "tessera.agent";

/// One context: text, one entry of a stored config, or a whole config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// Inline text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A stored config (`/v1/configs`) of the task's group.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "configRef")]
    pub config: Option<String>,
    /// One entry of `config` (placed at `file_path`); absent: every entry, placed in
    /// `dir_path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Where the text or entry goes (relative: under the workdir).
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "filePath")]
    pub file_path: Option<String>,
    /// Where a whole config goes, one file per entry.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "dirPath")]
    pub dir_path: Option<String>,
}

/// A secret given to an agent's tasks: one entry as an environment variable, or as a
/// file with a private mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// A stored secret (`/v1/secrets`) of the task's group.
    pub secret: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "filePath")]
    pub file_path: Option<String>,
    /// The file's mode, `0400` (default) or `0600`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// Keep the container after the command ends, for a person to look inside
/// (`tessera task exec`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HumanInTheLoop {
    #[serde(default = "default_keep_alive", alias = "keepAliveSeconds")]
    pub keep_alive_seconds: u64,
}

fn default_keep_alive() -> u64 {
    DEFAULT_KEEP_ALIVE_SECS
}

/// An agent as submitted and stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(examples(crate::examples::agent)))]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$"))]
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub image: String,
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Placed before each task's own contexts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contexts: Vec<Context>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<Credential>,
    /// Labels every task of the agent gets (tags).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Tags for the router (with the keys the server routes on, `--route-tag-key`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub placement: BTreeMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "humanInTheLoop"
    )]
    pub human_in_the_loop: Option<HumanInTheLoop>,
    /// At most this many of the agent's tasks run at once.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "maxConcurrentTasks"
    )]
    pub max_concurrent_tasks: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<tes::Resources>,
    /// Where the agent's tasks run when they go to a Kubernetes target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesPod>,
}

/// An agent's pods on Kubernetes targets (ignored on Docker).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KubernetesPod {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "serviceAccount"
    )]
    pub service_account: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        alias = "nodeSelector"
    )]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<KubernetesToleration>,
    /// Labels on the pods (beside Tessera's own).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        alias = "podLabels"
    )]
    pub pod_labels: BTreeMap<String, String>,
}

/// A Kubernetes toleration (core/v1 Toleration without tolerationSeconds).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KubernetesToleration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `Exists` or `Equal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
}

/// A contextual task as submitted (`POST /v1/tasks`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(examples(crate::examples::task_request)))]
#[serde(deny_unknown_fields)]
pub struct TaskRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The agent; [`DEFAULT_AGENT`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "agentRef")]
    pub agent_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contexts: Vec<Context>,
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

fn err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// A path for the container: absolute as given, relative under `workdir`; `None` when
/// it could leave the tree (`..`) or is empty.
pub fn container_path(workdir: &str, p: &str) -> Option<String> {
    if p.is_empty() || p.split('/').any(|s| s == "..") || p.contains('\0') {
        return None;
    }
    let full = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{}/{p}", workdir.trim_end_matches('/'))
    };
    (full != "/").then_some(full)
}

/// Parse a file mode (`0400` or `0600`; default `0400`).
pub fn file_mode(m: Option<&str>) -> Result<u32, String> {
    match m.map(str::trim) {
        None | Some("0400" | "400") => Ok(0o400),
        Some("0600" | "600") => Ok(0o600),
        Some(other) => Err(format!("mode {other:?} is not 0400 or 0600")),
    }
}

impl AgentSpec {
    pub fn workdir(&self) -> &str {
        self.workdir.as_deref().unwrap_or(DEFAULT_WORKDIR)
    }

    /// Check an agent document; every broken rule is named.
    pub fn check(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if let Err(m) = crate::operation::check_name(&self.name) {
            errs.push(err("name", m));
        }
        if self.image.trim().is_empty() {
            errs.push(err("image", "must name a container image"));
        }
        if self.command.is_empty() {
            errs.push(err("command", "must have at least one element"));
        }
        if !self.workdir().starts_with('/') {
            errs.push(err("workdir", "must be an absolute path"));
        }
        for (i, c) in self.contexts.iter().enumerate() {
            errs.extend(check_context(self.workdir(), &format!("contexts[{i}]"), c));
        }
        for (i, c) in self.credentials.iter().enumerate() {
            let at = |f: &str| format!("credentials[{i}].{f}");
            match (&c.env, &c.file_path) {
                (Some(_), Some(_)) | (None, None) => errs.push(err(
                    format!("credentials[{i}]"),
                    "give exactly one of env and file_path",
                )),
                (Some(e), None) if e.is_empty() || e.contains(['=', '\0']) => {
                    errs.push(err(at("env"), "is not an environment variable name"))
                }
                (None, Some(p)) if container_path(self.workdir(), p).is_none() => {
                    errs.push(err(at("file_path"), "is not a path in the container"))
                }
                _ => {}
            }
            if let Err(m) = file_mode(c.mode.as_deref()) {
                errs.push(err(at("mode"), m));
            }
        }
        if let Some(h) = &self.human_in_the_loop
            && !(1..=MAX_KEEP_ALIVE_SECS).contains(&h.keep_alive_seconds)
        {
            errs.push(err(
                "human_in_the_loop.keep_alive_seconds",
                format!("must be 1 to {MAX_KEEP_ALIVE_SECS}"),
            ));
        }
        if self.max_concurrent_tasks == Some(0) {
            errs.push(err("max_concurrent_tasks", "must be at least 1"));
        }
        for k in self.labels.keys().chain(self.placement.keys()) {
            if k.starts_with(crate::operation::LABEL_PREFIX) {
                errs.push(err(
                    format!("labels.{k}"),
                    "keys beginning \"tessera.\" are set by the server",
                ));
            }
        }
        errs
    }
}

fn check_context(workdir: &str, at: &str, c: &Context) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let path_ok = |p: &Option<String>| p.as_deref().and_then(|p| container_path(workdir, p));
    match (&c.text, &c.config, &c.key, &c.file_path, &c.dir_path) {
        (Some(_), None, None, Some(_), None) | (None, Some(_), Some(_), Some(_), None) => {
            if path_ok(&c.file_path).is_none() {
                errs.push(err(
                    format!("{at}.file_path"),
                    "is not a path in the container",
                ));
            }
        }
        (None, Some(_), None, None, Some(_)) => {
            if path_ok(&c.dir_path).is_none() {
                errs.push(err(
                    format!("{at}.dir_path"),
                    "is not a path in the container",
                ));
            }
        }
        _ => errs.push(err(
            at,
            "a context is text with file_path, a config entry (config, key) with file_path, \
             or a whole config with dir_path",
        )),
    }
    errs
}

impl TaskRequest {
    pub fn agent(&self) -> &str {
        self.agent_ref.as_deref().unwrap_or(DEFAULT_AGENT)
    }

    /// Rules of the request itself, given its agent's workdir.
    pub fn check(&self, workdir: &str) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for (i, c) in self.contexts.iter().enumerate() {
            errs.extend(check_context(workdir, &format!("contexts[{i}]"), c));
        }
        if self.command.as_ref().is_some_and(Vec::is_empty) {
            errs.push(err("command", "must have at least one element"));
        }
        if !crate::operation::PRIORITY_RANGE.contains(&self.priority) {
            errs.push(err("priority", "must be within -1000..=1000"));
        }
        for k in self.labels.keys() {
            if k.starts_with(crate::operation::LABEL_PREFIX) {
                errs.push(err(
                    format!("labels.{k}"),
                    "keys beginning \"tessera.\" are set by the server",
                ));
            }
        }
        errs
    }
}

/// The files the contexts make, in order (the agent's first): `(container path,
/// content)`, contexts for the same path concatenated. `config` looks a stored config up
/// by name (its entries); `field` names each context in errors.
pub fn resolve_contexts<'a>(
    workdir: &str,
    contexts: impl IntoIterator<Item = (String, &'a Context)>,
    config: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
) -> Result<Vec<(String, String)>, Vec<FieldError>> {
    let mut files: Vec<(String, String)> = Vec::new();
    let mut errs = Vec::new();
    let mut add = |path: String, content: &str| match files.iter_mut().find(|(p, _)| *p == path) {
        Some((_, c)) => c.push_str(content),
        None => files.push((path, content.to_string())),
    };
    for (field, c) in contexts {
        let path = |p: &Option<String>| p.as_deref().and_then(|p| container_path(workdir, p));
        if let Some(text) = &c.text {
            if let Some(p) = path(&c.file_path) {
                add(p, text);
            }
            continue;
        }
        let Some(name) = &c.config else { continue };
        let Some(entries) = config(name) else {
            errs.push(err(
                format!("{field}.config"),
                format!("there is no config {name:?} in the task's group"),
            ));
            continue;
        };
        match (&c.key, path(&c.file_path), path(&c.dir_path)) {
            (Some(key), Some(p), _) => match entries.get(key) {
                Some(v) => add(p, v),
                None => errs.push(err(
                    format!("{field}.key"),
                    format!("config {name:?} has no entry {key:?}"),
                )),
            },
            (None, _, Some(dir)) => {
                for (k, v) in &entries {
                    add(format!("{}/{k}", dir.trim_end_matches('/')), v);
                }
            }
            _ => {}
        }
    }
    if errs.is_empty() {
        Ok(files)
    } else {
        Err(errs)
    }
}

/// The task a contextual task is: the agent's image and command (or the task's), its
/// env, the context files as inputs, the workdir as a volume, labels and placement as
/// tags; the agent's credentials and keep-alive as references the runner resolves.
pub fn agent_task(
    agent: &AgentSpec,
    req: &TaskRequest,
    files: Vec<(String, String)>,
) -> Result<(tes::Task, TaskExtra), Vec<FieldError>> {
    let workdir = agent.workdir().to_string();
    let mut env = agent.env.clone();
    env.extend(req.env.clone());
    let executor = tes::Executor {
        image: agent.image.clone(),
        command: req.command.clone().unwrap_or_else(|| agent.command.clone()),
        workdir: Some(workdir.clone()),
        env: (!env.is_empty()).then(|| env.into_iter().collect()),
        ..tes::Executor::default()
    };
    let inputs: Vec<tes::Input> = files
        .into_iter()
        .map(|(path, content)| tes::Input {
            path,
            content: Some(content),
            r#type: Some(tes::FileType::File),
            ..tes::Input::default()
        })
        .collect();
    let mut tags: BTreeMap<String, String> = agent.labels.clone();
    tags.extend(agent.placement.clone());
    tags.extend(req.labels.clone());
    tags.insert(AGENT_TAG.into(), agent.name.clone());
    let mut extra = TaskExtra {
        agent: Some(agent.name.clone()),
        keep_alive_secs: agent
            .human_in_the_loop
            .as_ref()
            .map(|h| h.keep_alive_seconds),
        ..TaskExtra::default()
    };
    let mut errs = Vec::new();
    for (i, c) in agent.credentials.iter().enumerate() {
        if let Some(var) = &c.env {
            extra.secret_env.push(SecretEnv {
                name: var.clone(),
                secret: c.secret.clone(),
                key: c.key.clone(),
            });
        } else if let Some(p) = c.file_path.as_deref() {
            match (container_path(&workdir, p), file_mode(c.mode.as_deref())) {
                (Some(path), Ok(mode)) => extra.secret_files.push(SecretFile {
                    path,
                    secret: c.secret.clone(),
                    key: c.key.clone(),
                    mode,
                }),
                _ => errs.push(err(format!("agent.credentials[{i}]"), "is not valid")),
            }
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let task = tes::Task {
        name: req.name.clone(),
        executors: Some(vec![executor]),
        inputs: (!inputs.is_empty()).then_some(inputs),
        volumes: Some(vec![workdir]),
        resources: agent.resources.clone(),
        tags: Some(tags.into_iter().collect()),
        ..tes::Task::default()
    };
    Ok((task, extra))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn agent() -> AgentSpec {
        serde_json::from_value(json!({
            "name": "coder",
            "image": "busybox",
            "command": ["sh", "-c", "cat task.md"],
            "contexts": [{"text": "agent says hi\n", "filePath": "task.md"}],
            "credentials": [
                {"secret": "api", "key": "token", "env": "API_TOKEN"},
                {"secret": "api", "key": "cert", "file_path": "/etc/creds/cert", "mode": "0600"},
            ],
            "humanInTheLoop": {},
        }))
        .unwrap()
    }

    #[test]
    fn contexts_become_files_in_order_with_shared_paths_concatenated() {
        let a = agent();
        assert!(a.check().is_empty(), "{:?}", a.check());
        let req: TaskRequest = serde_json::from_value(json!({
            "agentRef": "coder",
            "contexts": [
                {"text": "task says hi\n", "filePath": "task.md"},
                {"config": "cfg", "key": "a", "file_path": "/etc/a.conf"},
                {"config": "cfg", "dirPath": "conf"},
            ],
        }))
        .unwrap();
        assert!(req.check(a.workdir()).is_empty());
        let cfg = |name: &str| {
            (name == "cfg").then(|| {
                [
                    ("a".to_string(), "A".to_string()),
                    ("b".to_string(), "B".to_string()),
                ]
                .into()
            })
        };
        let all = a
            .contexts
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("agent.contexts[{i}]"), c))
            .chain(
                req.contexts
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (format!("contexts[{i}]"), c)),
            );
        let files = resolve_contexts(a.workdir(), all, &cfg).unwrap();
        assert_eq!(
            files,
            [
                (
                    "/workspace/task.md".to_string(),
                    "agent says hi\ntask says hi\n".to_string()
                ),
                ("/etc/a.conf".into(), "A".into()),
                ("/workspace/conf/a".into(), "A".into()),
                ("/workspace/conf/b".into(), "B".into()),
            ]
        );
        let (task, extra) = agent_task(&a, &req, files).unwrap();
        assert_eq!(task.volumes, Some(vec!["/workspace".to_string()]));
        assert_eq!(task.inputs.as_ref().unwrap().len(), 4);
        assert_eq!(extra.keep_alive_secs, Some(DEFAULT_KEEP_ALIVE_SECS));
        assert_eq!(extra.secret_env[0].name, "API_TOKEN");
        assert_eq!(extra.secret_files[0].mode, 0o600);
        // No secret value is in the task.
        assert!(!serde_json::to_string(&task).unwrap().contains("token"));
    }

    #[test]
    fn broken_contexts_and_credentials_are_named() {
        let mut a = agent();
        a.credentials[0].file_path = Some("/x".into());
        a.credentials[1].mode = Some("0777".into());
        a.contexts.push(Context {
            text: Some("x".into()),
            config: None,
            key: None,
            file_path: Some("../escape".into()),
            dir_path: None,
        });
        let fields: Vec<String> = a.check().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "contexts[1].file_path",
                "credentials[0]",
                "credentials[1].mode"
            ]
        );
        let missing = resolve_contexts(
            "/w",
            [(
                "contexts[0]".to_string(),
                &Context {
                    text: None,
                    config: Some("nope".into()),
                    key: None,
                    file_path: None,
                    dir_path: Some("d".into()),
                },
            )],
            &|_| None,
        )
        .unwrap_err();
        assert_eq!(missing[0].field, "contexts[0].config");
    }
}
