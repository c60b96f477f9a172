//! Configuration: defaults < TOML file (`--config`, `COORDINATOR_CONFIG`) < `COORDINATOR_*`
//! environment < flags, layered with figment. The only module that reads the environment.
//!
//! The Go coordinator's names keep their meaning and defaults (`COORDINATOR_NAMESPACE`,
//! `COORDINATOR_EXECUTOR_IMAGE`, `COORDINATOR_IPFS_MIRROR`, `COORDINATOR_IPFS_ENDPOINT`,
//! `COORDINATOR_JOB_TEMPLATE`). Every bad value is reported once, naming the key, the value
//! and the layer it came from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::task::{RunLimits, MAX_TIMEOUT_SECONDS};

pub const ENV_PREFIX: &str = "COORDINATOR_";
pub const CONFIG_ENV: &str = "COORDINATOR_CONFIG";

/// Which backend runs the tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// `kubernetes` inside a cluster (`KUBERNETES_SERVICE_HOST` is set), else `local`.
    Auto,
    /// `fetcher` and `runner` as child processes over a temp dir.
    Local,
    /// One Job per task.
    Kubernetes,
}

/// A feature turned on or off (`on` | `off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Switch {
    On,
    Off,
}

/// Which placeholder tasks to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    All,
    Fib,
    Affine,
    Add,
}

/// Every key, with its default. Field names are the keys of the TOML file and, upper-cased
/// after `COORDINATOR_`, of the environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub namespace: String,
    pub executor_image: String,
    pub fetcher_image: String,
    pub ipfs_mirror: PathBuf,
    pub ipfs_endpoint: String,
    pub job_template: PathBuf,
    pub backend: BackendKind,
    pub concurrency: u32,
    /// Seconds for one task, fetch and run together.
    pub task_timeout: f64,
    pub fuel: u64,
    pub tasks: Option<PathBuf>,
    pub results: Option<PathBuf>,
    pub scenario: Scenario,
    pub once: bool,
    pub retries: u32,
    pub retry_backoff_ms: u64,
    pub grace_period: f64,
    pub runner_path: Option<PathBuf>,
    pub fetcher_path: Option<PathBuf>,
    pub work_dir: Option<PathBuf>,
    /// The ledger's SQLite file (local backend); unset = [`default_state`].
    pub state: Option<PathBuf>,
    /// Seconds a finished, published WasmTask is kept (kubernetes backend).
    pub task_ttl: u64,
    /// `ADDR:PORT` of the HTTP listener; `off` (or empty) for none.
    pub listen: String,
    /// Take tasks only while holding the Lease `lease_name` (kubernetes backend).
    pub leader_election: bool,
    pub lease_name: String,
    /// Seconds a leader's Lease lasts without renewal.
    pub lease_duration: u64,
    /// The chain's JSON-RPC URL (the contract task source and result sink).
    pub contract_rpc: String,
    /// The TaskRegistry's address; set = the contract is the task source and a sink.
    pub contract_address: String,
    pub contract_from_block: u64,
    pub contract_confirmations: u64,
    /// A file holding the executor's hex private key.
    pub contract_key_file: Option<PathBuf>,
    pub contract_max_result_bytes: usize,
    /// The Ed25519 key (PKCS#8 PEM) receipts are signed with; unset = unsigned receipts.
    pub signing_key_file: Option<PathBuf>,
    /// The share of tasks run a second time and compared (0 to 1).
    pub verify_fraction: f64,
    /// Answer deterministic tasks from equal ones done before.
    pub cache: Switch,
    /// Kueue's LocalQueue for every Job (kubernetes backend); unset = no Kueue.
    pub queue_name: Option<String>,
    /// Kueue's WorkloadPriorityClass for every Job.
    pub priority_class: Option<String>,
    /// Seconds a Job may wait for Kueue's admission; unset = no limit.
    pub admission_timeout: Option<f64>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            namespace: "default".into(),
            executor_image: "executor-demo/executor:demo".into(),
            fetcher_image: "executor-demo/fetcher:demo".into(),
            ipfs_mirror: PathBuf::from("./host/wasm"),
            ipfs_endpoint: String::new(),
            job_template: PathBuf::from("k8s/job.yaml"),
            backend: BackendKind::Auto,
            concurrency: 1,
            task_timeout: 60.0,
            fuel: 10_000_000_000,
            tasks: None,
            results: None,
            scenario: Scenario::All,
            once: false,
            retries: 2,
            retry_backoff_ms: 1000,
            grace_period: 30.0,
            runner_path: None,
            fetcher_path: None,
            work_dir: None,
            state: None,
            task_ttl: 86_400,
            listen: "127.0.0.1:8080".into(),
            leader_election: false,
            lease_name: "wasm-exec-coordinator".into(),
            lease_duration: 15,
            contract_rpc: "http://127.0.0.1:8545".into(),
            contract_address: String::new(),
            contract_from_block: 0,
            contract_confirmations: 2,
            contract_key_file: None,
            contract_max_result_bytes: 1024,
            signing_key_file: None,
            verify_fraction: 0.0,
            cache: Switch::On,
            queue_name: None,
            priority_class: None,
            admission_timeout: None,
        }
    }
}

/// One line of the key table: name, meaning (for `--print-config` and the README).
pub const KEYS: &[(&str, &str)] = &[
    ("namespace", "Kubernetes namespace for Jobs"),
    ("executor_image", "the runner image (kubernetes backend)"),
    ("fetcher_image", "the fetcher image (kubernetes backend)"),
    (
        "ipfs_mirror",
        "directory whose files are served by CID when no endpoint is set",
    ),
    (
        "ipfs_endpoint",
        "IPFS gateway URL (http://host:port[/ipfs]); empty = use the mirror",
    ),
    ("job_template", "Job template (kubernetes backend)"),
    (
        "backend",
        "auto | local | kubernetes (auto: kubernetes inside a cluster)",
    ),
    ("concurrency", "tasks run at once"),
    ("task_timeout", "seconds per task, fetch and run together; the most a task's limits.timeout_seconds gets"),
    ("fuel", "the runner's fuel budget, the most a task's limits.fuel gets; 0 = metering off"),
    (
        "tasks",
        "JSON-lines task file, - for stdin; unset = the placeholder tasks",
    ),
    ("results", "JSON-lines file each result is appended to"),
    (
        "scenario",
        "placeholder tasks to emit: all | fib | affine | add",
    ),
    ("once", "exit when the task source is drained"),
    (
        "retries",
        "retries of a task after an infrastructure failure",
    ),
    (
        "retry_backoff_ms",
        "first retry's backoff, doubled each retry",
    ),
    (
        "grace_period",
        "seconds running tasks get to finish after SIGTERM/SIGINT",
    ),
    (
        "runner_path",
        "the runner binary (local backend); unset = beside the coordinator",
    ),
    (
        "fetcher_path",
        "the fetcher binary (local backend); unset = beside the coordinator",
    ),
    (
        "work_dir",
        "where per-task work dirs are made (local backend); unset = work/ beside the state file",
    ),
    (
        "state",
        "the ledger (SQLite file) of every accepted task, local backend; unset = $XDG_STATE_HOME/wasm-exec/ledger.sqlite (~/.local/state/…)",
    ),
    (
        "task_ttl",
        "seconds a finished, published WasmTask is kept before it is deleted (kubernetes backend)",
    ),
    (
        "listen",
        "ADDR:PORT of /healthz /readyz /metrics and the task API; off = none",
    ),
    (
        "leader_election",
        "take tasks only while holding the Lease (kubernetes backend; for more than one replica)",
    ),
    (
        "lease_name",
        "the coordination.k8s.io Lease of leader election",
    ),
    (
        "lease_duration",
        "seconds a leader's Lease lasts unrenewed (a new leader takes over after it)",
    ),
    (
        "contract_rpc",
        "the chain's JSON-RPC URL (contract task source and result sink)",
    ),
    (
        "contract_address",
        "the TaskRegistry contract; set = tasks come from its TaskSubmitted events and results are posted to it",
    ),
    (
        "contract_from_block",
        "the first block read when the ledger has no cursor for the contract",
    ),
    (
        "contract_confirmations",
        "blocks an event or a posted result must be deep before it counts",
    ),
    (
        "contract_key_file",
        "file holding the executor's hex private key (as `cast wallet new` prints it); needed to post",
    ),
    (
        "contract_max_result_bytes",
        "the posted `result` text is cut to this many bytes",
    ),
    (
        "signing_key_file",
        "Ed25519 private key, PKCS#8 PEM (`openssl genpkey -algorithm ed25519`), that signs every report's receipt; unset = unsigned receipts",
    ),
    (
        "verify_fraction",
        "0 to 1: the share of tasks (chosen by a hash of the id) run a second time and compared; a different output publishes the task nondeterministic",
    ),
    (
        "cache",
        "on | off: answer a task that asks for deterministic execution from an equal task done ok before, without running it",
    ),
    (
        "queue_name",
        "Kueue LocalQueue of every Job (kubernetes backend; a WasmTask's spec.queueName wins); unset = no Kueue",
    ),
    (
        "priority_class",
        "Kueue WorkloadPriorityClass of every queued Job (label kueue.x-k8s.io/priority-class)",
    ),
    (
        "admission_timeout",
        "seconds a Job may wait for Kueue to admit it before its task fails; unset = no limit",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {key} (from {origin}): {detail}")]
    Type {
        key: String,
        origin: String,
        detail: String,
    },
    #[error("configuration: {key} = {value} (from {origin}): {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        origin: String,
        reason: String,
    },
    #[error("configuration: the config file {path} does not exist (from {origin})")]
    MissingFile { path: PathBuf, origin: String },
}

/// The layers, kept so a value's origin can be named.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// The kubernetes-or-local decision for `backend = auto`.
    pub backend: BackendKind,
    figment: Figment,
    file: Option<PathBuf>,
    /// The keys given as flags.
    flag_keys: Vec<String>,
}

/// Builds the configuration. `flags` holds only what was given on the command line.
pub fn load(config_flag: Option<&Path>, flags: &Overrides) -> Result<Loaded, ConfigError> {
    let (file, file_source) = match config_flag {
        Some(p) => (Some(p.to_owned()), "--config".to_string()),
        None => (
            std::env::var_os(CONFIG_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            format!("{CONFIG_ENV} environment variable"),
        ),
    };
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = &file {
        if !path.is_file() {
            return Err(ConfigError::MissingFile {
                path: path.clone(),
                origin: file_source,
            });
        }
        figment = figment.merge(Toml::file(path));
    }
    figment = figment
        .merge(Env::prefixed(ENV_PREFIX).ignore(&["config"]))
        .merge(Serialized::defaults(flags));
    let flag_keys: Vec<String> = match serde_json::to_value(flags) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let config: Config = figment
        .extract()
        .map_err(|e| type_error(e, &flag_keys, file.as_deref()))?;
    let mut loaded = Loaded {
        backend: BackendKind::Local,
        config,
        figment,
        file,
        flag_keys,
    };
    loaded.backend = loaded.validate()?;
    Ok(loaded)
}

fn env_origin(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{} environment variable",
        key.to_ascii_uppercase()
    )
}

fn flag_origin(key: &str) -> String {
    format!("flag --{}", key.replace('_', "-"))
}

fn file_origin(file: Option<&Path>) -> String {
    format!(
        "config file {}",
        file.map(|f| f.display().to_string()).unwrap_or_default()
    )
}

/// A value that does not deserialize (`concurrency = "many"`), named with its origin.
fn type_error(e: figment::Error, flag_keys: &[String], file: Option<&Path>) -> ConfigError {
    let key = e
        .path
        .last()
        .map(|k| k.to_ascii_lowercase())
        .unwrap_or_default();
    let origin = match &e.metadata {
        Some(md) if md.name.contains("environment") => env_origin(&key),
        Some(md) if md.name.contains("TOML") => file_origin(file),
        _ if flag_keys.contains(&key) => flag_origin(&key),
        Some(md) => md.name.to_string(),
        None => "configuration".into(),
    };
    ConfigError::Type {
        key,
        origin,
        detail: e.kind.to_string(),
    }
}

impl Loaded {
    /// Where `key`'s effective value came from.
    pub fn source_of(&self, key: &str) -> String {
        if self.figment_has_flag(key) {
            flag_origin(key)
        } else if std::env::var_os(format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())).is_some() {
            env_origin(key)
        } else if self.file_has(key) {
            file_origin(self.file.as_deref())
        } else {
            "default".into()
        }
    }

    fn figment_has_flag(&self, key: &str) -> bool {
        self.flag_keys.iter().any(|k| k == key)
    }

    fn file_has(&self, key: &str) -> bool {
        self.figment
            .find_metadata(key)
            .is_some_and(|m| m.name.contains("TOML"))
    }

    fn invalid(&self, key: &'static str, value: impl ToString, reason: &str) -> ConfigError {
        ConfigError::Invalid {
            key,
            value: value.to_string(),
            origin: self.source_of(key),
            reason: reason.into(),
        }
    }

    fn validate(&self) -> Result<BackendKind, ConfigError> {
        let c = &self.config;
        if !(1..=1024).contains(&c.concurrency) {
            return Err(self.invalid("concurrency", c.concurrency, "must be between 1 and 1024"));
        }
        if !(1..=365 * 86_400).contains(&c.task_ttl) {
            return Err(self.invalid("task_ttl", c.task_ttl, "must be 1 to 31536000 seconds"));
        }
        if !(c.task_timeout.is_finite()
            && c.task_timeout > 0.0
            && c.task_timeout <= MAX_TIMEOUT_SECONDS as f64)
        {
            return Err(self.invalid(
                "task_timeout",
                c.task_timeout,
                "must be a number of seconds above 0 (at most a week)",
            ));
        }
        if !(c.verify_fraction.is_finite() && (0.0..=1.0).contains(&c.verify_fraction)) {
            return Err(self.invalid(
                "verify_fraction",
                c.verify_fraction,
                "must be a number from 0 (no checks) to 1 (every task run twice)",
            ));
        }
        if !(c.grace_period.is_finite() && c.grace_period >= 0.0 && c.grace_period <= 86400.0) {
            return Err(self.invalid(
                "grace_period",
                c.grace_period,
                "must be a number of seconds, 0 to 86400",
            ));
        }
        if c.retries > 100 {
            return Err(self.invalid("retries", c.retries, "must be at most 100"));
        }
        let endpoint = c.ipfs_endpoint.trim();
        let scheme_ok = ["http://", "https://", "file://"]
            .iter()
            .any(|p| endpoint.starts_with(p));
        if !endpoint.is_empty() && !scheme_ok {
            return Err(self.invalid(
                "ipfs_endpoint",
                endpoint,
                "must be a gateway URL such as http://127.0.0.1:18480/ipfs, or empty to use ipfs_mirror",
            ));
        }
        let listen = c.listen.trim();
        if !(listen.is_empty() || listen == "off")
            && listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(self.invalid("listen", listen, "must be ADDR:PORT such as 127.0.0.1:8080 or 0.0.0.0:8080 (port 0 picks a free one), or off"));
        }
        let backend = match c.backend {
            BackendKind::Auto if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
                BackendKind::Kubernetes
            }
            BackendKind::Auto => BackendKind::Local,
            other => other,
        };
        if backend == BackendKind::Kubernetes && endpoint.is_empty() {
            return Err(self.invalid(
                "ipfs_endpoint",
                "(empty)",
                "the kubernetes backend's pods fetch from an IPFS gateway they can reach; set it, e.g. http://ipfs:8080 (k8s/ipfs.yaml)",
            ));
        }
        if backend == BackendKind::Kubernetes && endpoint.starts_with("file://") {
            return Err(self.invalid(
                "ipfs_endpoint",
                endpoint,
                "a file:// mirror is on this machine, not in the pods; give an http:// gateway URL",
            ));
        }
        for (key, value) in [
            ("queue_name", &c.queue_name),
            ("priority_class", &c.priority_class),
        ] {
            match value.as_deref().map(str::trim) {
                Some(v) if !v.is_empty() && !crate::backend::kubernetes::kueue::is_label_value(v) => {
                    return Err(self.invalid(
                        key,
                        v,
                        "must be a Kubernetes label value (the Kueue object's name): at most 63 characters of A-Z a-z 0-9 . _ -, alphanumeric at both ends",
                    ))
                }
                _ => {}
            }
        }
        if let Some(t) = c.admission_timeout {
            if !(t.is_finite() && t > 0.0 && t <= MAX_TIMEOUT_SECONDS as f64) {
                return Err(self.invalid(
                    "admission_timeout",
                    t,
                    "must be a number of seconds above 0 (at most a week), or unset for no limit",
                ));
            }
        }
        if c.leader_election && backend != BackendKind::Kubernetes {
            return Err(self.invalid(
                "leader_election",
                true,
                "needs the kubernetes backend (the Lease lives in the cluster); with the local backend run one coordinator",
            ));
        }
        if !c.contract_address.trim().is_empty() {
            if c.contract_address
                .trim()
                .parse::<alloy::primitives::Address>()
                .is_err()
            {
                return Err(self.invalid(
                    "contract_address",
                    c.contract_address.trim(),
                    "must be a 20-byte hex address, 0x followed by 40 hex digits",
                ));
            }
            let rpc = c.contract_rpc.trim();
            if !(rpc.starts_with("http://") || rpc.starts_with("https://"))
                || rpc.parse::<crate::chain::Url>().is_err()
            {
                return Err(self.invalid(
                    "contract_rpc",
                    rpc,
                    "must be an http:// or https:// JSON-RPC URL, e.g. http://127.0.0.1:8545",
                ));
            }
            if c.contract_confirmations > 1000 {
                return Err(self.invalid(
                    "contract_confirmations",
                    c.contract_confirmations,
                    "must be at most 1000",
                ));
            }
            if !(32..=24_576).contains(&c.contract_max_result_bytes) {
                return Err(self.invalid(
                    "contract_max_result_bytes",
                    c.contract_max_result_bytes,
                    "must be 32 to 24576",
                ));
            }
            if c.contract_key_file
                .as_ref()
                .is_none_or(|p| p.as_os_str().is_empty())
            {
                return Err(self.invalid(
                    "contract_key_file",
                    "(unset)",
                    "posting results to the contract needs the executor's key: a file holding its hex private key (mount it from a Secret)",
                ));
            }
        }
        if !(2..=3600).contains(&c.lease_duration) {
            return Err(self.invalid(
                "lease_duration",
                c.lease_duration,
                "must be 2 to 3600 seconds",
            ));
        }
        if c.lease_name.is_empty()
            || c.lease_name.len() > 253
            || !c
                .lease_name
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '.')
        {
            return Err(self.invalid(
                "lease_name",
                &c.lease_name,
                "must be a Kubernetes object name: lowercase letters, digits, '-' and '.'",
            ));
        }
        if backend == BackendKind::Local && endpoint.is_empty() && !c.ipfs_mirror.is_dir() {
            return Err(self.invalid(
                "ipfs_mirror",
                c.ipfs_mirror.display(),
                "is not a directory (run from the repository root, or set ipfs_mirror or ipfs_endpoint)",
            ));
        }
        for (key, path) in [
            ("runner_path", &c.runner_path),
            ("fetcher_path", &c.fetcher_path),
        ] {
            if let Some(p) = path
                .as_ref()
                .filter(|p| !p.as_os_str().is_empty() && !p.is_file())
            {
                return Err(self.invalid(
                    if key == "runner_path" {
                        "runner_path"
                    } else {
                        "fetcher_path"
                    },
                    p.display(),
                    "is not a file",
                ));
            }
        }
        Ok(backend)
    }

    /// `key = value    # source`, one line per key, for `--print-config`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (key, meaning) in KEYS {
            let value = self
                .figment
                .find_value(key)
                .ok()
                .and_then(|v| serde_json::to_string(&v).ok())
                .unwrap_or_else(|| "(unset)".into());
            out.push_str(&format!(
                "{key} = {value}    # {}; {meaning}\n",
                self.source_of(key)
            ));
        }
        out.push_str(&format!(
            "# effective backend: {}\n",
            match self.backend {
                BackendKind::Kubernetes => "kubernetes",
                _ => "local",
            }
        ));
        out
    }

    /// The ledger's file: `state`, else [`default_state`].
    pub fn state_path(&self) -> PathBuf {
        self.config
            .state
            .clone()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(default_state)
    }

    /// The local backend's work dirs: `work_dir`, else `work/` beside the state file.
    pub fn work_dir(&self) -> PathBuf {
        self.config
            .work_dir
            .clone()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| {
                self.state_path()
                    .parent()
                    .map_or_else(|| PathBuf::from("work"), |d| d.join("work"))
            })
    }

    pub fn task_ttl(&self) -> Duration {
        Duration::from_secs(self.config.task_ttl)
    }

    /// The limits every task runs with at most (`task_timeout`, `fuel`).
    pub fn run_limits(&self) -> RunLimits {
        RunLimits {
            timeout: Duration::from_secs_f64(self.config.task_timeout),
            fuel: self.config.fuel,
        }
    }

    /// How Jobs go through Kueue (`queue_name`, `priority_class`, `admission_timeout`); an
    /// empty name is unset.
    pub fn queueing(&self) -> crate::backend::kubernetes::kueue::Queueing {
        let c = &self.config;
        let name = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        crate::backend::kubernetes::kueue::Queueing {
            queue_name: name(&c.queue_name),
            priority_class: name(&c.priority_class),
            admission_timeout: c.admission_timeout.map(Duration::from_secs_f64),
        }
    }

    /// The contract's settings, when `contract_address` is set.
    pub fn chain_settings(&self) -> Option<crate::chain::ChainSettings> {
        let c = &self.config;
        let address = c.contract_address.trim().parse().ok()?;
        Some(crate::chain::ChainSettings {
            rpc: c.contract_rpc.trim().parse().ok()?,
            address,
            from_block: c.contract_from_block,
            confirmations: c.contract_confirmations,
            key_file: c.contract_key_file.clone(),
            max_result_bytes: c.contract_max_result_bytes,
        })
    }

    pub fn grace_period(&self) -> Duration {
        Duration::from_secs_f64(self.config.grace_period)
    }

    /// (duration, grace) of the Lease in seconds: a leader renews `grace` before expiry.
    pub fn lease_timing(&self) -> (u64, u64) {
        let d = self.config.lease_duration;
        (d, (d / 3).max(1))
    }
}

/// Where the ledger is when `state` is unset: `$XDG_STATE_HOME/wasm-exec/ledger.sqlite`,
/// else `$HOME/.local/state/wasm-exec/ledger.sqlite`, else `./wasm-exec-state/ledger.sqlite`.
pub fn default_state() -> PathBuf {
    let non_empty = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let base = non_empty("XDG_STATE_HOME")
        .or_else(|| non_empty("HOME").map(|h| h.join(".local/state")))
        .map_or_else(|| PathBuf::from("wasm-exec-state"), |d| d.join("wasm-exec"));
    base.join("ledger.sqlite")
}

/// The most bytes read of a key file (`contract_key_file`, `signing_key_file`): a key is
/// well under 1 KiB, and a path to something endless (`/dev/zero`) must not hang startup.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// A key file's text, read whole but never more than [`MAX_KEY_FILE_BYTES`]. Errors never
/// include the contents.
pub fn read_key_file(path: &Path) -> std::io::Result<String> {
    use runner::task::{read_capped, ReadError};
    let bytes = read_capped(path, MAX_KEY_FILE_BYTES).map_err(|e| match e {
        ReadError::TooLarge => std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_KEY_FILE_BYTES} bytes: not a key file"),
        ),
        ReadError::Io(e) => e,
    })?;
    String::from_utf8(bytes).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "not text: not a key file")
    })
}

/// The command line's contribution: only what was given.
#[derive(Debug, Clone, Default, Serialize, clap::Args)]
pub struct Overrides {
    /// Kubernetes namespace for Jobs.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Backend: auto, local or kubernetes.
    #[arg(long, value_parser = ["auto", "local", "kubernetes"])]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Tasks run at once.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Seconds per task, fetch and run together; a task's limits.timeout_seconds can only
    /// lower it.
    #[arg(long = "task-timeout", value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_timeout: Option<f64>,
    /// The runner's fuel budget; 0 = metering off. A task's limits.fuel can only lower it.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Directory served by CID when no endpoint is set.
    #[arg(long = "ipfs-mirror", value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipfs_mirror: Option<PathBuf>,
    /// IPFS gateway URL; empty = use the mirror.
    #[arg(long = "ipfs-endpoint", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipfs_endpoint: Option<String>,
    /// The TaskRegistry contract's address: its TaskSubmitted events are the tasks, and
    /// results are posted to it (with contract_rpc, contract_key_file).
    #[arg(long = "contract-address", value_name = "ADDRESS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contract_address: Option<String>,
    /// The chain's JSON-RPC URL.
    #[arg(long = "contract-rpc", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contract_rpc: Option<String>,
    /// File holding the executor's hex private key.
    #[arg(long = "contract-key-file", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contract_key_file: Option<PathBuf>,
    /// Ed25519 private key (PKCS#8 PEM) that signs every receipt.
    #[arg(long = "signing-key-file", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key_file: Option<PathBuf>,
    /// The share of tasks (0 to 1) run a second time and compared.
    #[arg(long = "verify-fraction", value_name = "FRACTION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_fraction: Option<f64>,
    /// Answer deterministic tasks from equal ones done before: on or off.
    #[arg(long, value_name = "on|off")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<Switch>,
    /// JSON-lines task file (- for stdin) instead of the placeholder tasks.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<PathBuf>,
    /// JSON-lines file each result is appended to.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<PathBuf>,
    /// Placeholder tasks to emit.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario: Option<Scenario>,
    /// Exit when the task source is drained, with a summary line.
    #[arg(long, num_args = 0, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub once: Option<bool>,
    /// Retries after an infrastructure failure.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// First retry's backoff in milliseconds.
    #[arg(long = "retry-backoff-ms", value_name = "MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_backoff_ms: Option<u64>,
    /// Seconds running tasks get to finish after SIGTERM/SIGINT.
    #[arg(long = "grace-period", value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<f64>,
    /// The runner binary (default: beside the coordinator).
    #[arg(long = "runner-path", value_name = "PATH")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner_path: Option<PathBuf>,
    /// The fetcher binary (default: beside the coordinator).
    #[arg(long = "fetcher-path", value_name = "PATH")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetcher_path: Option<PathBuf>,
    /// Where per-task work dirs are made (default: work/ beside the state file).
    #[arg(long = "work-dir", value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<PathBuf>,
    /// The ledger: a SQLite file recording every accepted task (default:
    /// $XDG_STATE_HOME/wasm-exec/ledger.sqlite, else ~/.local/state/wasm-exec/ledger.sqlite).
    #[arg(long, value_name = "PATH")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<PathBuf>,
    /// Seconds a finished, published WasmTask is kept (kubernetes backend; default 86400).
    #[arg(long = "task-ttl", value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_ttl: Option<u64>,
    /// Address of /healthz, /readyz, /metrics and the task API (default 127.0.0.1:8080); off = none.
    #[arg(long, value_name = "ADDR:PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Take tasks only while holding the Lease (kubernetes backend, several replicas).
    #[arg(long = "leader-election", num_args = 0, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_election: Option<bool>,
}

#[cfg(test)]
// figment::Jail's closures return figment::Error, which is large; it is its API.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in(jail: &Jail, flags: &Overrides) -> Result<Loaded, ConfigError> {
        std::fs::create_dir_all(jail.directory().join("host/wasm")).unwrap();
        load(None, flags)
    }

    #[test]
    fn defaults_keep_the_go_names_and_values() {
        Jail::expect_with(|jail| {
            let l = load_in(jail, &Overrides::default()).unwrap();
            assert_eq!(l.config.namespace, "default");
            assert_eq!(l.config.executor_image, "executor-demo/executor:demo");
            assert_eq!(l.config.ipfs_mirror, PathBuf::from("./host/wasm"));
            assert_eq!(l.config.ipfs_endpoint, "");
            assert_eq!(l.config.job_template, PathBuf::from("k8s/job.yaml"));
            assert_eq!(l.config.concurrency, 1);
            assert_eq!(l.backend, BackendKind::Local);
            assert_eq!(l.source_of("concurrency"), "default");
            Ok(())
        });
    }

    #[test]
    fn file_then_env_then_flags() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "concurrency = 3\nnamespace = \"from-file\"\nfuel = 7\n",
            )?;
            jail.set_env(CONFIG_ENV, "c.toml");
            jail.set_env("COORDINATOR_NAMESPACE", "from-env");
            jail.set_env("COORDINATOR_FUEL", "8");
            let flags = Overrides {
                fuel: Some(9),
                ..Overrides::default()
            };
            let l = load_in(jail, &flags).unwrap();
            assert_eq!(l.config.concurrency, 3);
            assert_eq!(l.config.namespace, "from-env");
            assert_eq!(l.config.fuel, 9);
            assert_eq!(l.source_of("concurrency"), "config file c.toml");
            assert_eq!(
                l.source_of("namespace"),
                "COORDINATOR_NAMESPACE environment variable"
            );
            assert_eq!(l.source_of("fuel"), "flag --fuel");
            assert!(l
                .describe()
                .contains("concurrency = 3    # config file c.toml"));
            Ok(())
        });
    }

    #[test]
    fn kubernetes_is_the_default_inside_a_cluster() {
        Jail::expect_with(|jail| {
            jail.set_env("KUBERNETES_SERVICE_HOST", "10.0.0.1");
            let msg = load_in(jail, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("ipfs_endpoint") && msg.contains("gateway"),
                "in a cluster the pods need a gateway: {msg}"
            );
            jail.set_env("COORDINATOR_IPFS_ENDPOINT", "http://ipfs:8080");
            assert_eq!(
                load_in(jail, &Overrides::default()).unwrap().backend,
                BackendKind::Kubernetes
            );
            jail.set_env("COORDINATOR_BACKEND", "local");
            assert_eq!(
                load_in(jail, &Overrides::default()).unwrap().backend,
                BackendKind::Local
            );
            Ok(())
        });
    }

    fn error_for(env: &[(&str, &str)]) -> String {
        let mut message = String::new();
        Jail::expect_with(|jail| {
            for (k, v) in env {
                jail.set_env(k, v);
            }
            message = load_in(jail, &Overrides::default())
                .unwrap_err()
                .to_string();
            Ok(())
        });
        message
    }

    #[test]
    fn every_bad_value_names_key_value_and_source() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "COORDINATOR_CONCURRENCY",
                "0",
                &["concurrency", "0", "COORDINATOR_CONCURRENCY"],
            ),
            (
                "COORDINATOR_CONCURRENCY",
                "5000",
                &["concurrency", "5000", "COORDINATOR_CONCURRENCY"],
            ),
            (
                "COORDINATOR_CONCURRENCY",
                "many",
                &["concurrency", "many", "COORDINATOR_"],
            ),
            (
                "COORDINATOR_TASK_TIMEOUT",
                "0",
                &["task_timeout", "0", "COORDINATOR_TASK_TIMEOUT"],
            ),
            (
                "COORDINATOR_TASK_TIMEOUT",
                "soon",
                &["task_timeout", "soon"],
            ),
            (
                "COORDINATOR_GRACE_PERIOD",
                "-1",
                &["grace_period", "-1", "COORDINATOR_GRACE_PERIOD"],
            ),
            ("COORDINATOR_RETRIES", "1000", &["retries", "1000"]),
            ("COORDINATOR_FUEL", "-5", &["fuel", "-5"]),
            ("COORDINATOR_BACKEND", "cloud", &["backend", "cloud"]),
            ("COORDINATOR_SCENARIO", "fibb", &["scenario", "fibb"]),
            (
                "COORDINATOR_IPFS_ENDPOINT",
                "127.0.0.1:18480",
                &[
                    "ipfs_endpoint",
                    "127.0.0.1:18480",
                    "COORDINATOR_IPFS_ENDPOINT",
                ],
            ),
            (
                "COORDINATOR_IPFS_MIRROR",
                "/nonexistent/dir",
                &["ipfs_mirror", "/nonexistent/dir", "COORDINATOR_IPFS_MIRROR"],
            ),
            (
                "COORDINATOR_RUNNER_PATH",
                "/nonexistent/runner",
                &["runner_path", "/nonexistent/runner"],
            ),
            ("COORDINATOR_ONCE", "maybe", &["once", "maybe"]),
            (
                "COORDINATOR_LISTEN",
                "8080",
                &["listen", "8080", "COORDINATOR_LISTEN"],
            ),
        ];
        for (var, value, needles) in cases {
            let msg = error_for(&[(var, value)]);
            for n in *needles {
                assert!(msg.contains(n), "{var}={value}: {msg:?} lacks {n:?}");
            }
        }
        let kube = [
            ("COORDINATOR_BACKEND", "kubernetes"),
            ("COORDINATOR_IPFS_ENDPOINT", "http://ipfs:8080"),
        ];
        let with = |extra: (&'static str, &'static str)| {
            let mut env = kube.to_vec();
            env.push(extra);
            error_for(&env)
        };
        let msg = error_for(&[("COORDINATOR_LEADER_ELECTION", "true")]);
        assert!(
            msg.contains("leader_election") && msg.contains("kubernetes backend"),
            "{msg}"
        );
        let msg = with(("COORDINATOR_LEASE_DURATION", "1"));
        assert!(
            msg.contains("lease_duration = 1") && msg.contains("COORDINATOR_LEASE_DURATION"),
            "{msg}"
        );
        let msg = with(("COORDINATOR_LEASE_NAME", "Bad_Name"));
        assert!(msg.contains("lease_name = Bad_Name"), "{msg}");
        let msg = with(("COORDINATOR_IPFS_ENDPOINT", "file:///mirror"));
        assert!(
            msg.contains("file:///mirror") && msg.contains("pods"),
            "{msg}"
        );
        let msg = error_for(&[("COORDINATOR_BACKEND", "kubernetes")]);
        assert!(msg.contains("ipfs_endpoint"), "{msg}");
        let msg = with(("COORDINATOR_QUEUE_NAME", "team a"));
        assert!(
            msg.contains("queue_name = team a") && msg.contains("COORDINATOR_QUEUE_NAME"),
            "{msg}"
        );
        let msg = with(("COORDINATOR_PRIORITY_CLASS", "-high"));
        assert!(msg.contains("priority_class = -high"), "{msg}");
        let msg = with(("COORDINATOR_ADMISSION_TIMEOUT", "0"));
        assert!(
            msg.contains("admission_timeout = 0") && msg.contains("COORDINATOR_ADMISSION_TIMEOUT"),
            "{msg}"
        );
    }

    #[test]
    fn kueue_keys_come_from_the_environment_and_unset_means_no_kueue() {
        Jail::expect_with(|jail| {
            let l = load_in(jail, &Overrides::default()).unwrap();
            assert_eq!(
                l.queueing(),
                crate::backend::kubernetes::kueue::Queueing::default()
            );
            jail.set_env("COORDINATOR_QUEUE_NAME", "wasm-exec");
            jail.set_env("COORDINATOR_PRIORITY_CLASS", "batch-low");
            jail.set_env("COORDINATOR_ADMISSION_TIMEOUT", "90");
            let q = load_in(jail, &Overrides::default()).unwrap().queueing();
            assert_eq!(q.queue_name.as_deref(), Some("wasm-exec"));
            assert_eq!(q.priority_class.as_deref(), Some("batch-low"));
            assert_eq!(q.admission_timeout, Some(Duration::from_secs(90)));
            jail.set_env("COORDINATOR_QUEUE_NAME", "");
            let q = load_in(jail, &Overrides::default()).unwrap().queueing();
            assert_eq!(q.queue_name, None, "empty is unset");
            Ok(())
        });
    }

    #[test]
    fn every_key_is_described_and_in_the_readme() {
        let serde_json::Value::Object(fields) = serde_json::to_value(Config::default()).unwrap()
        else {
            panic!("Config serializes as an object");
        };
        let mut fields: Vec<&str> = fields.keys().map(String::as_str).collect();
        let mut described: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
        fields.sort_unstable();
        described.sort_unstable();
        assert_eq!(
            fields, described,
            "KEYS (for --print-config) lists every key once"
        );
        let readme = include_str!("../../README.md");
        for key in described {
            let quoted = format!("`{key}`");
            assert!(
                readme.lines().any(|l| l.starts_with("| `")
                    && l.split('|').nth(1).is_some_and(|c| c.contains(&quoted))),
                "the README's configuration table lacks {key}"
            );
        }
    }

    #[test]
    fn every_valid_lease_duration_gives_a_grace_below_it() {
        Jail::expect_with(|jail| {
            for d in [2u64, 3, 5, 15, 3600] {
                jail.set_env("COORDINATOR_LEASE_DURATION", d);
                let (duration, grace) =
                    load_in(jail, &Overrides::default()).unwrap().lease_timing();
                assert!(
                    duration == d && grace >= 1 && grace < duration,
                    "{d}: {grace}"
                );
            }
            Ok(())
        });
    }

    #[test]
    fn a_missing_config_file_is_named() {
        let msg = error_for(&[(CONFIG_ENV, "nope.toml")]);
        assert!(
            msg.contains("nope.toml") && msg.contains(CONFIG_ENV),
            "{msg}"
        );
    }

    #[test]
    fn flag_values_are_checked_and_attributed() {
        Jail::expect_with(|jail| {
            let flags = Overrides {
                concurrency: Some(0),
                ..Overrides::default()
            };
            let msg = load_in(jail, &flags).unwrap_err().to_string();
            assert!(msg.contains("flag --concurrency"), "{msg}");
            Ok(())
        });
    }
}
