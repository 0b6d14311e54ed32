//! Validation of submitted TES tasks: every rule a task must meet before it is stored.
//!
//! All problems are collected, not just the first, each with the JSON path of the field,
//! so a client can fix a document in one round trip.

use crate::error::FieldError;
use crate::tes::{FileType, Task};
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// The size limits of a TES task document, checked before anything is stored (a
/// violation is a 400 naming the field). Generous for real tasks; they bound what one
/// request can make the server hold, and keep indexed fields (the name and tags, in
/// PostgreSQL B-tree entries of at most ~2.7 KB) storable. Inline input `content` is
/// bounded by [`Policy::max_content_bytes`], the whole body by the server's body cap.
pub mod limits {
    pub const NAME_BYTES: usize = 2048;
    pub const DESCRIPTION_BYTES: usize = 64 << 10;
    pub const EXECUTORS: usize = 64;
    pub const IMAGE_BYTES: usize = 4096;
    pub const COMMAND_ARGS: usize = 4096;
    /// All arguments of one command together.
    pub const COMMAND_BYTES: usize = 1 << 20;
    /// Container paths (workdir, stdin, stdout, stderr, input, output and volume paths).
    pub const PATH_BYTES: usize = 4096;
    pub const ENV_VARS: usize = 1024;
    pub const ENV_NAME_BYTES: usize = 1024;
    /// All names and values of one executor's environment together.
    pub const ENV_BYTES: usize = 1 << 20;
    pub const INPUTS: usize = 10_000;
    pub const OUTPUTS: usize = 10_000;
    pub const URL_BYTES: usize = 8192;
    /// Names of inputs and outputs.
    pub const FILE_NAME_BYTES: usize = 4096;
    pub const VOLUMES: usize = 256;
    pub const TAGS: usize = 256;
    pub const TAG_KEY_BYTES: usize = 256;
    pub const TAG_VALUE_BYTES: usize = 2048;
    pub const ZONES: usize = 64;
    pub const ZONE_BYTES: usize = 256;
    pub const BACKEND_PARAMETERS: usize = 64;
    pub const BACKEND_PARAMETER_KEY_BYTES: usize = 256;
    pub const BACKEND_PARAMETER_VALUE_BYTES: usize = 4096;
}

/// What this server supports, from configuration.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Host directories that `file://` inputs may be read from and outputs written to.
    /// Lexically normalised absolute paths. Empty: `file://` is refused.
    pub file_roots: Vec<PathBuf>,
    /// backend_parameters keys this server honours (lower case).
    pub backend_parameters: Vec<String>,
    /// Allowed values per honoured key (lower-case key); a key not listed takes any value.
    pub backend_parameter_values: Vec<(String, Vec<String>)>,
    /// Largest inline input `content`, in bytes.
    pub max_content_bytes: usize,
    /// The largest cpu_cores / ram_gb a task may ask for, when known.
    pub max_cpu_cores: Option<i32>,
    pub max_ram_gb: Option<f64>,
    /// URL schemes (lower case, e.g. `s3`, `https`) with a filer plugin bound.
    pub filer_schemes: Vec<String>,
    /// The longest run time a task may ask for with backend parameter `max_run_time`.
    pub max_run_time_cap: Option<std::time::Duration>,
}

/// The storage URL prefixes a policy supports, as service-info lists them.
pub fn storage_prefixes(policy: &Policy) -> Vec<String> {
    policy
        .file_roots
        .iter()
        .map(|r| format!("file://{}", r.display()))
        .chain(policy.filer_schemes.iter().map(|s| format!("{s}://")))
        .collect()
}

/// A task that passed validation, plus warnings to record in its system logs.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    pub spec: Task,
    pub warnings: Vec<String>,
}

pub fn validate(mut task: Task, policy: &Policy) -> Result<Validated, Vec<FieldError>> {
    let mut errs = Errors::default();
    let mut warnings = Vec::new();

    // Read-only fields are the server's to set.
    task.id = None;
    task.state = None;
    task.logs = None;
    task.creation_time = None;

    check_sizes(&task, &mut errs);

    match task.executors.as_deref() {
        None => errs.push(
            "executors",
            "is required: a task needs at least one executor",
        ),
        Some([]) => errs.push("executors", "must contain at least one executor"),
        Some(execs) => {
            for (i, e) in execs.iter().enumerate() {
                let at = |f: &str| format!("executors[{i}].{f}");
                if e.image.trim().is_empty() {
                    errs.push(at("image"), "is required: name the container image to run");
                } else if e.image.chars().any(|c| c.is_whitespace() || c == '\0') {
                    errs.push(at("image"), "must not contain whitespace");
                }
                if e.command.is_empty() {
                    errs.push(
                        at("command"),
                        "is required: give the program and its arguments",
                    );
                } else if e.command[0].is_empty() {
                    errs.push(at("command[0]"), "must name the program to run");
                }
                if e.command.iter().any(|a| a.contains('\0')) {
                    errs.push(at("command"), "must not contain NUL bytes");
                }
                for (field, value) in [
                    ("workdir", &e.workdir),
                    ("stdin", &e.stdin),
                    ("stdout", &e.stdout),
                    ("stderr", &e.stderr),
                ] {
                    if let Some(p) = value
                        && let Err(m) = check_container_path(p)
                    {
                        errs.push(at(field), m);
                    }
                }
                for key in e.env.iter().flat_map(|m| m.keys()) {
                    if key.is_empty() || key.contains('=') || key.contains('\0') {
                        errs.push(
                            at("env"),
                            format!("variable name {key:?} must be non-empty without '=' or NUL"),
                        );
                    }
                }
                if e.env
                    .iter()
                    .flat_map(|m| m.values())
                    .any(|v| v.contains('\0'))
                {
                    errs.push(at("env"), "values must not contain NUL bytes");
                }
            }
        }
    }

    let mut seen_paths = BTreeSet::new();
    for (i, input) in task.inputs.iter().flatten().enumerate() {
        let at = |f: &str| format!("inputs[{i}].{f}");
        if let Err(m) = check_container_path(&input.path) {
            errs.push(at("path"), m);
        } else if !seen_paths.insert(normalise(&input.path)) {
            errs.push(
                at("path"),
                format!("{:?} is used by another input", input.path),
            );
        }
        match (&input.content, &input.url) {
            (Some(c), _) if !c.is_empty() => {
                if input.r#type == Some(FileType::Directory) {
                    errs.push(at("content"), "inline content can only make a FILE input");
                }
                if c.len() > policy.max_content_bytes {
                    errs.push(
                        at("content"),
                        format!(
                            "is {} bytes; this server accepts at most {}",
                            c.len(),
                            policy.max_content_bytes
                        ),
                    );
                }
            }
            (_, Some(url)) if !url.is_empty() => {
                if let Err(m) = check_url(url, policy) {
                    errs.push(at("url"), m);
                }
            }
            _ => errs.push(at("url"), "an input needs a url or non-empty content"),
        }
    }

    for (i, output) in task.outputs.iter().flatten().enumerate() {
        let at = |f: &str| format!("outputs[{i}].{f}");
        if let Err(m) = check_container_path(&output.path) {
            errs.push(at("path"), m);
        }
        if output.url.is_empty() {
            errs.push(at("url"), "is required: say where the output goes");
        } else if let Err(m) = check_url(&output.url, policy) {
            errs.push(at("url"), m);
        }
        if has_wildcard(&output.path) && wildcard_base(&output.path) == "/" {
            // Collecting from / would copy the container's whole filesystem.
            errs.push(
                at("path"),
                "needs a directory before the first wildcard (e.g. /out/*.txt, not /*.txt)",
            );
        } else if has_wildcard(&output.path) {
            match &output.path_prefix {
                None => errs.push(
                    at("path_prefix"),
                    "is required when path contains wildcards (*, ?, [)",
                ),
                Some(prefix) => {
                    if let Err(m) = check_container_path(prefix) {
                        errs.push(at("path_prefix"), m);
                    } else if !output.path.starts_with(prefix.as_str()) {
                        errs.push(at("path_prefix"), "must be a prefix of path");
                    } else if has_wildcard(prefix) {
                        errs.push(at("path_prefix"), "must not contain wildcards");
                    }
                }
            }
        }
    }

    let mut seen_volumes = BTreeSet::new();
    for (i, v) in task.volumes.iter().flatten().enumerate() {
        if let Err(m) = check_container_path(v) {
            errs.push(format!("volumes[{i}]"), m);
        } else if !seen_volumes.insert(normalise(v)) {
            errs.push(format!("volumes[{i}]"), format!("{v:?} is listed twice"));
        }
    }

    for key in task.tags.iter().flat_map(|t| t.keys()) {
        if key.is_empty() {
            errs.push("tags", "tag keys must not be empty");
        }
    }

    if let Some(res) = task.resources.as_mut() {
        if let Some(c) = res.cpu_cores {
            if c < 0 {
                errs.push("resources.cpu_cores", "must not be negative");
            } else if let Some(max) = policy.max_cpu_cores.filter(|m| c > *m) {
                errs.push(
                    "resources.cpu_cores",
                    format!("asks for {c} cores; the largest this server can run is {max}"),
                );
            }
        }
        for (field, value) in [("ram_gb", res.ram_gb), ("disk_gb", res.disk_gb)] {
            if let Some(v) = value
                && (!v.is_finite() || v < 0.0)
            {
                errs.push(
                    format!("resources.{field}"),
                    "must be a non-negative number",
                );
            }
        }
        if let (Some(v), Some(max)) = (res.ram_gb, policy.max_ram_gb)
            && v.is_finite()
            && v > max
        {
            errs.push(
                "resources.ram_gb",
                format!("asks for {v} GB; the largest this server can run is {max:.1} GB"),
            );
        }
        let strict = res.backend_parameters_strict.unwrap_or(false);
        for (k, v) in res.backend_parameters.iter().flatten() {
            let key = k.to_ascii_lowercase();
            if key == crate::tes::backend_parameter::MAX_RUN_TIME
                && policy.backend_parameters.contains(&key)
            {
                let cap = policy.max_run_time_cap.map_or(u64::MAX, |c| c.as_secs());
                match v.trim().parse::<u64>() {
                    Ok(secs) if (1..=cap).contains(&secs) => {}
                    _ => errs.push(
                        format!("resources.backend_parameters.{k}"),
                        format!("{v:?} is not a run time this server allows: whole seconds from 1 to {cap}"),
                    ),
                }
            }
            if let Some((_, allowed)) = policy
                .backend_parameter_values
                .iter()
                .find(|(name, _)| *name == key)
                && !allowed.iter().any(|a| a.eq_ignore_ascii_case(v))
            {
                errs.push(
                    format!("resources.backend_parameters.{k}"),
                    format!("{v:?} is not allowed; use one of: {}", allowed.join(", ")),
                );
            }
        }
        if let Some(params) = res.backend_parameters.as_mut() {
            let unsupported: Vec<String> = params
                .keys()
                .filter(|k| !policy.backend_parameters.contains(&k.to_ascii_lowercase()))
                .cloned()
                .collect();
            if !unsupported.is_empty() {
                let supported = if policy.backend_parameters.is_empty() {
                    "none".to_string()
                } else {
                    policy.backend_parameters.join(", ")
                };
                if strict {
                    for k in &unsupported {
                        errs.push(
                            format!("resources.backend_parameters.{k}"),
                            format!(
                                "is not supported (backend_parameters_strict is true); supported keys: {supported}"
                            ),
                        );
                    }
                } else {
                    // The spec: log a warning, and neither store nor return unsupported keys.
                    for k in &unsupported {
                        params.remove(k);
                    }
                    warnings.push(format!(
                        "ignored unsupported backend_parameters: {}; supported keys: {supported}",
                        unsupported.join(", ")
                    ));
                }
            }
        }
    }

    // PostgreSQL text and jsonb cannot hold U+0000, and no field has a use for it: refuse it
    // anywhere in the document (fields checked above already named their own error).
    if errs.0.is_empty()
        && serde_json::to_string(&task).map_or(true, |json| json.contains("\\u0000"))
    {
        errs.push(
            "task",
            "must not contain NUL characters (\\u0000) in any field",
        );
    }

    if errs.0.is_empty() {
        Ok(Validated {
            spec: task,
            warnings,
        })
    } else {
        // Enough to fix a document by; a request cannot make the answer unbounded.
        let more = errs.0.len().saturating_sub(MAX_ERRORS);
        errs.0.truncate(MAX_ERRORS);
        if more > 0 {
            errs.push("task", format!("and {more} more problems"));
        }
        Err(errs.0)
    }
}

/// The most field errors one answer lists.
const MAX_ERRORS: usize = 100;

/// Every size limit of [`limits`], each violation named by its field path.
fn check_sizes(task: &Task, errs: &mut Errors) {
    use limits::*;
    let text = |errs: &mut Errors, field: &dyn Fn() -> String, v: &str, max: usize| {
        if v.len() > max {
            errs.push(
                field(),
                format!("is {} bytes; at most {max} are accepted", v.len()),
            );
        }
    };
    let count = |errs: &mut Errors, field: &str, n: usize, max: usize| {
        if n > max {
            errs.push(
                field,
                format!("has {n} entries; at most {max} are accepted"),
            );
        }
    };
    let opt = |v: &Option<String>| v.as_deref().unwrap_or("").to_string();
    text(errs, &|| "name".into(), &opt(&task.name), NAME_BYTES);
    text(
        errs,
        &|| "description".into(),
        &opt(&task.description),
        DESCRIPTION_BYTES,
    );
    let executors = task.executors.as_deref().unwrap_or(&[]);
    count(errs, "executors", executors.len(), EXECUTORS);
    for (i, e) in executors.iter().enumerate().take(EXECUTORS) {
        let at = |f: &str| format!("executors[{i}].{f}");
        text(errs, &|| at("image"), &e.image, IMAGE_BYTES);
        count(errs, &at("command"), e.command.len(), COMMAND_ARGS);
        let command_bytes: usize = e.command.iter().map(String::len).sum();
        if command_bytes > COMMAND_BYTES {
            errs.push(
                at("command"),
                format!("is {command_bytes} bytes in all; at most {COMMAND_BYTES} are accepted"),
            );
        }
        for (f, v) in [
            ("workdir", &e.workdir),
            ("stdin", &e.stdin),
            ("stdout", &e.stdout),
            ("stderr", &e.stderr),
        ] {
            text(errs, &|| at(f), &opt(v), PATH_BYTES);
        }
        let env = e.env.as_ref();
        count(errs, &at("env"), env.map_or(0, |m| m.len()), ENV_VARS);
        let env_bytes: usize = env
            .into_iter()
            .flatten()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        if env_bytes > ENV_BYTES {
            errs.push(
                at("env"),
                format!("is {env_bytes} bytes in all; at most {ENV_BYTES} are accepted"),
            );
        }
        for k in env.into_iter().flatten().map(|(k, _)| k) {
            if k.len() > ENV_NAME_BYTES {
                errs.push(
                    at("env"),
                    format!(
                        "a variable name is {} bytes; at most {ENV_NAME_BYTES} are accepted",
                        k.len()
                    ),
                );
                break;
            }
        }
    }
    let inputs = task.inputs.as_deref().unwrap_or(&[]);
    count(errs, "inputs", inputs.len(), INPUTS);
    for (i, input) in inputs.iter().enumerate().take(INPUTS) {
        let at = |f: &str| format!("inputs[{i}].{f}");
        text(errs, &|| at("name"), &opt(&input.name), FILE_NAME_BYTES);
        text(
            errs,
            &|| at("description"),
            &opt(&input.description),
            DESCRIPTION_BYTES,
        );
        text(errs, &|| at("url"), &opt(&input.url), URL_BYTES);
        text(errs, &|| at("path"), &input.path, PATH_BYTES);
    }
    let outputs = task.outputs.as_deref().unwrap_or(&[]);
    count(errs, "outputs", outputs.len(), OUTPUTS);
    for (i, output) in outputs.iter().enumerate().take(OUTPUTS) {
        let at = |f: &str| format!("outputs[{i}].{f}");
        text(errs, &|| at("name"), &opt(&output.name), FILE_NAME_BYTES);
        text(
            errs,
            &|| at("description"),
            &opt(&output.description),
            DESCRIPTION_BYTES,
        );
        text(errs, &|| at("url"), &output.url, URL_BYTES);
        text(errs, &|| at("path"), &output.path, PATH_BYTES);
        text(
            errs,
            &|| at("path_prefix"),
            &opt(&output.path_prefix),
            PATH_BYTES,
        );
    }
    let volumes = task.volumes.as_deref().unwrap_or(&[]);
    count(errs, "volumes", volumes.len(), VOLUMES);
    for (i, v) in volumes.iter().enumerate().take(VOLUMES) {
        text(errs, &|| format!("volumes[{i}]"), v, PATH_BYTES);
    }
    let tags = task.tags.as_ref();
    count(errs, "tags", tags.map_or(0, |t| t.len()), TAGS);
    for (k, v) in tags.into_iter().flatten().take(TAGS) {
        let key: String = k.chars().take(40).collect();
        text(errs, &|| format!("tags.{key}"), k, TAG_KEY_BYTES);
        text(errs, &|| format!("tags.{key}"), v, TAG_VALUE_BYTES);
    }
    if let Some(res) = &task.resources {
        let zones = res.zones.as_deref().unwrap_or(&[]);
        count(errs, "resources.zones", zones.len(), ZONES);
        for (i, z) in zones.iter().enumerate().take(ZONES) {
            text(errs, &|| format!("resources.zones[{i}]"), z, ZONE_BYTES);
        }
        let params = res.backend_parameters.as_ref();
        count(
            errs,
            "resources.backend_parameters",
            params.map_or(0, |p| p.len()),
            BACKEND_PARAMETERS,
        );
        for (k, v) in params.into_iter().flatten().take(BACKEND_PARAMETERS) {
            let key: String = k.chars().take(40).collect();
            let field = || format!("resources.backend_parameters.{key}");
            text(errs, &field, k, BACKEND_PARAMETER_KEY_BYTES);
            text(errs, &field, v, BACKEND_PARAMETER_VALUE_BYTES);
        }
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, field: impl Into<String>, message: impl std::fmt::Display) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.to_string(),
        });
    }
}

fn has_wildcard(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// The directory a wildcard path searches: its leading components without wildcards.
pub fn wildcard_base(p: &str) -> String {
    let normalised = normalise(p);
    let fixed: Vec<&str> = normalised
        .split('/')
        .filter(|c| !c.is_empty())
        .take_while(|c| !has_wildcard(c))
        .collect();
    format!("/{}", fixed.join("/"))
}

/// Why a container path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerPathError {
    #[error("is required: an absolute path inside the container")]
    Empty,
    #[error("must not contain NUL bytes")]
    Nul,
    #[error("{0:?} must be an absolute path")]
    Relative(String),
    #[error("{0:?} must not contain '..'")]
    DotDot(String),
    #[error("must not be the container's root directory")]
    Root,
}

/// A path inside the container: absolute, no `..`, not the root itself.
pub fn check_container_path(p: &str) -> Result<(), ContainerPathError> {
    if p.is_empty() {
        return Err(ContainerPathError::Empty);
    }
    if p.contains('\0') {
        return Err(ContainerPathError::Nul);
    }
    if !p.starts_with('/') {
        return Err(ContainerPathError::Relative(p.to_string()));
    }
    if Path::new(p).components().any(|c| c == Component::ParentDir) {
        return Err(ContainerPathError::DotDot(p.to_string()));
    }
    if normalise(p) == "/" {
        return Err(ContainerPathError::Root);
    }
    Ok(())
}

/// Lexical normalisation: collapse `//` and `.`; callers have rejected `..`.
pub fn normalise(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Why a `file://` URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileUrlError {
    #[error("{0:?}: file URLs must be file:///absolute/path")]
    NotLocal(String),
    #[error("{0:?} has a bad %-escape")]
    BadEscape(String),
    #[error("{0:?} must not contain NUL bytes")]
    Nul(String),
    #[error("{0:?} must not contain '..'")]
    DotDot(String),
}

/// The host path of a `file://` URL (or bare absolute path), if it is one.
/// `Ok(None)` for other schemes.
pub fn file_url_path(url: &str) -> Result<Option<PathBuf>, FileUrlError> {
    let rest = if let Some(rest) = url.strip_prefix("file://") {
        // Only local file URLs: file:///p or file://localhost/p.
        let rest = rest.strip_prefix("localhost").unwrap_or(rest);
        if !rest.starts_with('/') {
            return Err(FileUrlError::NotLocal(url.to_string()));
        }
        rest
    } else if url.starts_with('/') {
        url
    } else {
        return Ok(None);
    };
    let decoded = percent_decode(rest).ok_or_else(|| FileUrlError::BadEscape(url.to_string()))?;
    if decoded.contains('\0') {
        return Err(FileUrlError::Nul(url.to_string()));
    }
    if Path::new(&decoded)
        .components()
        .any(|c| c == Component::ParentDir)
    {
        return Err(FileUrlError::DotDot(url.to_string()));
    }
    Ok(Some(PathBuf::from(normalise(&decoded))))
}

/// Whether a normalised host path lies inside one of the allowed roots.
pub fn within_roots(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|r| path.starts_with(r))
}

/// Why an input's or output's URL is refused at submit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error(transparent)]
    FileUrl(#[from] FileUrlError),
    #[error("file:// URLs are not enabled on this server (no allowed directories are configured)")]
    FileNotEnabled,
    #[error("{path} is outside the directories this server allows: {roots}")]
    OutsideRoots { path: String, roots: String },
    #[error("{0:?} is not a valid URL")]
    Malformed(String),
    #[error(transparent)]
    ObjectName(#[from] crate::objects::NameError),
    #[error(
        "URL scheme {scheme:?} is not supported by this server; it serves {served}. \
         To serve another scheme, bind a filer plugin to it \
         (`tessera plugin activate NAME VERSION --scope SCHEME`, see docs/plugins.md)"
    )]
    NotServed { scheme: String, served: String },
}

fn check_url(url: &str, policy: &Policy) -> Result<(), UrlError> {
    match file_url_path(url)? {
        Some(path) => {
            if policy.file_roots.is_empty() {
                Err(UrlError::FileNotEnabled)
            } else if within_roots(&path, &policy.file_roots) {
                Ok(())
            } else {
                Err(UrlError::OutsideRoots {
                    path: path.display().to_string(),
                    roots: policy
                        .file_roots
                        .iter()
                        .map(|r| r.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        }
        None => {
            let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or(url);
            let lower = scheme.to_ascii_lowercase();
            if url.contains("://") && policy.filer_schemes.contains(&lower) {
                let rest = &url[scheme.len() + 3..];
                if rest.is_empty() || rest.chars().any(|c| c.is_control() || c == ' ') {
                    return Err(UrlError::Malformed(url.to_string()));
                }
                if lower == "s3" {
                    crate::objects::parse_s3_url(url)?;
                }
                return Ok(());
            }
            let mut served = storage_prefixes(policy);
            served.push("inline content".into());
            Err(UrlError::NotServed {
                scheme: scheme.to_string(),
                served: served.join(", "),
            })
        }
    }
}

/// `%XX` escapes decoded; `None` for a bad escape or bytes that are not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tes::{Executor, Input, Output, Resources};
    use proptest::prelude::*;

    fn policy() -> Policy {
        Policy {
            file_roots: vec![PathBuf::from("/srv/data")],
            backend_parameters: vec!["network".into(), "max_run_time".into()],
            backend_parameter_values: vec![(
                "network".into(),
                vec!["bridge".into(), "none".into()],
            )],
            max_content_bytes: 1 << 20,
            max_cpu_cores: Some(2),
            max_ram_gb: None,
            filer_schemes: vec!["s3".into()],
            max_run_time_cap: Some(std::time::Duration::from_secs(3600)),
        }
    }

    fn ok_task() -> Task {
        Task {
            executors: Some(vec![Executor {
                image: "busybox".into(),
                command: vec!["echo".into(), "hi".into()],
                ..Executor::default()
            }]),
            ..Task::default()
        }
    }

    fn fields(t: Task) -> Vec<String> {
        validate(t, &policy())
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn every_size_limit_is_an_error_naming_its_field() {
        use limits::*;
        let long = |n: usize| "x".repeat(n + 1);
        let mut t = ok_task();
        t.name = Some(long(NAME_BYTES));
        t.tags = Some([(long(TAG_KEY_BYTES), "v".to_string())].into());
        let e = &mut t.executors.as_mut().unwrap()[0];
        e.command = vec!["sh".into(); COMMAND_ARGS + 1];
        e.env = Some([("K".to_string(), long(ENV_BYTES))].into());
        t.inputs = Some(
            (0..=INPUTS)
                .map(|i| Input {
                    path: format!("/in/{i}"),
                    content: Some("x".into()),
                    ..Input::default()
                })
                .collect(),
        );
        t.volumes = Some(vec![format!("/{}", long(PATH_BYTES))]);
        let got = fields(t);
        let key: String = long(TAG_KEY_BYTES).chars().take(40).collect();
        for want in [
            "name".to_string(),
            format!("tags.{key}"),
            "executors[0].command".into(),
            "executors[0].env".into(),
            "inputs".into(),
            "volumes[0]".into(),
        ] {
            assert!(got.contains(&want), "{want} not in {got:?}");
        }
        // At the limits, all is well.
        let mut t = ok_task();
        t.name = Some("n".repeat(NAME_BYTES));
        t.tags = Some([("k".repeat(TAG_KEY_BYTES), "v".repeat(TAG_VALUE_BYTES))].into());
        assert!(validate(t, &policy()).is_ok());
    }

    #[test]
    fn accepts_a_minimal_task_and_strips_read_only_fields() {
        let mut t = ok_task();
        t.id = Some("mine".into());
        t.state = Some(crate::State::Complete);
        let v = validate(t, &policy()).unwrap();
        assert_eq!(v.spec.id, None);
        assert_eq!(v.spec.state, None);
    }

    #[test]
    fn rejects_missing_executors_image_and_command() {
        assert_eq!(fields(Task::default()), ["executors"]);
        let mut t = ok_task();
        t.executors = Some(vec![Executor::default()]);
        assert_eq!(fields(t), ["executors[0].image", "executors[0].command"]);
    }

    #[test]
    fn rejects_inputs_without_source_and_bad_paths() {
        let mut t = ok_task();
        t.inputs = Some(vec![
            Input {
                path: "/a".into(),
                ..Input::default()
            },
            Input {
                path: "rel".into(),
                content: Some("x".into()),
                ..Input::default()
            },
            Input {
                path: "/b/../etc".into(),
                content: Some("x".into()),
                ..Input::default()
            },
            Input {
                path: "/c".into(),
                url: Some("file:///etc/passwd".into()),
                ..Input::default()
            },
            Input {
                path: "/d".into(),
                url: Some("file:///srv/data/../../etc/passwd".into()),
                ..Input::default()
            },
            Input {
                path: "/e".into(),
                url: Some("gs://bucket/key".into()),
                ..Input::default()
            },
        ]);
        assert_eq!(
            fields(t),
            [
                "inputs[0].url",
                "inputs[1].path",
                "inputs[2].path",
                "inputs[3].url",
                "inputs[4].url",
                "inputs[5].url"
            ]
        );
    }

    #[test]
    fn file_urls_inside_roots_are_accepted() {
        let mut t = ok_task();
        t.inputs = Some(vec![Input {
            path: "/in/x".into(),
            url: Some("file:///srv/data/sub/x%20y".into()),
            ..Input::default()
        }]);
        t.outputs = Some(vec![Output {
            path: "/out/*.txt".into(),
            path_prefix: Some("/out/".into()),
            url: "file:///srv/data/results/".into(),
            ..Output::default()
        }]);
        validate(t, &policy()).unwrap();
    }

    #[test]
    fn wildcard_outputs_need_a_prefix() {
        let mut t = ok_task();
        t.outputs = Some(vec![Output {
            path: "/out/*.txt".into(),
            url: "file:///srv/data/r".into(),
            ..Output::default()
        }]);
        assert_eq!(fields(t), ["outputs[0].path_prefix"]);
    }

    #[test]
    fn backend_parameters_strict_and_lenient() {
        let mut t = ok_task();
        t.resources = Some(Resources {
            backend_parameters: Some(
                [
                    ("VmSize".to_string(), "x".to_string()),
                    ("Network".to_string(), "none".to_string()),
                ]
                .into(),
            ),
            ..Resources::default()
        });
        let v = validate(t.clone(), &policy()).unwrap();
        let params = v.spec.resources.unwrap().backend_parameters.unwrap();
        assert_eq!(
            params.keys().collect::<Vec<_>>(),
            ["Network"],
            "unsupported keys are not stored"
        );
        assert_eq!(v.warnings.len(), 1);
        t.resources.as_mut().unwrap().backend_parameters_strict = Some(true);
        assert_eq!(fields(t), ["resources.backend_parameters.VmSize"]);
    }

    #[test]
    fn a_run_time_is_whole_seconds_up_to_the_cap() {
        let with = |v: &str| {
            let mut t = ok_task();
            t.resources = Some(Resources {
                backend_parameters: Some([("Max_Run_Time".to_string(), v.to_string())].into()),
                ..Resources::default()
            });
            t
        };
        let v = validate(with("3600"), &policy()).unwrap();
        assert_eq!(
            v.spec.resources.unwrap().max_run_time(),
            Some(std::time::Duration::from_secs(3600))
        );
        for bad in ["3601", "0", "-5", "1.5", "1h", ""] {
            assert_eq!(
                fields(with(bad)),
                ["resources.backend_parameters.Max_Run_Time"],
                "{bad:?}"
            );
        }
    }

    #[test]
    fn schemes_with_a_bound_filer_are_accepted_and_listed() {
        let mut t = ok_task();
        t.inputs = Some(vec![Input {
            path: "/in".into(),
            url: Some("S3://bucket/key".into()),
            ..Input::default()
        }]);
        assert!(validate(t.clone(), &policy()).is_ok());
        let none = Policy {
            filer_schemes: vec![],
            ..policy()
        };
        assert!(validate(t, &none).is_err());
        assert_eq!(storage_prefixes(&policy()), ["file:///srv/data", "s3://"]);
    }

    #[test]
    fn backend_parameter_values_and_nul_and_root_wildcards_are_refused() {
        let mut t = ok_task();
        t.resources = Some(Resources {
            backend_parameters: Some([("network".to_string(), "host".to_string())].into()),
            ..Resources::default()
        });
        assert_eq!(fields(t), ["resources.backend_parameters.network"]);
        let mut t = ok_task();
        t.name = Some("a\0b".into());
        assert_eq!(fields(t), ["task"]);
        let mut t = ok_task();
        t.outputs = Some(vec![Output {
            path: "/*.txt".into(),
            path_prefix: Some("/".into()),
            url: "file:///srv/data/x".into(),
            ..Output::default()
        }]);
        assert_eq!(fields(t), ["outputs[0].path"]);
        assert_eq!(wildcard_base("/data/*.txt"), "/data");
        assert_eq!(wildcard_base("/a/b*/c/*.txt"), "/a");
    }

    #[test]
    fn resources_must_be_sane() {
        let mut t = ok_task();
        t.resources = Some(Resources {
            cpu_cores: Some(64),
            ram_gb: Some(f64::NAN),
            disk_gb: Some(-1.0),
            ..Resources::default()
        });
        assert_eq!(
            fields(t),
            [
                "resources.cpu_cores",
                "resources.ram_gb",
                "resources.disk_gb"
            ]
        );
    }

    fn arb_path() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("/data/x".to_string()),
            Just("/".to_string()),
            Just("".to_string()),
            Just("/a/../b".to_string()),
            "[a-z/.]{0,12}",
            ".{0,8}",
        ]
    }

    fn arb_task() -> impl Strategy<Value = Task> {
        let exec = (
            ".{0,6}",
            proptest::collection::vec(".{0,4}", 0..3),
            proptest::option::of(arb_path()),
        )
            .prop_map(|(image, command, workdir)| Executor {
                image,
                command,
                workdir,
                ..Executor::default()
            });
        let input = (
            arb_path(),
            proptest::option::of(".{0,20}"),
            proptest::option::of(".{0,6}"),
        )
            .prop_map(|(path, url, content)| Input {
                path,
                url,
                content,
                ..Input::default()
            });
        let output = (arb_path(), ".{0,30}", proptest::option::of(arb_path())).prop_map(
            |(path, url, path_prefix)| Output {
                path,
                url,
                path_prefix,
                ..Output::default()
            },
        );
        (
            proptest::option::of(proptest::collection::vec(exec, 0..3)),
            proptest::option::of(proptest::collection::vec(input, 0..3)),
            proptest::option::of(proptest::collection::vec(output, 0..3)),
            proptest::option::of(proptest::collection::vec(arb_path(), 0..3)),
            proptest::option::of((any::<i32>(), any::<f64>())),
        )
            .prop_map(|(executors, inputs, outputs, volumes, res)| Task {
                executors,
                inputs,
                outputs,
                volumes,
                resources: res.map(|(c, r)| Resources {
                    cpu_cores: Some(c),
                    ram_gb: Some(r),
                    ..Resources::default()
                }),
                ..Task::default()
            })
    }

    proptest! {
        /// Whatever the document, validation answers without panicking, and anything it
        /// accepts obeys the rules the executors rely on.
        #[test]
        fn validation_is_total_and_sound(task in arb_task()) {
            if let Ok(v) = validate(task, &policy()) {
                let execs = v.spec.executors.unwrap();
                prop_assert!(!execs.is_empty());
                for e in &execs {
                    prop_assert!(!e.image.trim().is_empty() && !e.command.is_empty());
                }
                for i in v.spec.inputs.iter().flatten() {
                    prop_assert!(check_container_path(&i.path).is_ok());
                    if let Some(Some(p)) = i.url.as_deref().filter(|_| i.content.as_deref().unwrap_or("").is_empty()).map(|u| file_url_path(u).ok().flatten()) {
                        prop_assert!(within_roots(&p, &policy().file_roots));
                    }
                }
                for o in v.spec.outputs.iter().flatten() {
                    prop_assert!(check_container_path(&o.path).is_ok());
                }
            }
        }
    }
}

#[cfg(test)]
mod json_fuzz {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// Random JSON, biased towards the shapes and keys of a task document.
    fn arb_json() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("executors".to_string()),
            Just("image".to_string()),
            Just("command".to_string()),
            Just("inputs".to_string()),
            Just("outputs".to_string()),
            Just("path".to_string()),
            Just("url".to_string()),
            Just("content".to_string()),
            Just("resources".to_string()),
            Just("cpu_cores".to_string()),
            Just("ram_gb".to_string()),
            Just("backend_parameters".to_string()),
            Just("type".to_string()),
            Just("tags".to_string()),
            Just("volumes".to_string()),
            "[a-z_]{1,8}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            prop_oneof![
                Just("/data/x".to_string()),
                Just("FILE".to_string()),
                Just("file:///x".to_string()),
                ".{0,10}"
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(key.clone(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any JSON at all either fails to parse as a task (a 400 for the API) or is
        /// validated without panicking.
        #[test]
        fn any_json_is_parsed_or_refused_without_panicking(doc in arb_json()) {
            let bytes = serde_json::to_vec(&doc).unwrap();
            if let Ok(task) = serde_json::from_slice::<Task>(&bytes) {
                let policy = Policy { file_roots: vec![PathBuf::from("/x")], max_content_bytes: 1024, ..Policy::default() };
                let _ = validate(task, &policy);
            }
        }
    }
}
