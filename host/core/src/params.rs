//! Typed parameters, declared by an operation or a workflow and given values by each of
//! its runs: the declarations' rules, their JSON Schema, a run's values checked and
//! defaults filled in, and `{{name}}` placeholders rendered. One set of rules for every
//! API that has parameters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::FieldError;
use crate::operation::MAX_NAME_CHARS;

/// The type of a parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
}

impl ParamType {
    fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
        }
    }

    fn accepts(self, v: &Value) -> bool {
        match self {
            ParamType::String => v.is_string(),
            ParamType::Integer => v.is_i64() || v.is_u64(),
            ParamType::Number => v.is_number(),
            ParamType::Boolean => v.is_boolean(),
        }
    }
}

/// One declared parameter. Its value reaches the container where the command template
/// or an env value says `{{name}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ParamType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Required unless it has a default; `false` makes it optional without one (its
    /// placeholders then become empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// The only values allowed.
    #[serde(rename = "enum", default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Value>>,
    /// Bounds of integer and number values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    /// Length bounds of string values, in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
}

impl Parameter {
    pub fn is_required(&self) -> bool {
        self.required.unwrap_or(self.default.is_none())
    }

    /// Why `v` is not a value of this parameter, if it is not.
    pub fn check(&self, v: &Value) -> Result<(), String> {
        if !self.kind.accepts(v) {
            return Err(format!("must be {} (got {v})", article(self.kind)));
        }
        if let Some(allowed) = &self.allowed
            && !allowed.contains(v)
        {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            return Err(format!("must be one of {} (got {v})", list.join(", ")));
        }
        if let Some(n) = v.as_f64() {
            if let Some(min) = self.minimum
                && n < min
            {
                return Err(format!("must be at least {min} (got {v})"));
            }
            if let Some(max) = self.maximum
                && n > max
            {
                return Err(format!("must be at most {max} (got {v})"));
            }
        }
        if let Some(s) = v.as_str() {
            let len = s.chars().count();
            if let Some(min) = self.min_length
                && len < min as usize
            {
                return Err(format!("must be at least {min} characters long"));
            }
            if let Some(max) = self.max_length
                && len > max as usize
            {
                return Err(format!("must be at most {max} characters long"));
            }
        }
        Ok(())
    }

    /// This parameter as a JSON Schema (draft 2020-12) property.
    fn schema(&self) -> Value {
        let mut s = Map::new();
        s.insert("type".into(), json!(self.kind.as_str()));
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                s.insert(k.into(), v);
            }
        };
        put("description", self.description.clone().map(Value::from));
        put("default", self.default.clone());
        put("enum", self.allowed.clone().map(Value::from));
        put("minimum", self.minimum.map(Value::from));
        put("maximum", self.maximum.map(Value::from));
        put("minLength", self.min_length.map(Value::from));
        put("maxLength", self.max_length.map(Value::from));
        Value::Object(s)
    }
}

fn article(t: ParamType) -> &'static str {
    match t {
        ParamType::String => "a string",
        ParamType::Integer => "an integer",
        ParamType::Number => "a number",
        ParamType::Boolean => "true or false",
    }
}

/// Check declared parameters (at `parameters[i]`); every broken rule goes to `errs`.
pub fn check_declared(params: &[Parameter], errs: &mut Vec<FieldError>) {
    let mut bad = |field: String, message: String| errs.push(FieldError { field, message });
    let mut seen = std::collections::HashSet::new();
    for (i, p) in params.iter().enumerate() {
        let at = |f: &str| format!("parameters[{i}].{f}");
        if let Err(m) = check_param_name(&p.name) {
            bad(at("name"), m);
        }
        if !seen.insert(p.name.as_str()) {
            bad(at("name"), format!("{:?} is declared twice", p.name));
        }
        if let Some(d) = &p.default
            && let Err(m) = p.check(d)
        {
            bad(at("default"), m);
        }
        for (j, v) in p.allowed.iter().flatten().enumerate() {
            if !p.kind.accepts(v) {
                bad(
                    format!("parameters[{i}].enum[{j}]"),
                    format!("must be {}", article(p.kind)),
                );
            }
        }
        if let (Some(a), Some(b)) = (p.minimum, p.maximum)
            && a > b
        {
            bad(at("minimum"), format!("{a} is above the maximum {b}"));
        }
        if (p.minimum.is_some() || p.maximum.is_some())
            && !matches!(p.kind, ParamType::Integer | ParamType::Number)
        {
            bad(
                at("minimum"),
                "bounds apply to integer and number parameters".into(),
            );
        }
        if (p.min_length.is_some() || p.max_length.is_some()) && p.kind != ParamType::String {
            bad(
                at("min_length"),
                "lengths apply to string parameters".into(),
            );
        }
    }
}

/// Each `{{name}}` of `template` that names no declared parameter, reported at `field`.
pub fn check_placeholders(
    params: &[Parameter],
    field: &str,
    template: &str,
    errs: &mut Vec<FieldError>,
) {
    for name in placeholders(template) {
        if !params.iter().any(|p| p.name == name) {
            errs.push(FieldError::at(
                field,
                format!("{{{{{name}}}}} names no declared parameter"),
            ));
        }
    }
}

/// The declared parameters as one JSON Schema (draft 2020-12) for a run's `params`.
pub fn schema(params: &[Parameter]) -> Value {
    let properties: Map<String, Value> = params
        .iter()
        .map(|p| (p.name.clone(), p.schema()))
        .collect();
    let required: Vec<&str> = params
        .iter()
        .filter(|p| p.is_required())
        .map(|p| p.name.as_str())
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// A run's values checked against the declared parameters, defaults filled in.
/// Every bad value is named (`params.NAME`).
pub fn resolve(
    params: &[Parameter],
    given: &Map<String, Value>,
    owner: &str,
) -> Result<Resolved, Vec<FieldError>> {
    let mut errs = Vec::new();
    for name in given.keys() {
        if !params.iter().any(|p| &p.name == name) {
            errs.push(FieldError {
                field: format!("params.{name}"),
                message: format!("is not a parameter of this {owner}"),
            });
        }
    }
    let mut values = BTreeMap::new();
    for p in params {
        match given.get(&p.name).or(p.default.as_ref()) {
            Some(v) => match p.check(v) {
                Ok(()) => {
                    values.insert(p.name.clone(), v.clone());
                }
                Err(m) => errs.push(FieldError {
                    field: format!("params.{}", p.name),
                    message: m,
                }),
            },
            None if p.is_required() => errs.push(FieldError {
                field: format!("params.{}", p.name),
                message: format!("is required ({})", article(p.kind)),
            }),
            None => {}
        }
    }
    if errs.is_empty() {
        Ok(Resolved(values))
    } else {
        Err(errs)
    }
}

/// Parameter values that passed [`resolve`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resolved(pub BTreeMap<String, Value>);

impl Resolved {
    /// `template` with every `{{name}}` replaced by the value (an absent optional
    /// parameter by nothing).
    pub fn render(&self, template: &str) -> String {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            let Some(len) = rest[start + 2..].find("}}") else {
                break;
            };
            out.push_str(&rest[..start]);
            let name = rest[start + 2..start + 2 + len].trim();
            if let Some(v) = self.0.get(name) {
                match v {
                    Value::String(s) => out.push_str(s),
                    other => out.push_str(&other.to_string()),
                }
            }
            rest = &rest[start + 2 + len + 2..];
        }
        out.push_str(rest);
        out
    }
}

/// The names of the `{{name}}` placeholders in `s`.
pub fn placeholders(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        out.push(rest[start + 2..start + 2 + len].trim());
        rest = &rest[start + 2 + len + 2..];
    }
    out
}

fn check_param_name(name: &str) -> Result<(), String> {
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    let chars_ok = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !first_ok || !chars_ok || name.len() > MAX_NAME_CHARS {
        return Err(format!(
            "{name:?} is not a parameter name: 1 to {MAX_NAME_CHARS} letters, digits and '_', \
             not beginning with a digit"
        ));
    }
    Ok(())
}
