//! The result JSON object: the one definition of the runner's wire format.
//!
//! Every consumer (the coordinator, a Job's termination message reader, a person with `jq`)
//! reads this type; nothing else defines these fields. The schema is versioned by
//! [`SCHEMA_VERSION`]: fields may be added within a version, never renamed or retyped.
//!
//! Pure: building, serializing, holding every field that a module or a task author controls
//! to its cap ([`TaskResult::cap_fields`]), and cutting to fit a size: the 4096-byte
//! termination message, and [`MAX_RESULT_BYTES`] everywhere else, so a reader can rely on
//! the size of any result. Writing the three copies is in [`crate::report`].
//!
//! Caps (the README's "The result" lists them): `task_id` and `entry`
//! [`MAX_NAME_BYTES`], `error` [`MAX_ERROR_BYTES`], `args` [`MAX_ARGS_BYTES`] of JSON,
//! each captured stream `--max-output` (at most [`MAX_OUTPUT_BYTES`]). A field that was cut
//! is named in `elided`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use pod::exit::runner as exit;

use crate::args::shorten;

/// Bumped when a field is renamed, retyped or removed.
pub const SCHEMA_VERSION: u32 = 1;

/// Kubernetes reads at most this many bytes of a container's termination message.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// The largest result line the runner writes anywhere (result file, stdout), newline
/// excluded. Readers (the coordinator) may refuse anything longer.
pub const MAX_RESULT_BYTES: usize = 1 << 20;
/// Cap of `task_id` and `entry` as echoed in the result.
pub const MAX_NAME_BYTES: usize = 256;
/// Cap of `error`. Errors that list things (a module's exports) list only the first few.
pub const MAX_ERROR_BYTES: usize = 4096;
/// Cap of `args` as echoed in the result, in bytes of JSON: whole arguments are kept from
/// the first while they fit.
pub const MAX_ARGS_BYTES: usize = 16 * 1024;
/// The largest `--max-output`: bytes kept of the guest's stdout, and again of its stderr.
pub const MAX_OUTPUT_BYTES: usize = 256 * 1024;

/// How a task ended. Serialized in snake_case (`out_of_fuel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The entry returned (or the WASI command exited; see `exit_code`).
    Ok,
    /// The guest trapped (unreachable, division by zero, out-of-bounds access, stack overflow…).
    Trap,
    /// The fuel budget ran out.
    OutOfFuel,
    /// The wall-clock timeout fired.
    Timeout,
    /// The module could not be decoded, validated, linked or compiled.
    InvalidModule,
    /// The input, entry or arguments do not fit the module.
    InvalidInput,
    /// The runner could not do its job (unreadable files, unwritable output…).
    Error,
}

impl Status {
    /// The wire name, as in the result JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Trap => "trap",
            Status::OutOfFuel => "out_of_fuel",
            Status::Timeout => "timeout",
            Status::InvalidModule => "invalid_module",
            Status::InvalidInput => "invalid_input",
            Status::Error => "error",
        }
    }

    /// The runner's process exit code for this status (documented in `--help` and the README).
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => exit::RESULT,
            Status::Trap | Status::OutOfFuel | Status::InvalidModule | Status::InvalidInput => {
                exit::TASK_FAILED
            }
            Status::Timeout => exit::TIMEOUT,
            Status::Error => exit::RUNNER_FAILED,
        }
    }
}

/// The engine a result names: which interpreter, and how it was set up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Engine {
    /// Always `wasmi`.
    pub name: String,
    /// The wasmi version the runner was built with ([`WASMI_VERSION`]).
    pub version: String,
    /// False when the run had no fuel budget (`--fuel 0`).
    pub fuel_metering: bool,
    /// `--deterministic`: fixed clocks and seeded random bytes.
    pub deterministic: bool,
}

impl Engine {
    pub fn wasmi(fuel_metering: bool, deterministic: bool) -> Self {
        Self {
            name: "wasmi".into(),
            version: WASMI_VERSION.into(),
            fuel_metering,
            deterministic,
        }
    }
}

/// The wasmi version this runner is built with (a unit test holds it to `Cargo.lock`).
pub const WASMI_VERSION: &str = "2.0.0";

/// The limits one run was held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedLimits {
    /// The fuel budget; `null` with metering off.
    pub fuel: Option<u64>,
    /// The linear-memory cap in bytes.
    pub memory_bytes: u64,
    /// The wall-clock timeout in milliseconds; `null` for none.
    pub timeout_ms: Option<u64>,
}

/// Hex SHA-256 of `value`'s RFC 8785 (JSON Canonicalization Scheme) form: how every hash
/// of a JSON value in results and receipts is taken.
pub fn canonical_sha256<T: Serialize>(value: &T) -> String {
    use sha2::{Digest, Sha256};
    // Serializing these values cannot fail: every map key is a string and every float is
    // finite (`args` stores other floats as strings).
    let bytes = serde_json_canonicalizer::to_vec(value).unwrap_or_default();
    crate::task::hex(&Sha256::digest(bytes))
}

/// One captured guest stream, bounded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestOutput {
    /// What was kept, as UTF-8 (invalid sequences replaced by U+FFFD).
    pub text: String,
    /// How many bytes the guest wrote in all.
    pub bytes: u64,
    /// True when `text` holds less than the guest wrote.
    pub truncated: bool,
}

impl GuestOutput {
    /// Builds the JSON form of captured bytes, cutting at a UTF-8 boundary so that a cut
    /// never leaves a replacement character that the guest did not write.
    pub fn from_capture(kept: &[u8], total_bytes: u64) -> Self {
        let kept_len = kept.len() as u64;
        let truncated = total_bytes > kept_len;
        let kept = if truncated {
            match std::str::from_utf8(kept) {
                Ok(_) => kept,
                Err(e) if e.error_len().is_none() => &kept[..e.valid_up_to()],
                Err(_) => kept,
            }
        } else {
            kept
        };
        Self {
            text: String::from_utf8_lossy(kept).into_owned(),
            bytes: total_bytes.max(kept_len),
            truncated,
        }
    }

    fn is_empty(&self) -> bool {
        self.bytes == 0
    }
}

/// The result of one task run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    pub schema_version: u32,
    /// From `TASK_ID`; `null` when none was given.
    pub task_id: Option<String>,
    pub status: Status,
    /// The function that was called; `null` when none could be chosen.
    pub entry: Option<String>,
    /// The arguments as given (JSON values, before conversion).
    pub args: Vec<Value>,
    /// The returned values, one per result of the function (see `args` module docs for the
    /// encoding); `null` unless the entry returned.
    pub result: Option<Vec<Value>>,
    /// The WASI exit code: `proc_exit`'s argument, 0 when `_start` returned; `null` when the
    /// entry is not a WASI command and did not call `proc_exit`.
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "GuestOutput::is_empty")]
    pub stdout: GuestOutput,
    #[serde(default, skip_serializing_if = "GuestOutput::is_empty")]
    pub stderr: GuestOutput,
    /// Fuel used; `null` when metering is off or the run was stopped by the timeout.
    pub fuel_consumed: Option<u64>,
    /// Wall-clock time of the run in milliseconds; `null` with `--deterministic`, so that two
    /// runs of one task give byte-identical results.
    pub duration_ms: Option<f64>,
    /// Hex SHA-256 of the module bytes; `null` when the module could not be read.
    pub module_sha256: Option<String>,
    /// Hex SHA-256 of the input file's bytes; `null` without an input or when it could not
    /// be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_sha256: Option<String>,
    /// Hex SHA-256 of the arguments as given (the RFC 8785 JSON of the array, before any
    /// cut of `args`); `null` when they could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_sha256: Option<String>,
    /// What ran the module, and with which settings; `null` from runners before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
    /// The limits the run was held to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<AppliedLimits>,
    /// Hex SHA-256 of what the computation produced ([`TaskResult::output_digest`]):
    /// computed by the runner before any copy is cut, so it holds for every copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_sha256: Option<String>,
    /// What went wrong, for every status but `ok`.
    pub error: Option<String>,
    /// Fields cut to their caps, or emptied to fit where the result was written (the
    /// termination message); left out when nothing was cut.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elided: Vec<String>,
}

impl TaskResult {
    /// A result with only the identity fields set; the runner fills in the rest.
    pub fn new(task_id: Option<String>, status: Status) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            task_id,
            status,
            entry: None,
            args: Vec::new(),
            result: None,
            exit_code: None,
            stdout: GuestOutput::default(),
            stderr: GuestOutput::default(),
            fuel_consumed: None,
            duration_ms: None,
            module_sha256: None,
            input_sha256: None,
            args_sha256: None,
            engine: None,
            limits: None,
            output_sha256: None,
            error: None,
            elided: Vec::new(),
        }
    }

    /// The hex SHA-256 of only what the computation produced: the RFC 8785 JSON of
    /// `{status, result, exit_code, stdout, stderr, fuel_consumed}` (the streams as
    /// `{text, bytes, truncated}`). Timings, ids and hashes of the inputs are left out, so
    /// two honest runs of a deterministic task give the same value, wherever they ran.
    pub fn output_digest(&self) -> String {
        let produced = serde_json::json!({
            "status": self.status,
            "result": self.result,
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "fuel_consumed": self.fuel_consumed,
        });
        canonical_sha256(&produced)
    }

    /// One line of JSON, no trailing newline.
    pub fn to_line(&self) -> String {
        // Serializing this struct cannot fail: every map key is a string and every float
        // is either finite or stored as a string by the `args` encoding.
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(
                r#"{{"schema_version":{SCHEMA_VERSION},"status":"error","error":"cannot serialize result: {e}"}}"#
            )
        })
    }

    /// Holds every field that a module or task author controls to its cap (see the module
    /// docs), naming each field cut in `elided`.
    pub fn cap_fields(&mut self) {
        let mut cut = Vec::new();
        for (name, field, max) in [
            ("task_id", &mut self.task_id, MAX_NAME_BYTES),
            ("entry", &mut self.entry, MAX_NAME_BYTES),
            ("error", &mut self.error, MAX_ERROR_BYTES),
        ] {
            if let Some(text) = field.as_mut() {
                if text.len() > max {
                    *text = cap_text(text, max);
                    cut.push(name);
                }
            }
        }
        if json_len(&self.args) > MAX_ARGS_BYTES {
            let mut used = 2; // the brackets
            let keep = self
                .args
                .iter()
                .take_while(|a| {
                    used += json_len(a) + 1;
                    used <= MAX_ARGS_BYTES
                })
                .count();
            self.args.truncate(keep);
            cut.push("args");
        }
        for (name, out) in [("stdout", &mut self.stdout), ("stderr", &mut self.stderr)] {
            if out.text.len() > MAX_OUTPUT_BYTES {
                out.text = cap_text(&out.text, MAX_OUTPUT_BYTES);
                out.truncated = true;
                cut.push(name);
            }
        }
        for name in cut {
            if !self.elided.iter().any(|e| e == name) {
                self.elided.push(name.to_owned());
            }
        }
    }

    /// The line written to the result file and stdout: fields capped, then cut to
    /// [`MAX_RESULT_BYTES`] if escaping still made it longer.
    pub fn to_bounded_line(&self) -> String {
        let mut r = self.clone();
        r.cap_fields();
        r.fit_to(MAX_RESULT_BYTES)
    }

    /// The result cut to fit `limit` bytes, still valid JSON: captured output goes first,
    /// then the error message and arguments are shortened, then the arguments and results
    /// are dropped. Every field emptied is listed in `elided`.
    pub fn fit_to(&self, limit: usize) -> String {
        let line = self.to_line();
        if line.len() <= limit {
            return line;
        }
        let mut cut = self.clone();
        type Step = (&'static str, fn(&mut TaskResult));
        let steps: [Step; 5] = [
            ("stdout", |r| r.stdout.text.clear()),
            ("stderr", |r| r.stderr.text.clear()),
            ("error", |r| {
                r.error = r.error.as_deref().map(|e| shorten(e, 512))
            }),
            ("args", |r| r.args.clear()),
            ("result", |r| r.result = None),
        ];
        for (field, apply) in steps {
            apply(&mut cut);
            cut.elided.push(field.to_owned());
            let line = cut.to_line();
            if line.len() <= limit {
                return line;
            }
        }
        // Only the identity fields and a shortened error are left; task ids and entry names
        // are short in practice, but are cut too so the promise holds for any input.
        cut.task_id = cut.task_id.as_deref().map(|s| shorten(s, 253));
        cut.entry = cut.entry.as_deref().map(|s| shorten(s, 253));
        cut.error = cut.error.as_deref().map(|e| shorten(e, 256));
        cut.elided.push("task_id".into());
        cut.to_line()
    }

    /// The last line of `text` that is a result object: how a reader finds the result in a
    /// runner's stdout or a container's log, where other lines may come before it.
    /// Lines longer than [`MAX_RESULT_BYTES`] are not results and are skipped unread.
    pub fn last_in(text: &str) -> Option<TaskResult> {
        text.lines()
            .rev()
            .map(str::trim)
            .filter(|l| l.starts_with('{') && l.len() <= MAX_RESULT_BYTES)
            .find_map(|l| serde_json::from_str(l).ok())
    }
}

/// `text` cut at a character boundary to at most `max` bytes, the cut marked with `…`.
pub fn cap_text(text: &str, max: usize) -> String {
    const MARK: &str = "…";
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &text[..end])
}

/// `text` on one line: every run of whitespace that holds a line break becomes one space.
/// Messages from libraries sometimes embed pretty-printed values.
pub fn one_line(text: &str) -> String {
    if !text.contains(['\n', '\r']) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    for c in text.chars() {
        if c.is_whitespace() {
            run.push(c);
            continue;
        }
        if !run.is_empty() {
            out.push_str(if run.contains(['\n', '\r']) {
                " "
            } else {
                &run
            });
            run.clear();
        }
        out.push(c);
    }
    if !run.is_empty() && !run.contains(['\n', '\r']) {
        out.push_str(&run);
    }
    out
}

/// Bytes of `value` as compact JSON, without building the text.
fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sha2::Digest;

    #[test]
    fn wasmi_version_is_the_one_in_cargo_lock() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")).unwrap();
        let at = lock.find("name = \"wasmi\"\nversion = \"").unwrap();
        let version = lock[at..].lines().nth(1).unwrap();
        assert_eq!(version, format!("version = \"{WASMI_VERSION}\""));
    }

    #[test]
    fn the_output_digest_covers_what_the_computation_produced_and_nothing_else() {
        let base = sample();
        let digest = base.output_digest();
        assert_eq!(digest.len(), 64);
        // Not what was produced: ids, timings, hashes of the inputs, the engine.
        let mut same = base.clone();
        same.task_id = Some("another".into());
        same.duration_ms = Some(77.0);
        same.module_sha256 = None;
        same.input_sha256 = Some("cd".repeat(32));
        same.engine = Some(Engine::wasmi(true, false));
        same.entry = Some("other".into());
        assert_eq!(same.output_digest(), digest);
        // What was produced: every field of it counts.
        let changes: [fn(&mut TaskResult); 8] = [
            |r| r.status = Status::Trap,
            |r| r.result = Some(vec![json!(145)]),
            |r| r.exit_code = Some(0),
            |r| r.stdout = GuestOutput::from_capture(b"x", 1),
            |r| r.stderr = GuestOutput::from_capture(b"x", 1),
            |r| r.stdout = GuestOutput::from_capture(b"", 1),
            |r| r.fuel_consumed = Some(100),
            |r| r.fuel_consumed = None,
        ];
        for change in changes {
            let mut r = base.clone();
            change(&mut r);
            assert_ne!(r.output_digest(), digest, "{r:?}");
        }
    }

    #[test]
    fn canonical_hashes_ignore_key_order_and_number_spelling() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":[1.0,"x"]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":[1,"x"],"b":1e0}"#).unwrap();
        assert_eq!(canonical_sha256(&a), canonical_sha256(&b));
        // sha256 of `{"a":[1,"x"],"b":1}`
        assert_eq!(
            canonical_sha256(&a),
            crate::task::hex(&sha2::Sha256::digest(br#"{"a":[1,"x"],"b":1}"#))
        );
    }

    fn sample() -> TaskResult {
        let mut r = TaskResult::new(Some("t-1".into()), Status::Ok);
        r.entry = Some("fib".into());
        r.args = vec![json!(12)];
        r.result = Some(vec![json!(144)]);
        r.fuel_consumed = Some(99);
        r.duration_ms = Some(0.5);
        r.module_sha256 = Some("ab".repeat(32));
        r.input_sha256 = Some("cd".repeat(32));
        r.args_sha256 = Some(canonical_sha256(&r.args));
        r.engine = Some(Engine::wasmi(true, false));
        r.limits = Some(AppliedLimits {
            fuel: Some(1000),
            memory_bytes: 1 << 20,
            timeout_ms: Some(1500),
        });
        r.output_sha256 = Some(r.output_digest());
        r
    }

    #[test]
    fn statuses_serialize_in_snake_case_and_map_to_exit_codes() {
        let cases = [
            (Status::Ok, "ok", 0),
            (Status::Trap, "trap", 2),
            (Status::OutOfFuel, "out_of_fuel", 2),
            (Status::Timeout, "timeout", 3),
            (Status::InvalidModule, "invalid_module", 2),
            (Status::InvalidInput, "invalid_input", 2),
            (Status::Error, "error", 1),
        ];
        for (status, name, code) in cases {
            assert_eq!(serde_json::to_value(status).unwrap(), json!(name));
            assert_eq!(status.as_str(), name);
            assert_eq!(status.exit_code(), code, "{name}");
        }
    }

    #[test]
    fn result_has_every_documented_field() {
        let v: Value = serde_json::from_str(&sample().to_line()).unwrap();
        for key in [
            "schema_version",
            "task_id",
            "status",
            "entry",
            "args",
            "result",
            "exit_code",
            "fuel_consumed",
            "duration_ms",
            "module_sha256",
            "input_sha256",
            "args_sha256",
            "engine",
            "limits",
            "output_sha256",
            "error",
        ] {
            assert!(v.get(key).is_some(), "missing {key}: {v}");
        }
        assert_eq!(v["schema_version"], json!(SCHEMA_VERSION));
        // Empty output is left out rather than written as an empty object.
        assert!(v.get("stdout").is_none());
        let back: TaskResult = serde_json::from_value(v).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn small_result_fits_unchanged() {
        let r = sample();
        assert_eq!(r.fit_to(TERMINATION_MESSAGE_LIMIT), r.to_line());
    }

    #[test]
    fn big_stdout_is_dropped_first_and_said_so() {
        let mut r = sample();
        r.stdout = GuestOutput::from_capture(&vec![b'x'; 64 * 1024], 1 << 20);
        let msg = r.fit_to(TERMINATION_MESSAGE_LIMIT);
        assert!(msg.len() <= TERMINATION_MESSAGE_LIMIT);
        let v: Value = serde_json::from_str(&msg).unwrap();
        assert_eq!(v["elided"], json!(["stdout"]));
        assert_eq!(v["result"], json!([144]));
        assert_eq!(v["stdout"]["bytes"], json!(1 << 20));
    }

    #[test]
    fn everything_big_still_fits_and_parses() {
        let mut r = sample();
        let huge = "é".repeat(100_000);
        r.task_id = Some(huge.clone());
        r.entry = Some(huge.clone());
        r.error = Some(huge.clone());
        r.args = vec![json!(huge.clone())];
        r.result = Some(vec![json!(huge.clone())]);
        r.stdout = GuestOutput::from_capture(huge.as_bytes(), 1 << 30);
        r.stderr = GuestOutput::from_capture(huge.as_bytes(), 1 << 30);
        let msg = r.fit_to(TERMINATION_MESSAGE_LIMIT);
        assert!(msg.len() <= TERMINATION_MESSAGE_LIMIT, "{}", msg.len());
        let v: Value = serde_json::from_str(&msg).unwrap();
        assert_eq!(v["status"], json!("ok"));
        assert!(v["elided"].as_array().unwrap().len() >= 5);
    }

    fn arb_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            any::<String>(),
            (any::<char>(), 0usize..400_000).prop_map(|(c, n)| c.to_string().repeat(n)),
            Just("\u{0}".repeat(300_000)),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// Whatever a module and a task's author put in a result, the line written is valid
        /// JSON of at most `MAX_RESULT_BYTES`, the capped fields are within their caps, and
        /// every field that was cut is named.
        #[test]
        fn a_result_line_is_bounded_whatever_its_fields_hold(
            id in arb_text(), entry in arb_text(), error in arb_text(),
            args in proptest::collection::vec(arb_text(), 0..40),
            out in arb_text(),
        ) {
            let mut r = sample();
            r.task_id = Some(id.clone());
            r.entry = Some(entry.clone());
            r.error = Some(error.clone());
            r.args = args.iter().cloned().map(Value::from).collect();
            r.stdout = GuestOutput::from_capture(out.as_bytes(), out.len() as u64);
            let line = r.to_bounded_line();
            proptest::prop_assert!(line.len() <= MAX_RESULT_BYTES, "{}", line.len());
            let back: TaskResult = serde_json::from_str(&line).unwrap();
            let named = |f: &str| back.elided.iter().any(|e| e == f);
            for (field, original, max) in [
                ("task_id", &id, MAX_NAME_BYTES),
                ("entry", &entry, MAX_NAME_BYTES),
                ("error", &error, MAX_ERROR_BYTES),
            ] {
                let kept = match field {
                    "task_id" => back.task_id.clone(),
                    "entry" => back.entry.clone(),
                    _ => back.error.clone(),
                }
                .unwrap_or_default();
                proptest::prop_assert!(kept.len() <= max || named(field));
                proptest::prop_assert_eq!(kept != *original, named(field), "{}", field);
            }
            proptest::prop_assert!(json_len(&back.args) <= MAX_ARGS_BYTES || named("args"));
            if back.args.len() < args.len() {
                proptest::prop_assert!(named("args"));
            }
        }
    }

    #[test]
    fn capture_cut_mid_character_does_not_invent_replacement_chars() {
        let text = "aé"; // 'é' is two bytes; keep only its first
        let out = GuestOutput::from_capture(&text.as_bytes()[..2], 3);
        assert_eq!(out.text, "a");
        assert!(out.truncated);
        assert_eq!(out.bytes, 3);
        // Invalid bytes the guest really wrote are shown as replacement characters.
        let out = GuestOutput::from_capture(&[0xff, b'a'], 2);
        assert_eq!(out.text, "\u{fffd}a");
        assert!(!out.truncated);
    }
}
