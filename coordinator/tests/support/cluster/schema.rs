//! A custom resource's OpenAPI v3 structural schema, applied as the API server applies it on
//! every create, update and patch: unknown fields are pruned, then the object is validated,
//! and each failure is a field error worded like the server's (`spec.wasmCid: Invalid value:
//! "x y": spec.wasmCid in body should match '^[A-Za-z0-9]+$'`). Pure: values in, values out.
//!
//! The subset served is what CRDs like `k8s/crd.yaml` use: `type` (object, array, string,
//! integer, number, boolean), `properties`, `additionalProperties` (a schema),
//! `x-kubernetes-preserve-unknown-fields`, `required`, `minLength`, `maxLength`, `pattern`,
//! `enum`, `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` (the OpenAPI v3.0
//! booleans), `items`, `format: date-time`, and two CEL rules in `x-kubernetes-validations`,
//! in these literal forms: `self == oldSelf` (on update the field must equal the old one)
//! and `has(self.a) != has(self.b)` (exactly one of two fields is set). Any other CEL rule
//! is not evaluated: it always passes, because the stand-in has no CEL
//! interpreter. Not served: `nullable` (a null is a type error), other formats, `oneOf` and
//! friends, `minItems`/`maxItems`/`uniqueItems`, `x-kubernetes-int-or-string`,
//! `x-kubernetes-embedded-resource`, list-type uniqueness and validation ratcheting.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use regex::Regex;
use serde_json::{json, Map, Value};

/// The top-level fields every object keeps whatever its schema says.
const ALWAYS_KEPT: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// One failed check, as `field.Error`: its path, type and body (the message after the path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub field: String,
    /// The `metav1.CauseType`: `FieldValueInvalid`, `FieldValueRequired`, …
    pub reason: &'static str,
    pub body: String,
}

impl FieldError {
    pub(crate) fn new(field: &str, reason: &'static str, body: impl Into<String>) -> Self {
        FieldError {
            field: field.to_string(),
            reason,
            body: body.into(),
        }
    }

    /// `Required value` and the like: no value shown.
    fn plain(field: &str, reason: &'static str, body: String) -> Self {
        Self::new(field, reason, body)
    }

    /// `Invalid value: "x": detail`, the value printed as Go's `%v`/`%q` prints it.
    fn with_value(field: &str, reason: &'static str, value: &Value, detail: &str) -> Self {
        let title = match reason {
            "FieldValueNotSupported" => "Unsupported value",
            _ => "Invalid value",
        };
        let mut body = format!("{title}: {}", shown(value));
        if !detail.is_empty() {
            body = format!("{body}: {detail}");
        }
        Self::plain(field, reason, body)
    }

    /// `spec.wasmCid: Invalid value: …`, as the error reads in a Status message.
    pub(crate) fn message(&self) -> String {
        format!("{}: {}", self.field, self.body)
    }

    /// The `metav1.StatusCause`.
    pub(crate) fn cause(&self) -> Value {
        json!({"reason": self.reason, "message": self.body, "field": self.field})
    }
}

/// Go's `%q` for strings, `%v` for numbers and booleans, JSON for the rest.
fn shown(v: &Value) -> String {
    v.to_string()
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Drops the fields `schema` does not declare (at the top level, `apiVersion`, `kind` and
/// `metadata` stay), except under `x-kubernetes-preserve-unknown-fields: true`; returns
/// their paths (`spec.foo`), for the server's "unknown field" warnings and strict errors.
pub(crate) fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    prune_at(schema, obj, &ALWAYS_KEPT, "", &mut pruned);
    pruned
}

fn prune_at(schema: &Value, v: &mut Value, keep: &[&str], path: &str, pruned: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(values) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                for (k, item) in map.iter_mut() {
                    prune_at(values, item, &[], &child(path, k), pruned);
                }
                return;
            }
            let props = schema["properties"].as_object();
            if schema["x-kubernetes-preserve-unknown-fields"] != true {
                let known = |k: &String| {
                    keep.contains(&k.as_str()) || props.is_some_and(|p| p.contains_key(k))
                };
                pruned.extend(map.keys().filter(|k| !known(k)).map(|k| child(path, k)));
                map.retain(|k, _| known(k));
            }
            for (k, sub) in props.into_iter().flatten() {
                if let Some(item) = map.get_mut(k) {
                    prune_at(sub, item, &[], &child(path, k), pruned);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_at(sub, item, &[], &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

/// Every failure of `obj` against `schema`; `old` is the stored object on an update (what
/// `oldSelf` names), `None` on a create.
pub(crate) fn validate(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check(schema, obj, old, "", &mut errors);
    errors
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "number" => v.is_number(),
        // A float with no fraction is an integer to the server's validator.
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        other => type_name(v) == other,
    }
}

fn check(schema: &Value, v: &Value, old: Option<&Value>, path: &str, errors: &mut Vec<FieldError>) {
    let in_body = if path.is_empty() { "." } else { path };
    if let Some(t) = schema["type"].as_str() {
        if !has_type(v, t) {
            let actual = json!(type_name(v));
            let detail = format!("{in_body} in body must be of type {t}: {actual}");
            errors.push(FieldError::with_value(
                path,
                "FieldValueTypeInvalid",
                &actual,
                &detail,
            ));
            return;
        }
    }
    match v {
        Value::String(s) => check_string(schema, s, v, path, errors),
        Value::Number(n) => check_number(schema, n.as_f64().unwrap_or(f64::NAN), v, path, errors),
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(sub, item, None, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::Object(map) => check_object(schema, map, old, path, errors),
        _ => {}
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(v) {
            let listed: Vec<String> = allowed
                .iter()
                .map(|a| match a {
                    Value::String(s) => json!(s).to_string(),
                    other => json!(other.to_string()).to_string(),
                })
                .collect();
            let detail = format!("supported values: {}", listed.join(", "));
            errors.push(FieldError::with_value(
                path,
                "FieldValueNotSupported",
                v,
                &detail,
            ));
        }
    }
    check_rules(schema, v, old, path, errors);
}

fn check_string(schema: &Value, s: &str, v: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let chars = s.chars().count() as u64;
    if let Some(min) = schema["minLength"].as_u64().filter(|m| chars < *m) {
        let detail = format!("{path} in body should be at least {min} chars long");
        errors.push(FieldError::with_value(
            path,
            "FieldValueInvalid",
            v,
            &detail,
        ));
    }
    if let Some(max) = schema["maxLength"].as_u64().filter(|m| chars > *m) {
        let unit = if max == 1 { "byte" } else { "bytes" };
        let body = format!("Too long: may not be more than {max} {unit}");
        errors.push(FieldError::plain(path, "FieldValueTooLong", body));
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        // A pattern that does not compile is not checked (the real server refuses the CRD).
        if compiled(pattern).is_some_and(|re| !re.is_match(s)) {
            let detail = format!("{path} in body should match '{pattern}'");
            errors.push(FieldError::with_value(
                path,
                "FieldValueInvalid",
                v,
                &detail,
            ));
        }
    }
    let is_time = |s: &str| s.parse::<k8s_openapi::jiff::Timestamp>().is_ok();
    if schema["format"] == "date-time" && !is_time(s) {
        let detail = format!("{path} in body must be of type date-time: {v}");
        errors.push(FieldError::with_value(
            path,
            "FieldValueInvalid",
            v,
            &detail,
        ));
    }
}

/// Patterns compiled once per process: every write of a custom resource checks them.
fn compiled(pattern: &str) -> Option<Regex> {
    static CACHE: Mutex<Option<HashMap<String, Option<Regex>>>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    let cache = cache.get_or_insert_with(HashMap::new);
    cache
        .entry(pattern.to_string())
        .or_insert_with(|| Regex::new(pattern).ok())
        .clone()
}

fn check_number(schema: &Value, n: f64, v: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let bounds = [
        ("minimum", "exclusiveMinimum", "greater than"),
        ("maximum", "exclusiveMaximum", "less than"),
    ];
    for (key, exclusive_key, words) in bounds {
        let Some(bound) = schema[key].as_f64() else {
            continue;
        };
        let exclusive = schema[exclusive_key] == true;
        let within = match (key, exclusive) {
            ("minimum", false) => n >= bound,
            ("minimum", true) => n > bound,
            (_, false) => n <= bound,
            (_, true) => n < bound,
        };
        if !within {
            let or_equal = if exclusive { "" } else { " or equal to" };
            // As Go's `%v` prints a float64: `10`, not `10.0`.
            let shown = if bound.fract() == 0.0 && bound.abs() < 1e15 {
                format!("{}", bound as i64)
            } else {
                format!("{bound}")
            };
            let detail = format!("{path} in body should be {words}{or_equal} {shown}");
            errors.push(FieldError::with_value(
                path,
                "FieldValueInvalid",
                v,
                &detail,
            ));
        }
    }
}

fn check_object(
    schema: &Value,
    map: &Map<String, Value>,
    old: Option<&Value>,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    for required in schema["required"].as_array().into_iter().flatten() {
        let Some(key) = required.as_str() else {
            continue;
        };
        if !map.contains_key(key) {
            let field = child(path, key);
            errors.push(FieldError::plain(
                &field,
                "FieldValueRequired",
                "Required value".into(),
            ));
        }
    }
    let props = schema["properties"].as_object();
    for (key, sub) in props.into_iter().flatten() {
        if let Some(item) = map.get(key) {
            let old_item = old.and_then(|o| o.get(key));
            check(sub, item, old_item, &child(path, key), errors);
        }
    }
    if let Some(values) = schema.get("additionalProperties").filter(|s| s.is_object()) {
        for (key, item) in map {
            let old_item = old.and_then(|o| o.get(key));
            check(values, item, old_item, &child(path, key), errors);
        }
    }
}

/// `x-kubernetes-validations`: `self == oldSelf` only. A transition rule like it is checked
/// on updates where the old object has the field; every other rule is skipped (no CEL here).
fn check_rules(
    schema: &Value,
    v: &Value,
    old: Option<&Value>,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let text = rule["rule"].as_str().unwrap_or("").trim();
        let failed = if text == "self == oldSelf" {
            old.is_some_and(|o| o != v)
        } else if let Some(c) =
            compiled(r"^has\(self\.(\w+)\) != has\(self\.(\w+)\)$").and_then(|re| {
                re.captures(text)
                    .map(|c| (c[1].to_string(), c[2].to_string()))
            })
        {
            v.get(&c.0).is_some() == v.get(&c.1).is_some()
        } else {
            false
        };
        if failed {
            let message = match rule["message"].as_str() {
                Some(m) if !m.is_empty() => m.to_string(),
                _ => format!("failed rule: {text}"),
            };
            errors.push(FieldError::with_value(
                path,
                "FieldValueInvalid",
                &json!(type_name(v)),
                &message,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["spec"],
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["cid"],
                    "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "immutable"}],
                    "properties": {
                        "cid": {"type": "string", "minLength": 1, "maxLength": 4, "pattern": "^[a-z]+$"},
                    },
                },
                "status": {
                    "type": "object",
                    "properties": {
                        "n": {"type": "integer", "minimum": 0},
                        "phase": {"type": "string", "enum": ["A", "B"]},
                        "at": {"type": "string", "format": "date-time"},
                        "any": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "list": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
                    },
                },
            },
        })
    }

    fn messages(obj: Value, old: Option<Value>) -> Vec<String> {
        validate(&schema(), &obj, old.as_ref())
            .iter()
            .map(FieldError::message)
            .collect()
    }

    #[test]
    fn messages_read_like_the_api_servers() {
        let got = messages(
            json!({"spec": {"cid": "a b"}, "status": {"n": -1, "phase": "C", "at": "yesterday"}}),
            None,
        );
        assert_eq!(
            got,
            [
                r#"spec.cid: Invalid value: "a b": spec.cid in body should match '^[a-z]+$'"#,
                r#"status.at: Invalid value: "yesterday": status.at in body must be of type date-time: "yesterday""#,
                "status.n: Invalid value: -1: status.n in body should be greater than or equal to 0",
                r#"status.phase: Unsupported value: "C": supported values: "A", "B""#,
            ]
        );
        assert_eq!(
            messages(json!({"spec": {"cid": "abcde"}}), None),
            ["spec.cid: Too long: may not be more than 4 bytes"]
        );
        assert_eq!(
            messages(json!({"spec": {}}), None),
            ["spec.cid: Required value"]
        );
        assert_eq!(
            messages(json!({"spec": {"cid": 7}}), None),
            [
                r#"spec.cid: Invalid value: "integer": spec.cid in body must be of type string: "integer""#
            ]
        );
    }

    #[test]
    fn self_equals_old_self_holds_on_update_only() {
        let spec = json!({"spec": {"cid": "ab"}});
        assert!(messages(spec.clone(), None).is_empty());
        assert!(messages(spec.clone(), Some(spec.clone())).is_empty());
        assert_eq!(
            messages(json!({"spec": {"cid": "cd"}}), Some(spec)),
            [r#"spec: Invalid value: "object": immutable"#]
        );
    }

    #[test]
    fn unknown_fields_are_pruned_except_where_preserved() {
        let mut obj = json!({
            "apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}, "extra": 1,
            "spec": {"cid": "ab", "bogus": true},
            "status": {"any": {"free": {"deep": 1}}, "list": [{"k": "v", "drop": 0}]},
        });
        let pruned = prune(&schema(), &mut obj);
        assert_eq!(pruned, ["extra", "spec.bogus", "status.list[0].drop"]);
        assert_eq!(
            obj,
            json!({
                "apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"},
                "spec": {"cid": "ab"},
                "status": {"any": {"free": {"deep": 1}}, "list": [{"k": "v"}]},
            })
        );
    }
}
