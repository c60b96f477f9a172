//! The `coordinator` binary: configuration, logging, signals, then the service loop.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use coordinator::backend::{Backend, LocalBackend};
use coordinator::config::{self, BackendKind, Overrides};
use coordinator::http::{self, Readiness};
use coordinator::service::{serve, Observers, ServiceSettings};
use coordinator::sink::{FileSink, ResultSink, StdoutSink};
use coordinator::source::{api_channel, JsonLinesSource, Merged, PlaceholderSource, TaskSource};
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

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
error, interrupted); 2 bad configuration."
)]
struct Cli {
    /// A TOML file with any of the keys (see --print-config).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print the effective configuration with each value's source, and exit.
    #[arg(long = "print-config")]
    print_config: bool,

    #[command(flatten)]
    overrides: Overrides,

    /// Log format on stderr: human or json.
    #[arg(long = "log-format", env = "LOG_FORMAT", default_value = "human", value_parser = ["human", "json"])]
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
    init_logging(&cli.log_format);
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
    let backend_files;
    let backend: Arc<dyn Backend> = match loaded.backend {
        BackendKind::Kubernetes => {
            let why = match c.backend {
                config::BackendKind::Auto => "auto: running inside a cluster".to_string(),
                _ => loaded.source_of("backend"),
            };
            error!("configuration: backend = kubernetes ({why}): the Kubernetes backend is not implemented yet; set backend = local (COORDINATOR_BACKEND=local)");
            return ExitCode::from(EXIT_CONFIG);
        }
        _ => match local_backend(&loaded) {
            Ok(b) => {
                backend_files = vec![b.fetcher.clone(), b.runner.clone()];
                Arc::new(b)
            }
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
    let (intake, api) = api_channel();
    let source: Box<dyn TaskSource> =
        Box::new(Merged::new(primary, api, c.once, source_open.clone()));
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
            source_open,
            backend_files,
        });
        let app = http::router(observers.clone(), intake, ready);
        Some(tokio::spawn(http::serve(listener, app, async {
            let _ = http_stop_rx.await;
        })))
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("signal received");
        let _ = stop_tx.send(true);
        // Keep the sender alive: the service watches it until it is done.
        std::future::pending::<()>().await;
    });
    let settings = ServiceSettings {
        concurrency: c.concurrency as usize,
        retries: c.retries,
        retry_backoff: Duration::from_millis(c.retry_backoff_ms),
        grace_period: loaded.grace_period(),
        once: c.once,
    };
    info!(
        concurrency = settings.concurrency,
        backend = "local",
        "coordinator started"
    );
    let summary = serve(settings, source, sinks, backend, stop_rx, observers).await;
    info!("summary: {}", summary.line());
    // The listener answered queries until every result was published; now it stops.
    let _ = http_stop_tx.send(());
    if let Some(task) = http_task {
        if let Ok(Err(e)) = task.await {
            error!("http listener: {e}");
        }
    }
    if summary.infrastructure_failures > 0 {
        ExitCode::from(EXIT_INFRA)
    } else {
        ExitCode::SUCCESS
    }
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

/// Logs go to stderr; stdout carries only results. `RUST_LOG` overrides the level.
fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    if format == "json" {
        builder.json().with_current_span(true).init();
    } else {
        builder.init();
    }
}
