//! The coordinator's wiring, as `main` runs it: from the loaded configuration to a backend,
//! a task source, sinks, the HTTP listener, leader election and the service loop. Every
//! failure to start is a [`StartupError`] naming the key, its value and its origin, with
//! the exit code it means ([`StartupError::exit_code`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use tracing::{error, info, warn};

use crate::backend::kubernetes::job::{self, JobError};
use crate::backend::kubernetes::ledger::WasmTaskLedger;
use crate::backend::{Backend, KubernetesBackend, KubernetesError, LocalBackend, LocalError};
use crate::chain::{self, sink::ContractSink, source::check_chain, source::ContractSource};
use crate::config::{self, BackendKind, ConfigError};
use crate::election::{self, ElectionError};
use crate::http::{self, Readiness};
use crate::ledger::{Ledger, LedgerError, SqliteLedger};
use crate::receipt::Signer;
use crate::reconciler::{reconcile, Observers, Settings, Stop};
use crate::sink::{FileSink, ResultSink, StdoutSink};
use crate::source::{
    Intake, JsonLinesSource, PlaceholderSource, Preloaded, SourceError, TaskSource,
};
use crate::task::Task;

/// Exit code: every task ran (a task that trapped still ran).
pub const EXIT_OK: u8 = 0;
/// Exit code: a task failed for infrastructure reasons, a result could not be published, a
/// task source broke, or this replica lost its leader Lease.
pub const EXIT_INFRA: u8 = 1;
/// Exit code: bad configuration (including a Job template that cannot serve).
pub const EXIT_CONFIG: u8 = 2;

/// Why the coordinator could not start (or, for the last few, could not go on).
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("contract_address = {address} (from {origin}): {source}")]
    Chain {
        address: String,
        origin: String,
        #[source]
        source: crate::chain::ChainError,
    },
    #[error("configuration: tasks (from {tasks}) and contract_address (from {contract}) are both set; the contract is the task source when its address is set: unset one")]
    TwoSources { tasks: String, contract: String },
    #[error("configuration: job_template = {path} (from {origin}): cannot read it: {source}")]
    TemplateUnreadable {
        path: PathBuf,
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration: job_template (from {origin}): {source}")]
    Template {
        origin: String,
        #[source]
        source: JobError,
    },
    #[error("backend = kubernetes (from {origin}): {source}")]
    Kubernetes {
        origin: String,
        #[source]
        source: Box<KubernetesError>,
    },
    #[error("configuration: {0}")]
    Local(#[from] LocalError),
    #[error("cannot find the coordinator's own path: {0}")]
    OwnPath(#[source] std::io::Error),
    #[error("configuration: ipfs_mirror = {path} (from {origin}): {source}")]
    Mirror {
        path: PathBuf,
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration: work_dir = {path} (from {origin}): cannot create it: {source}")]
    WorkDir {
        path: PathBuf,
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration: tasks (from {origin}): {source}")]
    Tasks {
        origin: String,
        #[source]
        source: SourceError,
    },
    #[error(
        "configuration: results = {path} (from {origin}): cannot open it for appending: {source}"
    )]
    Results {
        path: PathBuf,
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration: listen = {addr} (from {origin}): cannot listen there: {source}")]
    Listen {
        addr: String,
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration: state (from {origin}): {source}")]
    Ledger {
        origin: String,
        #[source]
        source: Box<LedgerError>,
    },
    #[error("{why}")]
    LedgerNotReady { why: String },
    #[error("configuration: signing_key_file (from {origin}): {source}")]
    SigningKey {
        origin: String,
        #[source]
        source: crate::receipt::ReceiptError,
    },
    #[error("--print-job: not a valid task ({{\"task_id\", \"wasm_cid\", optional \"input_cid\", \"entry\"}}): {0}")]
    PrintJobTask(#[source] serde_json::Error),
    #[error("--print-job: cannot write the Job as YAML: {0}")]
    PrintJobYaml(#[source] serde_yaml_ng::Error),
    #[error(transparent)]
    Election(#[from] ElectionError),
    #[error("{source}; the Role in k8s/coordinator.yaml allows listing Jobs")]
    Adoption {
        #[source]
        source: Box<KubernetesError>,
    },
}

impl StartupError {
    /// [`EXIT_CONFIG`] for what the configuration got wrong; [`EXIT_INFRA`] for what
    /// failed around a correct one (the Lease, listing Jobs).
    pub fn exit_code(&self) -> u8 {
        match self {
            StartupError::Election(_)
            | StartupError::Adoption { .. }
            | StartupError::LedgerNotReady { .. }
            | StartupError::Chain {
                source: crate::chain::ChainError::Rpc { .. },
                ..
            } => EXIT_INFRA,
            _ => EXIT_CONFIG,
        }
    }
}

/// The receipt signer from `signing_key_file`; without one, receipts are unsigned (said
/// once, here).
fn signer(loaded: &config::Loaded) -> Result<Signer, StartupError> {
    match loaded
        .config
        .signing_key_file
        .as_deref()
        .filter(|p| !p.as_os_str().is_empty())
    {
        None => {
            warn!("no signing_key_file: receipts are not signed (set COORDINATOR_SIGNING_KEY_FILE to an Ed25519 PKCS#8 PEM key)");
            Ok(Signer::new(None))
        }
        Some(path) => {
            let key = crate::receipt::read_signing_key(path).map_err(|source| {
                StartupError::SigningKey {
                    origin: loaded.source_of("signing_key_file"),
                    source,
                }
            })?;
            let signer = Signer::new(Some(key));
            info!(
                public_key = signer.public_key().unwrap_or_default(),
                "receipts are signed"
            );
            Ok(signer)
        }
    }
}

/// `--print-job`: the Job for one task, as YAML.
pub fn print_job(loaded: &config::Loaded, task: &str) -> Result<String, StartupError> {
    let task: Task = serde_json::from_str(task).map_err(StartupError::PrintJobTask)?;
    let (template, settings) = job_parts(loaded)?;
    serde_yaml_ng::to_string(&job::build_job(&template, &task, &settings))
        .map_err(StartupError::PrintJobYaml)
}

/// Runs the coordinator until its source is drained (`--once`) or it is told to stop.
pub async fn run(loaded: config::Loaded) -> Result<ExitCode, StartupError> {
    // Caught from the first moment: a SIGTERM during start-up is a graceful stop as soon as
    // there is something to stop, never the default death by signal.
    let signalled = wait_for_signal();
    let c = &loaded.config;
    let signer = signer(&loaded)?;
    let identity = identity();
    let observers = Arc::new(Observers::default());
    let mut kube_backend = None;
    let (backend, ledger): (Arc<dyn Backend>, Arc<dyn Ledger>) = match loaded.backend {
        BackendKind::Kubernetes => {
            // The API server is the ledger: one WasmTask per task.
            let mut b = kubernetes_backend(&loaded, &identity).await?;
            let ledger = Arc::new(WasmTaskLedger::new(
                b.client().clone(),
                &c.namespace,
                loaded.task_ttl(),
            ));
            // Without the custom resource nothing can be accepted: say so now, not in a
            // retry loop.
            ledger
                .ready()
                .await
                .map_err(|why| StartupError::LedgerNotReady { why })?;
            b.owners(ledger.clone());
            b.admission_metrics(observers.metrics.admission());
            let b = Arc::new(b);
            kube_backend = Some(b.clone());
            (b, ledger)
        }
        _ => {
            let state = loaded.state_path();
            let ledger: Arc<dyn Ledger> = Arc::new(SqliteLedger::open(&state).map_err(
                |source| StartupError::Ledger {
                    origin: loaded.source_of("state"),
                    source: Box::new(source),
                },
            )?);
            let local = local_backend(&loaded)?;
            // Work dirs of tasks that are over (or were never recorded) go; those of
            // tasks the ledger has as running are collected or waited for.
            let running = ledger
                .running()
                .await
                .map_err(|source| StartupError::Ledger {
                    origin: loaded.source_of("state"),
                    source: Box::new(source),
                })?;
            local.sweep(&running.into_iter().map(|e| e.task_id).collect());
            (Arc::new(local), ledger)
        }
    };
    info!("ledger: {}", ledger.describe());
    let chain_error = |source| StartupError::Chain {
        address: c.contract_address.trim().to_owned(),
        origin: loaded.source_of("contract_address"),
        source,
    };
    if loaded.chain_settings().is_some() && c.tasks.is_some() {
        return Err(StartupError::TwoSources {
            tasks: loaded.source_of("tasks"),
            contract: loaded.source_of("contract_address"),
        });
    }
    // The chain's id, and a contract at the address: checked once, for the source and sink.
    let chain = match loaded.chain_settings() {
        Some(settings) => {
            let chain_id = check_chain(&chain::source::reader(&settings.rpc), &settings)
                .await
                .map_err(chain_error)?;
            Some((settings, chain_id))
        }
        None => None,
    };
    let primary: Box<dyn TaskSource> =
        match (&chain, &c.tasks) {
            (Some((settings, chain_id)), _) => Box::new(
                ContractSource::connect(settings.clone(), *chain_id, ledger.clone(), c.once)
                    .await
                    .map_err(chain_error)?,
            ),
            (None, Some(path)) => {
                Box::new(JsonLinesSource::open(path).await.map_err(|source| {
                    StartupError::Tasks {
                        origin: loaded.source_of("tasks"),
                        source,
                    }
                })?)
            }
            (None, None) => Box::new(PlaceholderSource::new(c.scenario)),
        };
    let mut sinks: Vec<Box<dyn ResultSink>> = vec![Box::new(StdoutSink)];
    if let Some(path) = &c.results {
        let sink = FileSink::open(path).map_err(|source| StartupError::Results {
            path: path.clone(),
            origin: loaded.source_of("results"),
            source,
        })?;
        sinks.push(Box::new(sink));
    }
    if let Some((settings, chain_id)) = chain {
        let sink = ContractSink::connect(settings, chain_id, observers.clone(), ledger.clone())
            .await
            .map_err(chain_error)?;
        sinks.push(Box::new(sink));
    }

    let intake = Arc::new(Intake::new(ledger.clone()));
    // Whether this replica takes tasks: always, unless leader election says otherwise.
    let leading = Arc::new(AtomicBool::new(!c.leader_election));
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let listen = c.listen.trim();
    let http_task = if listen.is_empty() || listen == "off" {
        None
    } else {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| StartupError::Listen {
                addr: listen.to_owned(),
                origin: loaded.source_of("listen"),
                source,
            })?;
        match listener.local_addr() {
            Ok(addr) => info!("http listener on {addr}: /healthz /readyz /metrics /tasks"),
            Err(e) => info!("http listener on {listen} ({e})"),
        }
        let ready = Arc::new(Readiness {
            intake: intake.clone(),
            backend: backend.clone(),
            leading: c.leader_election.then(|| leading.clone()),
        });
        let app = http::router(observers.clone(), intake.clone(), ready);
        Some(tokio::spawn(http::serve(listener, app, async {
            let _ = http_stop_rx.await;
        })))
    };
    let stop_http = |http_stop_tx: tokio::sync::oneshot::Sender<()>| {
        let _ = http_stop_tx.send(());
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(Stop::No);
    let stop_tx = Arc::new(stop_tx);
    let signals = stop_tx.clone();
    tokio::spawn(async move {
        signalled.await;
        info!("signal received");
        let _ = signals.send(Stop::Graceful);
    });

    // With leader election, wait for the Lease before taking any task; lose it, stop at once.
    let mut lease = None;
    if let (true, Some(k)) = (c.leader_election, &kube_backend) {
        match election::lead(&loaded, k.client().clone(), &identity, stop_rx.clone()).await {
            Ok(Some(mut held)) => {
                leading.store(true, Ordering::SeqCst);
                held.on_loss(stop_tx.clone(), leading.clone());
                lease = Some(held);
            }
            // Stopped before becoming the leader: nothing ran, nothing to report.
            Ok(None) => {
                stop_http(http_stop_tx);
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => {
                stop_http(http_stop_tx);
                return Err(e.into());
            }
        }
    }
    // Jobs a previous coordinator (or leader) left running: collect them first.
    let adopted = match &kube_backend {
        Some(k) => match k.adoptable().await {
            Ok(tasks) => {
                if !tasks.is_empty() {
                    info!(
                        count = tasks.len(),
                        "adopting the Jobs a previous coordinator left: {}",
                        tasks
                            .iter()
                            .map(|t| t.task_id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                tasks
            }
            Err(source) => {
                stop_http(http_stop_tx);
                return Err(StartupError::Adoption {
                    source: Box::new(source),
                });
            }
        },
        None => Vec::new(),
    };
    let source: Box<dyn TaskSource> = Box::new(Preloaded::new(adopted, primary));

    let settings = Settings {
        concurrency: c.concurrency as usize,
        retries: c.retries,
        retry_backoff: Duration::from_millis(c.retry_backoff_ms),
        grace_period: loaded.grace_period(),
        once: c.once,
        limits: loaded.run_limits(),
        cache: c.cache == config::Switch::On,
        verify_fraction: c.verify_fraction,
        signer,
    };
    info!(
        concurrency = settings.concurrency,
        backend = if kube_backend.is_some() { "kubernetes" } else { "local" },
        identity = %identity,
        "coordinator started"
    );
    let summary = reconcile(settings, source, intake, sinks, backend, stop_rx, observers).await;
    info!("summary: {}", summary.line());
    let lost_lease = match lease {
        Some(held) => held.give_up().await,
        None => false,
    };
    // The listener answered queries until every result was published; now it stops.
    stop_http(http_stop_tx);
    if let Some(task) = http_task {
        if let Ok(Err(e)) = task.await {
            error!("http listener: {e}");
        }
    }
    Ok(ExitCode::from(if summary.failed() || lost_lease {
        EXIT_INFRA
    } else {
        EXIT_OK
    }))
}

/// This replica's name in events and on the Lease: the pod name (the hostname in a pod)
/// and the process id, so that two coordinators on one machine differ too.
fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "coordinator".into());
    format!("{host}-{}", std::process::id())
}

/// The Job template and what every Job shares.
fn job_parts(loaded: &config::Loaded) -> Result<(Job, job::JobSettings), StartupError> {
    let c = &loaded.config;
    let path = &c.job_template;
    let yaml =
        std::fs::read_to_string(path).map_err(|source| StartupError::TemplateUnreadable {
            path: path.clone(),
            origin: loaded.source_of("job_template"),
            source,
        })?;
    let template = job::parse_template(&path.display().to_string(), &yaml).map_err(|source| {
        StartupError::Template {
            origin: loaded.source_of("job_template"),
            source,
        }
    })?;
    let settings = job::JobSettings {
        namespace: c.namespace.clone(),
        executor_image: c.executor_image.clone(),
        fetcher_image: c.fetcher_image.clone(),
        gateway: c.ipfs_endpoint.trim().to_owned(),
        limits: loaded.run_limits(),
        queueing: loaded.queueing(),
    };
    Ok((template, settings))
}

/// The Job template, the pods' settings and a client.
async fn kubernetes_backend(
    loaded: &config::Loaded,
    identity: &str,
) -> Result<KubernetesBackend, StartupError> {
    let (template, settings) = job_parts(loaded)?;
    KubernetesBackend::connect(template, settings, identity.to_owned())
        .await
        .map_err(|source| StartupError::Kubernetes {
            origin: loaded.source_of("backend"),
            source: Box::new(source),
        })
}

fn local_backend(loaded: &config::Loaded) -> Result<LocalBackend, StartupError> {
    let c = &loaded.config;
    let exe = std::env::current_exe().map_err(StartupError::OwnPath)?;
    let fetcher = LocalBackend::find_binary(c.fetcher_path.as_deref(), &exe, "fetcher")?;
    let runner = LocalBackend::find_binary(c.runner_path.as_deref(), &exe, "runner")?;
    let gateway = if c.ipfs_endpoint.trim().is_empty() {
        let mirror = c
            .ipfs_mirror
            .canonicalize()
            .map_err(|source| StartupError::Mirror {
                path: c.ipfs_mirror.clone(),
                origin: loaded.source_of("ipfs_mirror"),
                source,
            })?;
        format!("file://{}", mirror.display())
    } else {
        c.ipfs_endpoint.trim().to_owned()
    };
    let work_dir = loaded.work_dir();
    std::fs::create_dir_all(&work_dir).map_err(|source| StartupError::WorkDir {
        path: work_dir.clone(),
        origin: loaded.source_of("work_dir"),
        source,
    })?;
    Ok(LocalBackend {
        fetcher,
        runner,
        gateway,
        limits: loaded.run_limits(),
        work_dir,
        pod_program: exe,
        max_memory: None,
    })
}

/// Registers for SIGTERM and SIGINT now (from here on neither kills the process), and
/// resolves when one comes.
fn wait_for_signal() -> impl std::future::Future<Output = ()> + Send {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
