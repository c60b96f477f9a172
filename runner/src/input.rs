//! The task input file (`input.json`): `{"entry":"fib","args":[12]}`.
//!
//! Pure. The file must be JSON. When it is an object, its `entry` (a string) and `args`
//! (an array) are read; every other key is left for the guest, which can read the whole
//! file through the `/input` preopen. A non-object value (an array, a number…) is data for
//! the guest only.

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
    #[error("the input's \"entry\" must be a string, not {0}")]
    EntryType(String),
    #[error("the input's \"args\" must be an array, not {0}")]
    ArgsType(String),
    #[error("ARGS_JSON must be a JSON array such as [12] or [13,9,2]: {0}")]
    ArgsJson(String),
}

pub fn parse_input(bytes: &[u8]) -> Result<TaskInput, InputError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| InputError::Json(e.to_string()))?;
    let Value::Object(map) = value else {
        return Ok(TaskInput::default());
    };
    let entry = match map.get("entry") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(InputError::EntryType(other.to_string())),
    };
    let args = match map.get("args") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(a.clone()),
        Some(other) => return Err(InputError::ArgsType(other.to_string())),
    };
    Ok(TaskInput { entry, args })
}

/// Parses the `ARGS_JSON` / `--args-json` value.
pub fn parse_args_json(text: &str) -> Result<Vec<Value>, InputError> {
    match serde_json::from_str(text) {
        Ok(Value::Array(a)) => Ok(a),
        Ok(other) => Err(InputError::ArgsJson(format!(
            "got {}",
            crate::args::shorten(&other.to_string(), 60)
        ))),
        Err(e) => Err(InputError::ArgsJson(e.to_string())),
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
    fn non_object_input_is_guest_data() {
        assert_eq!(parse_input(b"[1,2,3]").unwrap(), TaskInput::default());
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
