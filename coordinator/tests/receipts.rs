//! Receipts, re-execution checks and the result cache, end to end on the local backend:
//! receipts checked by an Ed25519 implementation no one here wrote (Python's
//! `cryptography`, with the `rfc8785` package's canonical form) both ways; `coordinator
//! receipt verify --reexecute`; `verify_fraction` flagging a module that reads the clock;
//! cache hits that start no process, across a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use coordinator::receipt::{read_signing_key, Receipt};
use serde_json::{json, Value};
use support::{coordinator_bin, sample_mirror, task_line, wasm_of, write_lines, Coord, Mirror};

/// The Python of the venv `scripts/ensure-validate.sh` makes (`make unit` runs it first).
fn python() -> PathBuf {
    let venv = std::env::var_os("VALIDATE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::repo_root().join("target/validate-venv"));
    let python = venv.join("bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import cryptography, rfc8785"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} with cryptography and rfc8785 is missing: run scripts/ensure-validate.sh (make unit does)",
        python.display()
    );
    python
}

/// Python's side: `keygen PEM`, `verify` (report lines on stdin: each receipt's signature
/// over its RFC 8785 form, and its result_sha256 against the report's result), `sign PEM`
/// (a receipt on stdin, signed and printed).
const PY: &str = r#"
import base64, hashlib, json, sys, rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
mode = sys.argv[1]
if mode == "keygen":
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    open(sys.argv[2], "wb").write(pem)
elif mode == "verify":
    for line in sys.stdin:
        report = json.loads(line)
        r = dict(report["receipt"])
        sig = base64.b64decode(r.pop("signature"))
        Ed25519PublicKey.from_public_bytes(base64.b64decode(r["public_key"])).verify(sig, rfc8785.dumps(r))
        if report.get("result") is not None:
            assert r["result_sha256"] == hashlib.sha256(rfc8785.dumps(report["result"])).hexdigest(), "result_sha256"
        print("verified", r["task_id"])
elif mode == "sign":
    key = serialization.load_pem_private_key(open(sys.argv[2], "rb").read(), None)
    r = json.loads(sys.stdin.read())
    r.pop("signature", None)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    r["public_key"] = base64.b64encode(raw).decode()
    r["signature"] = base64.b64encode(key.sign(rfc8785.dumps(r))).decode()
    print(json.dumps(r))
"#;

fn py(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(python())
        .arg("-c")
        .arg(PY)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A fresh Ed25519 key made by Python, as PKCS#8 PEM (what openssl writes).
fn python_key(dir: &Path) -> PathBuf {
    let pem = dir.join("key.pem");
    let out = py(&["keygen", pem.to_str().unwrap()], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pem
}

/// `coordinator receipt verify ARGS...`: (exit code, stdout + stderr).
fn verify(args: &[&str]) -> (i32, String) {
    let out = Command::new(coordinator_bin())
        .args(["receipt", "verify"])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Runs the three samples signed with a Python-made key; returns (mirror, key, reports).
fn signed_samples(dir: &Path) -> (Mirror, PathBuf, Vec<Value>) {
    let (mirror, samples) = sample_mirror();
    let key = python_key(dir);
    let lines: Vec<String> = samples
        .iter()
        .map(|(id, (wasm, input, _))| task_line(id, wasm, Some(input), None))
        .collect();
    let tasks = write_lines(dir, "tasks.jsonl", &lines);
    let run = Coord::with_mirror(mirror.path())
        .arg("--tasks")
        .arg(&tasks)
        .arg("--signing-key-file")
        .arg(&key)
        .run();
    run.expect_code(0);
    let reports = run.results();
    assert_eq!(reports.len(), 3, "{}", run.describe());
    (mirror, key, reports)
}

#[test]
fn our_receipts_verify_with_python_cryptography_and_theirs_with_ours() {
    let dir = tempfile::tempdir().unwrap();
    let (_mirror, key, reports) = signed_samples(dir.path());
    let lines: Vec<String> = reports.iter().map(Value::to_string).collect();
    let out = py(&["verify"], &lines.join("\n"));
    assert!(
        out.status.success(),
        "Python's cryptography refused our receipts: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    // The key Python made is the one that signed, as our side reads it.
    let ours = read_signing_key(&key).unwrap();
    let public = base64_of(ours.verifying_key().as_bytes());
    for r in &reports {
        assert_eq!(r["receipt"]["public_key"], public.as_str());
        assert_eq!(r["receipt"]["status"], "ok");
        assert_eq!(r["receipt"]["output_sha256"], r["result"]["output_sha256"]);
    }

    // The other way: Python signs (another key of its own), ours verifies.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let their_key = python_key(&other);
    let receipt = reports[0]["receipt"].to_string();
    let out = py(&["sign", their_key.to_str().unwrap()], &receipt);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed = dir.path().join("theirs.json");
    std::fs::write(&signed, &out.stdout).unwrap();
    let parsed: Receipt = serde_json::from_slice(&out.stdout).unwrap();
    parsed.verify().unwrap();
    let (code, text) = verify(&[signed.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("signature: valid"), "{text}");

    // Any field changed after signing: refused, exit 1.
    let mut tampered: Value = serde_json::from_slice(&out.stdout).unwrap();
    tampered["fuel_consumed"] = json!(tampered["fuel_consumed"].as_u64().unwrap() + 1);
    let bad = dir.path().join("tampered.json");
    std::fs::write(&bad, tampered.to_string()).unwrap();
    let (code, text) = verify(&[bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("INVALID"), "{text}");
    // Not a receipt at all: usage, exit 2.
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{\"hello\": 1}").unwrap();
    assert_eq!(verify(&[junk.to_str().unwrap()]).0, 2);
}

#[test]
fn files_that_hold_no_receipt_are_usage_errors_whatever_they_hold() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_string_lossy().into_owned()
    };
    let huge = dir.path().join("huge.json");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let cases = [
        (file("empty.json", b""), "holds no receipt"),
        (
            file("binary.json", &[0xff, 0xfe, 0, 1, 2, 0x80]),
            "holds no receipt",
        ),
        (
            file("control.json", b"{\"receipt\": \"\x1b[31m\"}"),
            "holds no receipt",
        ),
        (
            file(
                "wrong-type.json",
                br#"{"receipt": {"receipt_version": "one"}}"#,
            ),
            "holds no receipt",
        ),
        (file("array.json", b"[1, 2, 3]"), "holds no receipt"),
        (huge.to_string_lossy().into_owned(), "is larger than"),
        ("/dev/zero".to_owned(), "is larger than"),
        (dir.path().to_string_lossy().into_owned(), "cannot read"),
        (
            dir.path().join("none").to_string_lossy().into_owned(),
            "cannot read",
        ),
    ];
    // A receipt whose text fields hold control characters: refused, and not echoed raw.
    let (_mirror, _key, reports) = signed_samples(dir.path());
    let mut forged = reports[0]["receipt"].clone();
    forged["finished_at"] = json!("2026-12-01T00:00:00Z\u{1b}[2J");
    forged["task_id"] = json!("fib\u{1b}]0;pwned\u{7}");
    let (code, text) = verify(&[&file("forged.json", forged.to_string().as_bytes())]);
    assert_eq!(code, 1, "{text}");
    assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
    for (path, says) in cases {
        let (code, text) = verify(&[&path]);
        assert_eq!(code, 2, "{path}: {text}");
        assert!(text.contains(says), "{path}: {text}");
        assert!(
            !text.contains('\x1b'),
            "control characters are not echoed: {text}"
        );
    }
}

fn base64_of(bytes: &[u8]) -> String {
    let out = Command::new(python())
        .args([
            "-c",
            "import base64,sys; print(base64.b64encode(bytes.fromhex(sys.argv[1])).decode())",
        ])
        .arg(runner::task::hex(bytes))
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn reexecution_matches_the_samples_and_catches_an_altered_output_hash() {
    let dir = tempfile::tempdir().unwrap();
    let (mirror, key, reports) = signed_samples(dir.path());
    let mirror_arg = mirror.path().to_str().unwrap();
    for r in &reports {
        let id = r["task_id"].as_str().unwrap();
        let file = dir.path().join(format!("{id}.json"));
        std::fs::write(&file, r.to_string()).unwrap();
        let (code, text) = verify(&[
            file.to_str().unwrap(),
            "--reexecute",
            "--mirror",
            mirror_arg,
        ]);
        assert_eq!(code, 0, "{id}: {text}");
        assert!(text.contains("re-execution: match"), "{id}: {text}");

        // The output hash altered and signed again with the same key: the signature
        // holds, the re-execution does not.
        let mut receipt: Receipt = serde_json::from_value(r["receipt"].clone()).unwrap();
        let claimed = receipt.output_sha256.clone().unwrap();
        let altered = format!(
            "{}{}",
            &claimed[..63],
            if claimed.ends_with('0') { "1" } else { "0" }
        );
        receipt.output_sha256 = Some(altered.clone());
        receipt.sign(&read_signing_key(&key).unwrap());
        let file = dir.path().join(format!("{id}-altered.json"));
        std::fs::write(&file, serde_json::to_string(&receipt).unwrap()).unwrap();
        let (code, text) = verify(&[
            file.to_str().unwrap(),
            "--reexecute",
            "--mirror",
            mirror_arg,
        ]);
        assert_eq!(code, 1, "{id}: {text}");
        assert!(
            text.contains("re-execution: mismatch")
                && text.contains(&altered)
                && text.contains(&claimed),
            "{id}: both hashes named: {text}"
        );
    }
    // A module that is not where the receipt says: nothing decided, exit 3.
    let empty = tempfile::tempdir().unwrap();
    let file = dir.path().join("fib.json");
    let (code, text) = verify(&[
        file.to_str().unwrap(),
        "--reexecute",
        "--mirror",
        empty.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{text}");
}

#[test]
fn a_check_flags_a_module_that_reads_the_clock_and_never_a_deterministic_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mirror, samples) = sample_mirror();
    let clock = mirror.add("clock.wasm", &wasm_of(support::CLOCK_WAT));
    let mut det =
        json!({"task_id": "clock-det", "wasm_cid": clock, "entry": "now", "deterministic": true});
    let mut lines = vec![
        task_line("clock", &clock, None, Some("now")),
        det.to_string(),
    ];
    for (id, (wasm, input, _)) in &samples {
        lines.push(task_line(id, wasm, Some(input), None));
    }
    det["task_id"] = json!("clock-det-2");
    lines.push(det.to_string());
    let tasks = write_lines(dir.path(), "tasks.jsonl", &lines);
    let run = Coord::with_mirror(mirror.path())
        .arg("--tasks")
        .arg(&tasks)
        .args(["--verify-fraction", "1", "--cache", "off"])
        .run();
    let by_id = run.by_id();
    let clock = &by_id["clock"];
    assert_eq!(clock["status"], "nondeterministic", "{}", run.describe());
    let v = &clock["verification"];
    assert_eq!(v["matched"], false);
    assert_ne!(v["output_sha256"], v["check_output_sha256"]);
    assert_eq!(clock["receipt"]["status"], "nondeterministic");
    assert!(clock["error"]
        .as_str()
        .unwrap()
        .contains(v["check_output_sha256"].as_str().unwrap()));
    for id in ["clock-det", "clock-det-2", "fib", "affine", "add"] {
        let r = &by_id[id];
        assert_eq!(r["status"], "ok", "{id}: {}", run.describe());
        assert_eq!(r["verification"]["matched"], true, "{id}");
        assert_eq!(
            r["verification"]["output_sha256"],
            r["verification"]["check_output_sha256"]
        );
    }
    // Seeded from the content, not the name: two deterministic tasks see one clock.
    assert_eq!(
        by_id["clock-det"]["result"]["result"],
        by_id["clock-det-2"]["result"]["result"]
    );
    // A nondeterministic result is not an infrastructure failure.
    run.expect_code(0);
    run.expect_work_dir_clean();
}

#[test]
fn a_cache_hit_starts_no_process_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mirror, samples) = sample_mirror();
    let (wasm, input, _) = &samples["fib"];
    // A runner that counts its starts, then is the real one.
    let real = coordinator_bin().parent().unwrap().join("runner");
    let starts = dir.path().join("starts");
    let counting = support::write_script(
        dir.path(),
        "runner",
        &format!(
            "echo x >> '{}'\nexec '{}' \"$@\"",
            starts.display(),
            real.display()
        ),
    );
    let state = dir.path().join("ledger.sqlite");
    let det = |id: &str| {
        json!({"task_id": id, "wasm_cid": wasm, "input_cid": input, "deterministic": true})
            .to_string()
    };
    let count = || std::fs::read_to_string(&starts).map_or(0, |s| s.lines().count());
    let run_tasks = |name: &str, lines: &[String]| {
        let tasks = write_lines(dir.path(), name, lines);
        let run = Coord::with_mirror(mirror.path())
            .arg("--tasks")
            .arg(&tasks)
            .arg("--state")
            .arg(&state)
            .env("COORDINATOR_RUNNER_PATH", &counting)
            .run();
        run.expect_code(0);
        run
    };

    let first = run_tasks("1.jsonl", &[det("d1")]);
    assert_eq!(count(), 1);
    let d1 = &first.by_id()["d1"];
    assert_eq!(d1["cached"], Value::Null);
    assert_eq!(d1["result"]["engine"]["deterministic"], true);

    // A restart: the ledger answers d2 (same module, input and limits) without a run; n1
    // (the same, without deterministic) and d3 (another fuel limit) run.
    let mut d3: Value = serde_json::from_str(&det("d3")).unwrap();
    d3["limits"] = json!({"fuel": 1_000_000});
    let second = run_tasks(
        "2.jsonl",
        &[
            det("d2"),
            task_line("n1", wasm, Some(input), None),
            d3.to_string(),
        ],
    );
    assert_eq!(count(), 3, "n1 and d3 ran, d2 did not");
    let by_id = second.by_id();
    let d2 = &by_id["d2"];
    assert_eq!(d2["status"], "ok", "{}", second.describe());
    assert_eq!(d2["cached"], true);
    assert_eq!(d2["attempts"], 0);
    assert_eq!(d2["cached_from"]["task_id"], "d1");
    let original: Receipt = serde_json::from_value(d1["receipt"].clone()).unwrap();
    assert_eq!(d2["cached_from"]["receipt_sha256"], original.sha256());
    assert_eq!(d2["receipt"]["cached_from"], original.sha256());
    assert_eq!(d2["receipt"]["task_id"], "d2");
    assert_eq!(d2["result"], d1["result"]);
    for id in ["n1", "d3"] {
        assert_eq!(by_id[id]["cached"], Value::Null, "{id}");
        assert_eq!(by_id[id]["result"]["result"], json!([144]), "{id}");
    }

    // With the cache off, an equal task runs.
    let tasks = write_lines(dir.path(), "3.jsonl", &[det("d4")]);
    let run = Coord::with_mirror(mirror.path())
        .arg("--tasks")
        .arg(&tasks)
        .arg("--state")
        .arg(&state)
        .args(["--cache", "off"])
        .env("COORDINATOR_RUNNER_PATH", &counting)
        .run();
    run.expect_code(0);
    assert_eq!(count(), 4);
    assert_eq!(run.by_id()["d4"]["cached"], Value::Null);
}

#[test]
fn a_signing_key_that_is_not_one_stops_startup_naming_the_key_setting() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "0xdeadbeefsecret\n").unwrap();
    let run = Coord::with_mirror(&support::samples())
        .arg("--signing-key-file")
        .arg(&key)
        .run();
    run.expect_code(2)
        .expect_stderr_mentions("signing_key_file", "the setting")
        .expect_stderr_mentions("PKCS#8", "the format wanted");
    assert!(
        !run.stderr.contains("deadbeef"),
        "the key's bytes are never shown"
    );
    // Without a key: unsigned receipts, said once.
    let run = Coord::with_mirror(&support::samples())
        .arg("--scenario")
        .arg("add")
        .run();
    run.expect_code(0);
    assert_eq!(run.stderr.matches("receipts are not signed").count(), 1);
    let r = &run.by_id()["add"];
    assert_eq!(r["receipt"]["signature"], Value::Null);
    assert_eq!(r["receipt"]["public_key"], Value::Null);
    assert_eq!(r["receipt"]["result_sha256"].as_str().unwrap().len(), 64);
}
