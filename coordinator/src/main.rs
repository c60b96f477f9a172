//! The `coordinator` binary: configuration, logging, signals, then the service loop.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use coordinator::backend::{Backend, KubernetesBackend, LocalBackend};
use coordinator::config::{self, BackendKind, Overrides};
use coordinator::http::{self, Readiness};
use coordinator::service::{serve, Observers, ServiceSettings, Stop};
use coordinator::sink::{FileSink, ResultSink, StdoutSink};
use coordinator::source::{
    api_channel, JsonLinesSource, Merged, PlaceholderSource, Preloaded, TaskSource,
};
use coordinator::task::Task;
use coordinator::{election, job};
use k8s_openapi::api::batch::v1::Job;
use tracing::{error, info};

const EXIT_INFRA: u8 = 1;
const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "coordinator",
    version,
    about = "Run WebAssembly tasks: take them from a source, run each through a backend, publish every result",
    after_long_help = "Configuration layers: defaults < TOML file (--config, COORDINATOR_CONFIG) < \
COORDINATOR_* environment (e.g. COORDINATOR_CONCURRENCY=4) < flags. --print-config shows every \
key, its effective value and where it came from.\n\nResults: one JSON line per task on stdout \
(logs go to stderr), and appended to --results FILE.\n\nExit codes: 0 every task ran (a task \
that trapped still ran); 1 a task failed for infrastructure reasons (fetch failed, runner \
error, interrupted), or this replica lost its leader Lease; 2 bad configuration (including a Job \
template that cannot serve).\n\nBackends: local runs the fetcher and runner binaries as child \
processes; kubernetes runs one Job per task from job_template (client: the pod's service \
account, else KUBECONFIG or ~/.kube/config), adopts the Jobs a previous coordinator left, and \
with --leader-election takes tasks only while holding the Lease."
)]
struct Cli {
    /// A TOML file with any of the keys (see --print-config).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print the effective configuration with each value's source, and exit.
    #[arg(long = "print-config")]
    print_config: bool,

    /// Print, as YAML, the Job the kubernetes backend would create for TASK (a JSON task
    /// object, as in a task file), and exit. Needs no cluster.
    #[arg(long = "print-job", value_name = "TASK")]
    print_job: Option<String>,

    #[command(flatten)]
    overrides: Overrides,

    /// Log format on stderr: human or json.
    #[arg(long = "log-format", env = "LOG_FORMAT", value_name = "FORMAT", default_value = "human", value_parser = ["human", "json"])]
    log_format: String,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    logging::init(
        cli.log_format.parse().unwrap_or(logging::Format::Human),
        "info",
    );
    let loaded = match config::load(cli.config.as_deref(), &cli.overrides) {
        Ok(l) => l,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.print_config {
        print!("{}", loaded.describe());
        return ExitCode::SUCCESS;
    }
    if let Some(task) = &cli.print_job {
        return match print_job(&loaded, task) {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                error!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_INFRA);
        }
    };
    runtime.block_on(run(loaded))
}

async fn run(loaded: config::Loaded) -> ExitCode {
    let c = &loaded.config;
    let identity = identity();
    let mut kube_backend = None;
    let backend: Arc<dyn Backend> = match loaded.backend {
        BackendKind::Kubernetes => match kubernetes_backend(&loaded, &identity).await {
            Ok(b) => {
                let b = Arc::new(b);
                kube_backend = Some(b.clone());
                b
            }
            Err(e) => {
                error!("{e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        _ => match local_backend(&loaded) {
            Ok(b) => Arc::new(b),
            Err(e) => {
                error!("{e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    let primary: Box<dyn TaskSource> = match &c.tasks {
        Some(path) => match JsonLinesSource::open(path).await {
            Ok(s) => Box::new(s),
            Err(e) => {
                error!(
                    "configuration: tasks = {} (from {}): cannot open it: {e}",
                    path.display(),
                    loaded.source_of("tasks")
                );
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => Box::new(PlaceholderSource::new(c.scenario)),
    };
    let mut sinks: Vec<Box<dyn ResultSink>> = vec![Box::new(StdoutSink)];
    if let Some(path) = &c.results {
        match FileSink::open(path) {
            Ok(s) => sinks.push(Box::new(s)),
            Err(e) => {
                error!(
                    "configuration: results = {} (from {}): cannot open it for appending: {e}",
                    path.display(),
                    loaded.source_of("results")
                );
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    }

    let observers = Arc::new(Observers::default());
    let source_open = Arc::new(std::sync::atomic::AtomicBool::new(true));
    // Whether this replica takes tasks: always, unless leader election says otherwise.
    let leading = Arc::new(std::sync::atomic::AtomicBool::new(!c.leader_election));
    let (intake, api) = api_channel();
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let listen = c.listen.trim();
    let http_task = if listen.is_empty() || listen == "off" {
        drop(intake);
        None
    } else {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                error!(
                    "configuration: listen = {listen} (from {}): cannot listen there: {e}",
                    loaded.source_of("listen")
                );
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        match listener.local_addr() {
            Ok(addr) => info!("http listener on {addr}: /healthz /readyz /metrics /tasks"),
            Err(e) => info!("http listener on {listen} ({e})"),
        }
        let ready = Arc::new(Readiness {
            source_open: source_open.clone(),
            backend: backend.clone(),
            leading: c.leader_election.then(|| leading.clone()),
        });
        let app = http::router(observers.clone(), intake, ready);
        Some(tokio::spawn(http::serve(listener, app, async {
            let _ = http_stop_rx.await;
        })))
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(Stop::No);
    let stop_tx = Arc::new(stop_tx);
    let signals = stop_tx.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("signal received");
        let _ = signals.send(Stop::Graceful);
    });

    // With leader election, wait for the Lease before taking any task; lose it, stop at once.
    let mut lease = None;
    if let (true, Some(k)) = (c.leader_election, &kube_backend) {
        match election::lead(&loaded, k.client().clone(), &identity, stop_rx.clone()).await {
            Ok(Some(mut held)) => {
                leading.store(true, std::sync::atomic::Ordering::SeqCst);
                held.on_loss(stop_tx.clone(), leading.clone());
                lease = Some(held);
            }
            // Stopped before becoming the leader: nothing ran, nothing to report.
            Ok(None) => {
                let _ = http_stop_tx.send(());
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                error!("{e}");
                let _ = http_stop_tx.send(());
                return ExitCode::from(EXIT_INFRA);
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
            Err(e) => {
                error!("{e}; the Role in k8s/coordinator.yaml allows listing Jobs");
                let _ = http_stop_tx.send(());
                return ExitCode::from(EXIT_INFRA);
            }
        },
        None => Vec::new(),
    };
    let source: Box<dyn TaskSource> = Box::new(Merged::new(
        Box::new(Preloaded::new(adopted, primary)),
        api,
        c.once,
        source_open,
    ));

    let settings = ServiceSettings {
        concurrency: c.concurrency as usize,
        retries: c.retries,
        retry_backoff: Duration::from_millis(c.retry_backoff_ms),
        grace_period: loaded.grace_period(),
        once: c.once,
    };
    info!(
        concurrency = settings.concurrency,
        backend = if kube_backend.is_some() { "kubernetes" } else { "local" },
        identity = %identity,
        "coordinator started"
    );
    let summary = serve(settings, source, sinks, backend, stop_rx, observers).await;
    info!("summary: {}", summary.line());
    let lost_lease = match lease {
        Some(held) => held.give_up().await,
        None => false,
    };
    // The listener answered queries until every result was published; now it stops.
    let _ = http_stop_tx.send(());
    if let Some(task) = http_task {
        if let Ok(Err(e)) = task.await {
            error!("http listener: {e}");
        }
    }
    if summary.infrastructure_failures > 0 || lost_lease {
        ExitCode::from(EXIT_INFRA)
    } else {
        ExitCode::SUCCESS
    }
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

/// `--print-job`: the Job for one task, as YAML.
fn print_job(loaded: &config::Loaded, task: &str) -> Result<String, String> {
    let task: Task = serde_json::from_str(task)
        .map_err(|e| format!("--print-job: not a task object ({{\"task_id\", \"wasm_cid\", optional \"input_cid\", \"entry\"}}): {e}"))?;
    let task = task.validated().map_err(|e| format!("--print-job: {e}"))?;
    let (template, settings) = job_parts(loaded)?;
    serde_yaml_ng::to_string(&job::build_job(&template, &task, &settings))
        .map_err(|e| format!("--print-job: cannot write the Job as YAML: {e}"))
}

/// The Job template and what every Job shares; a failure names the key.
fn job_parts(loaded: &config::Loaded) -> Result<(Job, job::JobSettings), String> {
    let c = &loaded.config;
    let path = &c.job_template;
    let yaml = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "configuration: job_template = {} (from {}): cannot read it: {e}",
            path.display(),
            loaded.source_of("job_template")
        )
    })?;
    let template = job::parse_template(&path.display().to_string(), &yaml).map_err(|e| {
        format!(
            "configuration: job_template (from {}): {e}",
            loaded.source_of("job_template")
        )
    })?;
    let settings = job::JobSettings {
        namespace: c.namespace.clone(),
        executor_image: c.executor_image.clone(),
        fetcher_image: c.fetcher_image.clone(),
        gateway: c.ipfs_endpoint.trim().to_owned(),
        task_timeout: loaded.task_timeout(),
        fuel: c.fuel,
    };
    Ok((template, settings))
}

/// The Job template, the pods' settings and a client; every failure is a configuration
/// error naming the key.
async fn kubernetes_backend(
    loaded: &config::Loaded,
    identity: &str,
) -> Result<KubernetesBackend, String> {
    let (template, settings) = job_parts(loaded)?;
    KubernetesBackend::connect(template, settings, identity.to_owned())
        .await
        .map_err(|e| {
            format!(
                "backend = kubernetes (from {}): {e}",
                loaded.source_of("backend")
            )
        })
}

fn local_backend(loaded: &config::Loaded) -> Result<LocalBackend, String> {
    let c = &loaded.config;
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find the coordinator's own path: {e}"))?;
    let fetcher = LocalBackend::find_binary(c.fetcher_path.as_deref(), &exe, "fetcher")?;
    let runner = LocalBackend::find_binary(c.runner_path.as_deref(), &exe, "runner")?;
    let gateway = if c.ipfs_endpoint.trim().is_empty() {
        let mirror = c.ipfs_mirror.canonicalize().map_err(|e| {
            format!(
                "configuration: ipfs_mirror = {} (from {}): {e}",
                c.ipfs_mirror.display(),
                loaded.source_of("ipfs_mirror")
            )
        })?;
        format!("file://{}", mirror.display())
    } else {
        c.ipfs_endpoint.trim().to_owned()
    };
    let work_dir = c.work_dir.clone().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = &work_dir {
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "configuration: work_dir = {} (from {}): cannot create it: {e}",
                dir.display(),
                loaded.source_of("work_dir")
            )
        })?;
    }
    Ok(LocalBackend {
        fetcher,
        runner,
        gateway,
        task_timeout: loaded.task_timeout(),
        fuel: c.fuel,
        work_dir,
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
