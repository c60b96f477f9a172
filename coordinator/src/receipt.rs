//! Execution receipts: the one definition of what the coordinator attests about a task.
//!
//! A receipt binds the task (id, module and input by CID and SHA-256, entry, arguments'
//! SHA-256), the engine and limits it ran under, how it ended, and two hashes of the
//! runner's result: `result_sha256` (the whole result object, the contract's `resultHash`)
//! and `output_sha256` (only what the computation produced; equal for two honest runs of a
//! deterministic task, see [`runner::TaskResult::output_digest`]). Its wire form is RFC 8785
//! canonical JSON; it is signed with Ed25519 over the canonical form of the receipt
//! without `signature`, by the coordinator's key (`signing_key_file`). The runner never
//! sees the key.
//!
//! Pure: building from a report, canonical bytes, signing and checking. Reading the key
//! file is the one IO here ([`read_signing_key`]).

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use runner::result::{canonical_sha256, AppliedLimits, Engine};
use runner::TaskResult;
use serde::{Deserialize, Serialize};

use crate::task::{ReportStatus, TaskReport};

/// Bumped when a field is renamed, retyped or removed.
pub const RECEIPT_VERSION: u32 = 1;

/// What the coordinator attests about one task. Every field is always written (`null`
/// where the task never got that far: a task that failed to fetch has no module hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub receipt_version: u32,
    pub task_id: String,
    pub module_cid: String,
    pub module_sha256: Option<String>,
    pub input_cid: Option<String>,
    pub input_sha256: Option<String>,
    /// The function that ran (the runner's choice), else the one the task named.
    pub entry: Option<String>,
    pub args_sha256: Option<String>,
    pub engine: Option<Engine>,
    pub limits: Option<AppliedLimits>,
    pub status: ReportStatus,
    pub fuel_consumed: Option<u64>,
    /// Hex SHA-256 of the RFC 8785 form of the runner's whole result object.
    pub result_sha256: Option<String>,
    /// Hex SHA-256 of what the computation produced.
    pub output_sha256: Option<String>,
    /// Set on a task answered from the result cache: the `receipt_sha256` of the run that
    /// produced the result.
    pub cached_from: Option<String>,
    /// Base64 of the signer's 32-byte Ed25519 public key; `null` when unsigned.
    pub public_key: Option<String>,
    /// When the task finished, RFC 3339 UTC.
    pub finished_at: String,
    /// Base64 Ed25519 signature over [`Receipt::signing_bytes`]; `null` when unsigned.
    pub signature: Option<String>,
}

/// Why a receipt does not check out, or a key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("cannot read the signing key {path}: {source}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the signing key {path} is not an Ed25519 private key in PKCS#8 PEM ({why}); make one with `openssl genpkey -algorithm ed25519 -out {path}`")]
    NotAKey { path: PathBuf, why: String },
    #[error("the receipt is not signed (no signature or public_key)")]
    Unsigned,
    #[error("the receipt's {field} is not valid: {why}")]
    Field { field: &'static str, why: String },
    #[error("the receipt's signature does not verify with its public_key: the receipt was changed after signing, or signed by another key")]
    BadSignature,
}

impl Receipt {
    /// The unsigned receipt of a finished task. `finished_at` is the task's finish time.
    pub fn of(report: &TaskReport, finished_at: String) -> Receipt {
        let r = report.result.as_ref();
        let from_result = |f: fn(&TaskResult) -> Option<String>| r.and_then(f);
        Receipt {
            receipt_version: RECEIPT_VERSION,
            task_id: report.task.task_id.clone(),
            module_cid: report.task.wasm_cid.clone(),
            module_sha256: from_result(|r| r.module_sha256.clone()),
            input_cid: report.task.input_cid.clone(),
            input_sha256: from_result(|r| r.input_sha256.clone()),
            entry: from_result(|r| r.entry.clone()).or_else(|| report.task.entry.clone()),
            args_sha256: from_result(|r| r.args_sha256.clone()),
            engine: r.and_then(|r| r.engine.clone()),
            limits: r.and_then(|r| r.limits),
            status: report.status,
            fuel_consumed: r.and_then(|r| r.fuel_consumed),
            result_sha256: r.map(result_sha256),
            output_sha256: r.map(output_sha256),
            cached_from: report
                .cached_from
                .as_ref()
                .map(|c| c.receipt_sha256.clone())
                .filter(|s| !s.is_empty()),
            public_key: None,
            finished_at,
            signature: None,
        }
    }

    /// The bytes signed: the RFC 8785 form of the receipt without `signature`.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.remove("signature");
        }
        // Serializing a JSON value cannot fail (its keys are strings, its numbers finite).
        serde_json_canonicalizer::to_vec(&value).unwrap_or_default()
    }

    /// The receipt's RFC 8785 JSON, signature included: what is published and stored.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json_canonicalizer::to_vec(self).unwrap_or_default()
    }

    /// Hex SHA-256 of [`Receipt::canonical`]: how a WasmTask's status and a cached task
    /// name a receipt.
    pub fn sha256(&self) -> String {
        canonical_sha256(self)
    }

    /// Signs with `key`, setting `public_key` and `signature`.
    pub fn sign(&mut self, key: &SigningKey) {
        self.public_key = Some(BASE64.encode(key.verifying_key().as_bytes()));
        self.signature = None;
        let signature = key.sign(&self.signing_bytes());
        self.signature = Some(BASE64.encode(signature.to_bytes()));
    }

    /// Checks the fields' forms, then the signature (strictly: no malleable or weak-key
    /// signatures). An unsigned receipt fails with [`ReceiptError::Unsigned`] after its
    /// fields are checked.
    pub fn verify(&self) -> Result<(), ReceiptError> {
        self.check_fields()?;
        let (Some(key), Some(sig)) = (&self.public_key, &self.signature) else {
            return Err(ReceiptError::Unsigned);
        };
        let key = decode_fixed::<32>("public_key", key)?;
        let key = VerifyingKey::from_bytes(&key).map_err(|e| ReceiptError::Field {
            field: "public_key",
            why: e.to_string(),
        })?;
        let sig = Signature::from_bytes(&decode_fixed::<64>("signature", sig)?);
        key.verify_strict(&self.signing_bytes(), &sig)
            .map_err(|_| ReceiptError::BadSignature)
    }

    /// The fields' forms: the version is known, hashes are 64 lowercase hex digits, the
    /// finish time is RFC 3339.
    pub fn check_fields(&self) -> Result<(), ReceiptError> {
        if self.receipt_version != RECEIPT_VERSION {
            return Err(ReceiptError::Field {
                field: "receipt_version",
                why: format!(
                    "{} (this coordinator reads version {RECEIPT_VERSION})",
                    self.receipt_version
                ),
            });
        }
        for (field, value) in [
            ("module_sha256", &self.module_sha256),
            ("input_sha256", &self.input_sha256),
            ("args_sha256", &self.args_sha256),
            ("result_sha256", &self.result_sha256),
            ("output_sha256", &self.output_sha256),
            ("cached_from", &self.cached_from),
        ] {
            if let Some(v) = value {
                if v.len() != 64 || !v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    return Err(ReceiptError::Field {
                        field,
                        why: format!("{v:?} is not 64 lowercase hex digits"),
                    });
                }
            }
        }
        if self
            .finished_at
            .parse::<k8s_openapi::jiff::Timestamp>()
            .is_err()
        {
            return Err(ReceiptError::Field {
                field: "finished_at",
                why: format!("{:?} is not an RFC 3339 time", self.finished_at),
            });
        }
        Ok(())
    }
}

/// The coordinator's receipt signer: its key, or none (receipts go out unsigned). Debug
/// shows the public key only.
#[derive(Clone, Default)]
pub struct Signer(Option<std::sync::Arc<SigningKey>>);

impl Signer {
    pub fn new(key: Option<SigningKey>) -> Self {
        Self(key.map(std::sync::Arc::new))
    }

    /// The receipt of a finished task, signed when there is a key.
    pub fn receipt(&self, report: &TaskReport, finished_at: String) -> Receipt {
        let mut r = Receipt::of(report, finished_at);
        if let Some(key) = &self.0 {
            r.sign(key);
        }
        r
    }

    /// Base64 of the public key, when there is a key.
    pub fn public_key(&self) -> Option<String> {
        self.0
            .as_ref()
            .map(|k| BASE64.encode(k.verifying_key().as_bytes()))
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Signer").field(&self.public_key()).finish()
    }
}

/// Hex SHA-256 of the RFC 8785 form of a runner's whole result: a receipt's
/// `result_sha256` and the contract's `resultHash`.
pub fn result_sha256(result: &TaskResult) -> String {
    canonical_sha256(result)
}

/// What a result says its computation produced: the runner's own `output_sha256` (taken
/// before any copy of the result was cut), else, from a runner that predates it, the digest
/// of the result as it arrived.
pub fn output_sha256(result: &TaskResult) -> String {
    result
        .output_sha256
        .clone()
        .unwrap_or_else(|| result.output_digest())
}

fn decode_fixed<const N: usize>(field: &'static str, text: &str) -> Result<[u8; N], ReceiptError> {
    let bytes = BASE64.decode(text).map_err(|e| ReceiptError::Field {
        field,
        why: format!("not base64: {e}"),
    })?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| ReceiptError::Field {
        field,
        why: format!("{} bytes; it must be {N}", bytes.len()),
    })
}

/// Reads the coordinator's Ed25519 key: PKCS#8 PEM, as `openssl genpkey -algorithm
/// ed25519` writes it. Errors never include the file's contents.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, ReceiptError> {
    let text = crate::config::read_key_file(path).map_err(|source| ReceiptError::KeyFile {
        path: path.to_owned(),
        source,
    })?;
    SigningKey::from_pkcs8_pem(&text).map_err(|e| ReceiptError::NotAKey {
        path: path.to_owned(),
        why: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Task;
    use serde_json::json;

    /// RFC 8032's first test key (section 7.1, TEST 1), in PKCS#8 PEM.
    pub const TEST_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";

    fn key() -> SigningKey {
        SigningKey::from_pkcs8_pem(TEST_KEY_PEM).unwrap()
    }

    fn report() -> TaskReport {
        let mut task = Task::example("fib-1");
        task.input_cid = Some("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy".into());
        let mut r = TaskResult::new(Some("fib-1".into()), runner::Status::Ok);
        r.entry = Some("fib".into());
        r.args = vec![json!(12)];
        r.result = Some(vec![json!(144)]);
        r.fuel_consumed = Some(1234);
        r.module_sha256 = Some("ab".repeat(32));
        r.input_sha256 = Some("cd".repeat(32));
        r.args_sha256 = Some(canonical_sha256(&r.args));
        r.engine = Some(Engine::wasmi(true, true));
        r.limits = Some(AppliedLimits {
            fuel: Some(10_000),
            memory_bytes: 1 << 28,
            timeout_ms: Some(60_000),
        });
        r.output_sha256 = Some(r.output_digest());
        let mut report = TaskReport::new(&task, ReportStatus::OK);
        report.result = Some(r);
        report
    }

    fn signed() -> Receipt {
        let mut r = Receipt::of(&report(), "2026-12-01T07:00:00.000Z".into());
        r.sign(&key());
        r
    }

    #[test]
    fn the_test_key_is_rfc_8032s() {
        // RFC 8032 7.1 TEST 1: the public key of that secret.
        assert_eq!(
            runner::task::hex(key().verifying_key().as_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
    }

    /// RFC 8785's own examples (sections 3.2.2 and 3.2.3): what is signed is this form.
    #[test]
    fn the_canonical_form_is_rfc_8785s() {
        let cases = [
            (
                r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
                   "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
                   "literals": [null, true, false]}"#,
                r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#,
            ),
            (
                r#"{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
                   "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control",
                   "\u00f6": "Latin Small Letter O With Diaeresis"}"#,
                "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}",
            ),
        ];
        for (input, expected) in cases {
            let value: serde_json::Value = serde_json::from_str(input).unwrap();
            let got = serde_json_canonicalizer::to_string(&value).unwrap();
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn a_signed_receipt_verifies_and_binds_the_report() {
        let r = signed();
        r.verify().unwrap();
        let rep = report();
        let result = rep.result.as_ref().unwrap();
        assert_eq!(
            r.result_sha256.as_deref(),
            Some(result_sha256(result).as_str())
        );
        assert_eq!(r.output_sha256, result.output_sha256);
        assert_eq!(r.module_sha256, result.module_sha256);
        assert_eq!(r.entry.as_deref(), Some("fib"));
        assert_eq!(r.fuel_consumed, Some(1234));
        // The canonical form reads back to the same receipt, and is sorted.
        let text = String::from_utf8(r.canonical()).unwrap();
        assert!(text.starts_with(r#"{"args_sha256":"#), "{text}");
        assert_eq!(serde_json::from_str::<Receipt>(&text).unwrap(), r);
    }

    #[test]
    fn changing_any_field_breaks_the_signature() {
        let good = serde_json::to_value(signed()).unwrap();
        let map = good.as_object().unwrap();
        for (field, value) in map {
            if field == "signature" {
                continue;
            }
            let other = match value {
                serde_json::Value::Null => json!("00".repeat(32)),
                serde_json::Value::String(s) if s.len() == 64 => json!("0".repeat(64)),
                serde_json::Value::String(_) if field == "public_key" => {
                    json!(BASE64.encode(SigningKey::from_bytes(&[7; 32]).verifying_key().as_bytes()))
                }
                serde_json::Value::String(s) if field == "finished_at" => {
                    json!(s.replace("07:00", "07:01"))
                }
                serde_json::Value::String(s) if field == "status" => {
                    json!(if s == "ok" { "trap" } else { "ok" })
                }
                serde_json::Value::String(s) => json!(format!("{s}x")),
                serde_json::Value::Number(n) => json!(n.as_u64().unwrap() + 1),
                serde_json::Value::Object(o) => {
                    let mut o = o.clone();
                    let (k, v) = o
                        .iter()
                        .next()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .unwrap();
                    o.insert(
                        k,
                        if v == json!(true) {
                            json!(false)
                        } else if v.is_number() {
                            json!(v.as_u64().unwrap() + 1)
                        } else {
                            json!(format!("{v}x"))
                        },
                    );
                    json!(o)
                }
                other => panic!("unexpected {field}: {other}"),
            };
            let mut changed = map.clone();
            changed.insert(field.clone(), other);
            let Ok(r) = serde_json::from_value::<Receipt>(json!(changed)) else {
                continue; // a change the type refuses is caught before the signature
            };
            assert!(
                r.verify().is_err(),
                "changing {field} kept the signature valid"
            );
        }
    }

    #[test]
    fn unsigned_and_malformed_receipts_are_named() {
        let mut r = Receipt::of(&report(), "2026-12-01T07:00:00Z".into());
        assert!(matches!(r.verify(), Err(ReceiptError::Unsigned)));
        r.output_sha256 = Some("XYZ".into());
        let e = r.verify().unwrap_err().to_string();
        assert!(e.contains("output_sha256") && e.contains("XYZ"), "{e}");
        let mut r = signed();
        r.signature = Some("AAAA".into());
        let e = r.verify().unwrap_err().to_string();
        assert!(e.contains("signature") && e.contains("3 bytes"), "{e}");
    }

    #[test]
    fn a_task_that_never_ran_gets_a_receipt_without_result_hashes() {
        let task = Task::example("t");
        let report = TaskReport::new(&task, ReportStatus::FetchFailed);
        let mut r = Receipt::of(&report, "2026-12-01T07:00:00Z".into());
        assert_eq!(r.result_sha256, None);
        assert_eq!(r.module_sha256, None);
        r.sign(&key());
        r.verify().unwrap();
    }

    #[test]
    fn key_files_that_are_not_ed25519_pkcs8_are_refused_without_showing_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "0xsecretsecret\n").unwrap();
        let e = read_signing_key(&path).unwrap_err().to_string();
        assert!(e.contains("PKCS#8") && !e.contains("secret"), "{e}");
        std::fs::write(&path, TEST_KEY_PEM).unwrap();
        assert_eq!(
            read_signing_key(&path).unwrap().to_bytes(),
            key().to_bytes()
        );
        let e = read_signing_key(&dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read the signing key"), "{e}");
        // Endless, huge or binary: refused by what it is, never read whole or shown.
        let e = read_signing_key(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a key file"), "{e}");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let e = read_signing_key(&path).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
        std::fs::write(
            &path,
            [0xff, 0xfe, b's', b'e', b'c', b'r', b'e', b't', 0x80],
        )
        .unwrap();
        let e = read_signing_key(&path).unwrap_err().to_string();
        assert!(e.contains("not text") && !e.contains("secret"), "{e}");
    }
}
