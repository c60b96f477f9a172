//! The task input file (`input.json`): `{"entry":"fib","args":[12]}`.
//!
//! Pure. The file must be one JSON object (I-JSON, RFC 7493: no key twice in any object,
//! so that every reader of the file sees the same values). Its `entry` (a string) and
//! `args` (an array) are read; every other key is left for the guest, which can read the
//! whole file through the `/input` preopen. Anything else (an array, a number, a repeated
//! key) is an invalid input, named.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// What the runner takes from the input file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskInput {
    pub entry: Option<String>,
    pub args: Option<Vec<Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("the input is not valid JSON: {0}")]
    Json(String),
    #[error(
        "the input must be a JSON object such as {{\"entry\":\"fib\",\"args\":[12]}}, not {0}"
    )]
    NotAnObject(&'static str),
    #[error("the input's \"entry\" must be a string, not {0}")]
    EntryType(String),
    #[error("the input's \"args\" must be an array, not {0}")]
    ArgsType(String),
    #[error("ARGS_JSON must be a JSON array such as [12] or [13,9,2]: {0}")]
    ArgsJson(String),
}

pub fn parse_input(bytes: &[u8]) -> Result<TaskInput, InputError> {
    let value = strict_from_slice(bytes).map_err(|e| InputError::Json(e.to_string()))?;
    let map = match value {
        Value::Object(map) => map,
        Value::Array(_) => return Err(InputError::NotAnObject("an array")),
        Value::String(_) => return Err(InputError::NotAnObject("a string")),
        Value::Number(_) => return Err(InputError::NotAnObject("a number")),
        Value::Bool(_) => return Err(InputError::NotAnObject("a boolean")),
        Value::Null => return Err(InputError::NotAnObject("null")),
    };
    let entry = match map.get("entry") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(InputError::EntryType(shown(other))),
    };
    let args = match map.get("args") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(a.clone()),
        Some(other) => return Err(InputError::ArgsType(shown(other))),
    };
    Ok(TaskInput { entry, args })
}

/// A value as JSON text for an error message, cut short.
fn shown(v: &Value) -> String {
    crate::result::cap_text(&v.to_string(), 80)
}

/// Parses the `ARGS_JSON` / `--args-json` value.
pub fn parse_args_json(text: &str) -> Result<Vec<Value>, InputError> {
    match strict_from_slice(text.as_bytes()) {
        Ok(Value::Array(a)) => Ok(a),
        Ok(other) => Err(InputError::ArgsJson(format!(
            "got {}",
            crate::args::shorten(&other.to_string(), 60)
        ))),
        Err(e) => Err(InputError::ArgsJson(e.to_string())),
    }
}

/// JSON → [`Value`], refusing a key repeated in any object (serde_json keeps the last).
pub fn strict_from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue::deserialize(&mut de)?.0;
    de.end()?;
    Ok(value)
}

/// A [`Value`] whose objects were checked for repeated keys while being read.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let shown = crate::result::cap_text(&key, 64);
                return Err(de::Error::custom(format!(
                    "the key {shown:?} appears twice in one object"
                )));
            }
            let StrictValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_entry_and_args_and_ignores_other_keys() {
        let input = parse_input(br#"{"entry":"fib","args":[12],"numbers":[1]}"#).unwrap();
        assert_eq!(input.entry.as_deref(), Some("fib"));
        assert_eq!(input.args, Some(vec![json!(12)]));
    }

    #[test]
    fn only_an_object_is_an_input() {
        for (text, kind) in [
            ("[1,2,3]", "an array"),
            ("12", "a number"),
            ("\"fib\"", "a string"),
            ("true", "a boolean"),
            ("null", "null"),
        ] {
            assert_eq!(
                parse_input(text.as_bytes()).unwrap_err(),
                InputError::NotAnObject(kind),
                "{text}"
            );
        }
    }

    #[test]
    fn a_key_twice_in_any_object_is_refused() {
        for text in [
            r#"{"entry":"a","entry":"b"}"#,
            r#"{"args":[1],"args":[2]}"#,
            r#"{"entry":"f","data":{"x":1,"x":2}}"#,
            r#"{"args":[{"k":1,"k":1}]}"#,
        ] {
            let err = parse_input(text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains("appears twice"), "{text}: {err}");
        }
        assert!(parse_args_json(r#"[{"a":1,"a":2}]"#).is_err());
        // The same key in two different objects is fine.
        assert!(parse_input(br#"{"a":{"k":1},"b":{"k":1}}"#).is_ok());
    }

    #[test]
    fn wrong_shapes_are_named() {
        assert_eq!(
            parse_input(br#"{"entry":5}"#).unwrap_err(),
            InputError::EntryType("5".into())
        );
        assert!(matches!(
            parse_input(br#"{"args":"12"}"#).unwrap_err(),
            InputError::ArgsType(_)
        ));
        assert!(matches!(
            parse_input(b"{").unwrap_err(),
            InputError::Json(_)
        ));
        assert!(matches!(parse_input(b"").unwrap_err(), InputError::Json(_)));
    }

    #[test]
    fn args_json_must_be_an_array() {
        assert_eq!(
            parse_args_json("[13,9,2]").unwrap(),
            vec![json!(13), json!(9), json!(2)]
        );
        assert!(parse_args_json("12")
            .unwrap_err()
            .to_string()
            .contains("got 12"));
        assert!(parse_args_json("[1,").is_err());
    }
}
