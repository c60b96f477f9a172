//! Which function to call, with which arguments.
//!
//! Pure: given what the task asked for and what the module exports, decide. The order is
//! the Go executor's, kept so that existing tasks behave the same:
//! 1. the explicit entry (`--entry` / `ENTRY`);
//! 2. `entry` in the input JSON;
//! 3. `_start`, a WASI command (`_initialize` is called first when exported);
//! 4. `add(u64, u64)` with `ADD_X` / `ADD_Y`.
//!
//! Arguments come from `--args-json` / `ARGS_JSON`, else from the input's `args`, else, for
//! an entry named `add`, from `ADD_X` / `ADD_Y`. A WASI command gets them as `argv[1..]`.

use serde_json::Value;

use crate::args::Signature;
use crate::input::TaskInput;
use crate::result::{cap_text, MAX_NAME_BYTES};

/// Exports listed in an error, at most: a module may export 100 000 functions.
pub const MAX_LISTED_EXPORTS: usize = 32;

pub const START: &str = "_start";
pub const INITIALIZE: &str = "_initialize";
pub const ADD: &str = "add";

/// What the task asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `--entry` / `ENTRY`; an empty string counts as not given.
    pub entry: Option<String>,
    /// `--args-json` / `ARGS_JSON`, already parsed.
    pub args: Option<Vec<Value>>,
    pub input: TaskInput,
    pub add_x: Option<u64>,
    pub add_y: Option<u64>,
}

/// Where the chosen entry came from, for logs and error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntrySource {
    Explicit,
    Input,
    WasiCommand,
    AddFallback,
}

/// The decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub signature: Signature,
    pub source: EntrySource,
    /// Arguments as JSON; converted to Wasm values (or argv strings for a command) later.
    pub args: Vec<Value>,
    /// Call `_initialize` before the entry (a WASI reactor, or a command that exports it).
    pub initialize: bool,
}

impl Plan {
    /// True for a WASI command: arguments are argv, and `proc_exit` is the normal way out.
    pub fn is_command(&self) -> bool {
        self.signature.name == START
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("entry `{name}` ({from}) is not an exported function; the module exports: {exported}")]
    Unknown {
        name: String,
        from: &'static str,
        exported: String,
    },
    #[error("no entry: none was given (--entry / ENTRY, or \"entry\" in the input) and the module exports neither `_start` nor `add`; the module exports: {exported}")]
    NoEntry { exported: String },
    #[error("entry `add` needs two arguments: set both ADD_X and ADD_Y (only {given} is set), or give --args-json / ARGS_JSON")]
    AddPartial { given: &'static str },
}

/// Chooses the entry and its arguments from `exports` (the module's exported functions).
pub fn plan(request: &Request, exports: &[Signature]) -> Result<Plan, EntryError> {
    let find = |name: &str| exports.iter().find(|s| s.name == name);
    let listing = || describe_exports(exports);

    let explicit = request.entry.as_deref().filter(|e| !e.is_empty());
    let from_input = request.input.entry.as_deref().filter(|e| !e.is_empty());
    let (signature, source) = if let Some(name) = explicit {
        let sig = find(name).ok_or_else(|| EntryError::Unknown {
            name: cap_text(name, MAX_NAME_BYTES),
            from: "from --entry / ENTRY",
            exported: listing(),
        })?;
        (sig, EntrySource::Explicit)
    } else if let Some(name) = from_input {
        let sig = find(name).ok_or_else(|| EntryError::Unknown {
            name: cap_text(name, MAX_NAME_BYTES),
            from: "from \"entry\" in the input",
            exported: listing(),
        })?;
        (sig, EntrySource::Input)
    } else if let Some(sig) = find(START) {
        (sig, EntrySource::WasiCommand)
    } else if let Some(sig) = find(ADD) {
        (sig, EntrySource::AddFallback)
    } else {
        return Err(EntryError::NoEntry {
            exported: listing(),
        });
    };

    let args = match (&request.args, &request.input.args) {
        (Some(args), _) | (None, Some(args)) => args.clone(),
        (None, None) if signature.name == ADD => match (request.add_x, request.add_y) {
            (Some(x), Some(y)) => vec![Value::from(x), Value::from(y)],
            (Some(_), None) => return Err(EntryError::AddPartial { given: "ADD_X" }),
            (None, Some(_)) => return Err(EntryError::AddPartial { given: "ADD_Y" }),
            // Left empty: the argument check then names the signature and the count.
            (None, None) => Vec::new(),
        },
        (None, None) => Vec::new(),
    };

    Ok(Plan {
        signature: signature.clone(),
        source,
        args,
        initialize: signature.name != INITIALIZE && find(INITIALIZE).is_some(),
    })
}

/// `fib(i32) -> i64, add(i64, i64) -> i64`, or a note that there is none; at most
/// [`MAX_LISTED_EXPORTS`] of them, each name cut to 64 bytes, then how many more there are.
pub fn describe_exports(exports: &[Signature]) -> String {
    if exports.is_empty() {
        return "no functions".to_owned();
    }
    let mut listed: Vec<String> = exports
        .iter()
        .take(MAX_LISTED_EXPORTS)
        .map(|sig| {
            let mut short = sig.clone();
            short.name = cap_text(&sig.name, 64);
            cap_text(&short.to_string(), 256)
        })
        .collect();
    if exports.len() > MAX_LISTED_EXPORTS {
        listed.push(format!(
            "and {} more ({} exported functions)",
            exports.len() - MAX_LISTED_EXPORTS,
            exports.len()
        ));
    }
    listed.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wasmi::ValType::{I32, I64};

    fn sig(name: &str, params: &[wasmi::ValType]) -> Signature {
        Signature {
            name: name.into(),
            params: params.to_vec(),
            results: vec![I64],
        }
    }

    fn exports() -> Vec<Signature> {
        vec![sig("fib", &[I32]), sig(START, &[]), sig(ADD, &[I64, I64])]
    }

    #[test]
    fn explicit_entry_wins_over_input_and_fallbacks() {
        let req = Request {
            entry: Some("fib".into()),
            input: TaskInput {
                entry: Some("add".into()),
                args: Some(vec![json!(12)]),
            },
            ..Request::default()
        };
        let plan = plan(&req, &exports()).unwrap();
        assert_eq!(plan.signature.name, "fib");
        assert_eq!(plan.source, EntrySource::Explicit);
        assert_eq!(plan.args, vec![json!(12)]);
    }

    #[test]
    fn input_entry_then_start_then_add() {
        let req = Request {
            input: TaskInput {
                entry: Some("fib".into()),
                args: None,
            },
            ..Request::default()
        };
        assert_eq!(plan(&req, &exports()).unwrap().source, EntrySource::Input);

        let p = plan(&Request::default(), &exports()).unwrap();
        assert_eq!(
            (p.signature.name.as_str(), p.source),
            (START, EntrySource::WasiCommand)
        );
        assert!(p.is_command());

        let only_add = vec![sig(ADD, &[I64, I64])];
        let req = Request {
            add_x: Some(u64::MAX),
            add_y: Some(3),
            ..Request::default()
        };
        let p = plan(&req, &only_add).unwrap();
        assert_eq!(p.source, EntrySource::AddFallback);
        assert_eq!(p.args, vec![json!(u64::MAX), json!(3)]);
    }

    #[test]
    fn empty_entry_counts_as_not_given() {
        let req = Request {
            entry: Some(String::new()),
            ..Request::default()
        };
        assert_eq!(plan(&req, &exports()).unwrap().signature.name, START);
    }

    #[test]
    fn args_json_overrides_input_args_and_add_env() {
        let req = Request {
            entry: Some(ADD.into()),
            args: Some(vec![json!(1), json!(2)]),
            input: TaskInput {
                entry: None,
                args: Some(vec![json!(5), json!(6)]),
            },
            add_x: Some(7),
            add_y: Some(8),
        };
        assert_eq!(
            plan(&req, &exports()).unwrap().args,
            vec![json!(1), json!(2)]
        );
    }

    #[test]
    fn unknown_entry_lists_exported_functions() {
        let req = Request {
            entry: Some("fibb".into()),
            ..Request::default()
        };
        let err = plan(&req, &exports()).unwrap_err().to_string();
        assert_eq!(
            err,
            "entry `fibb` (from --entry / ENTRY) is not an exported function; the module exports: \
             fib(i32) -> i64, _start() -> i64, add(i64, i64) -> i64"
        );
        let err = plan(&Request::default(), &[sig("fib", &[I32])]).unwrap_err();
        assert!(matches!(err, EntryError::NoEntry { .. }));
        assert!(plan(&Request::default(), &[])
            .unwrap_err()
            .to_string()
            .ends_with("no functions"));
    }

    #[test]
    fn the_export_list_and_the_name_in_an_error_are_bounded() {
        let many: Vec<Signature> = (0..100_000)
            .map(|i| sig(&format!("f{i}_{}", "x".repeat(i % 300)), &[I32]))
            .collect();
        let req = Request {
            entry: Some("e".repeat(1 << 20)),
            ..Request::default()
        };
        let err = plan(&req, &many).unwrap_err().to_string();
        assert!(err.len() < 16 * 1024, "{}", err.len());
        assert!(
            err.ends_with("and 99968 more (100000 exported functions)"),
            "{err}"
        );
    }

    #[test]
    fn half_set_add_env_is_an_error() {
        let req = Request {
            entry: Some(ADD.into()),
            add_x: Some(1),
            ..Request::default()
        };
        assert_eq!(
            plan(&req, &exports()).unwrap_err(),
            EntryError::AddPartial { given: "ADD_X" }
        );
    }

    #[test]
    fn initialize_is_called_first_when_exported() {
        let mut ex = exports();
        ex.push(sig(INITIALIZE, &[]));
        let req = Request {
            entry: Some("fib".into()),
            ..Request::default()
        };
        assert!(plan(&req, &ex).unwrap().initialize);
        assert!(!plan(&req, &exports()).unwrap().initialize);
        let req = Request {
            entry: Some(INITIALIZE.into()),
            ..Request::default()
        };
        assert!(!plan(&req, &ex).unwrap().initialize);
    }
}
