//! `falco-api serve`: open the store, bind, serve until SIGINT/SIGTERM, drain, flush.

use anyhow::Context;
use tokio_util::task::TaskTracker;

use crate::base::event::counted;
use crate::config::{HttpEndpoint, HttpKind, Listen, ServeConfig};
use crate::grpc;
use crate::services::control::LogReloader;
use crate::services::App;
use crate::store::StoreOptions;

/// Descriptors kept free for the database, logs, rules files and the webhook.
const RESERVED_FILES: u64 = 128;

/// Runs the server until a signal; returns once everything is flushed.
pub async fn serve(config: ServeConfig, log_reloader: Option<LogReloader>) -> anyhow::Result<()> {
    let prepared = prepare(&config, log_reloader)?;
    run(config, prepared).await
}

/// What [`prepare`] made ready: the open store and state, before anything is bound.
pub struct Prepared {
    app: App,
    /// The revision `--rules` were imported as, if they were.
    imported: Option<u64>,
    open_files: u64,
}

/// Everything fallible that needs no listener: the open-files limit, the boot rules, the store
/// (converted and migrated), the stored configuration and rules. A failure here stops the server
/// before it binds anything.
pub fn prepare(
    config: &ServeConfig,
    log_reloader: Option<LogReloader>,
) -> anyhow::Result<Prepared> {
    // Whatever this process creates (database, temporaries, files for Falco) is its user's alone.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let open_files = crate::net::listen::raise_open_files_limit();
    let boot_rules = load_rules(&config.rules_files)?;
    let runtime = config.boot_runtime();
    let telemetry = crate::services::telemetry::Telemetry::new(config.max_series, true);
    let opts = store_options(config, &runtime);
    let app = App::open_with(&config.data_dir, &opts, runtime.pipeline.clone(), telemetry)
        .with_context(|| {
            format!(
                "cannot open the data directory {}",
                config.data_dir.display()
            )
        })?;
    if let Some(reloader) = log_reloader {
        app.config.set_log_reloader(reloader);
    }
    app.config.set_boot_values(config.boot_values.clone());
    app.config
        .apply()
        .context("cannot apply the stored configuration")?;
    if let Some(path) = &config.falco.fields_file {
        let catalog = crate::engine::catalog::Catalog::read(path)
            .map_err(anyhow::Error::msg)
            .context("falco.fields_file")?;
        for (source, listed, native) in catalog.summary() {
            tracing::info!(
                source,
                listed,
                native,
                "field catalog: {} fields of {source} validated but not evaluated",
                listed - native
            );
        }
        app.rules.set_catalog(Some(std::sync::Arc::new(catalog)));
    }
    app.rules.reload().context("the stored rules do not load")?;
    let imported = match boot_rules {
        Some(files) => app
            .rules
            .import(&files, config.import_rules)
            .context("cannot import --rules")?,
        None => None,
    };
    Ok(Prepared {
        app,
        imported,
        open_files,
    })
}

/// The store's limits from the boot values, and its directory's mode.
fn store_options(
    config: &ServeConfig,
    runtime: &crate::services::control::Runtime,
) -> StoreOptions {
    StoreOptions {
        outputs_capacity: runtime.outputs_capacity,
        drops_capacity: runtime.drops_capacity,
        outputs_max_bytes: runtime.outputs_max_bytes,
        drops_max_bytes: runtime.drops_max_bytes,
        outputs_max_age_ns: runtime.outputs_max_age_secs.saturating_mul(1_000_000_000),
        drops_max_age_ns: runtime.drops_max_age_secs.saturating_mul(1_000_000_000),
        history_retention: config.history_retention,
        min_free_bytes: config.min_free_bytes,
        // The socket's group must be able to reach the socket inside the data directory.
        dir_mode: if config.socket_gid.is_some() {
            0o750
        } else {
            0o700
        },
        dir_gid: config.socket_gid,
        ..Default::default()
    }
}

/// Binds every listener and serves until a signal; returns once everything is flushed.
pub async fn run(config: ServeConfig, prepared: Prepared) -> anyhow::Result<()> {
    let Prepared {
        app,
        imported,
        open_files,
    } = prepared;
    let (listeners, http) = bind(&config).await?;
    println!("falco-api {} serving", env!("CARGO_PKG_VERSION"));
    println!("data directory: {}", config.data_dir.display());
    if let Some(kept) = app.store.legacy_kept() {
        println!(
            "storage: converted the sled database of an earlier falco-api into {}; the old one is kept in {} until you remove it",
            app.store.path().display(),
            kept.display()
        );
    }
    print_rules(&app, &config, imported)?;
    // Every task that outlives this function's setup, joined at shutdown within the grace.
    let tasks = TaskTracker::new();
    let sync = crate::falco::sync::start(
        &app,
        crate::falco::sync::Targets {
            rules_dir: config.falco.rules_dir.clone(),
            config_file: config.falco.config_file.clone(),
        },
    );
    tasks.spawn(async move { sync.wait().await });
    print_falco(&app);
    serve_http(&app, &config, http, &tasks)?;
    let fleet = crate::fleet::start(&app, &config.fleet);
    tasks.spawn(async move { fleet.wait().await });
    if !config.fleet.url.is_empty() {
        println!(
            "fleet: NATS {} stream {}{}{}",
            config.fleet.url,
            config.fleet.stream,
            if config.fleet.forward {
                ", forwarding this node's alerts and drops"
            } else {
                ""
            },
            if config.fleet.collect {
                ", collecting the fleet"
            } else {
                ""
            }
        );
    }
    let rebuild = app.clone();
    tokio::task::spawn_blocking(move || rebuild.logs.rebuild_counts());
    tasks.spawn(save_counts(app.clone()));
    tasks.spawn(expire_logs(app.clone()));
    for bound in &listeners {
        match bound {
            Bound::Tcp(addr, _) => println!("listening on: tcp://{addr} (mutual TLS)"),
            Bound::Unix(path, _) => println!("listening on: unix://{}", path.display()),
        }
    }
    tracing::info!(data_dir = %config.data_dir.display(), "server started");
    let signals = app.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        signals.cancel();
    });
    tasks.close();
    let outcome = drain(
        &app,
        &config,
        serve_grpc(&app, &config, listeners, open_files),
        tasks,
    )
    .await;
    app.close().await.context("final flush")?;
    outcome
}

/// Runs gRPC until its listeners end, then waits for the HTTP servers (which finish the answers
/// in progress), the fleet (after its last acknowledged record) and the rules-directory sync —
/// all within `shutdown_grace_secs` of the signal; past it, what is still open is cut.
async fn drain(
    app: &App,
    config: &ServeConfig,
    grpc: impl std::future::Future<Output = anyhow::Result<()>>,
    tasks: TaskTracker,
) -> anyhow::Result<()> {
    let everything = async {
        let outcome = grpc.await;
        tasks.wait().await;
        outcome
    };
    let grace = config.shutdown_grace;
    tokio::select! {
        outcome = everything => outcome,
        _ = async { app.shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "connections or tasks still open after the grace period; closing them");
            Ok(())
        }
    }
}

/// How often changed `falco_events` counts are saved (and at shutdown), so a restart does not
/// count the whole log again.
const SAVE_COUNTS_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

async fn save_counts(app: App) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SAVE_COUNTS_EVERY) => {}
            _ = app.shutdown.cancelled() => return,
        }
        let saver = app.clone();
        let _ = tokio::task::spawn_blocking(move || saver.logs.save_counts()).await;
    }
}

/// How often the logs drop what outlived `outputs.max_age` / `drops.max_age` when nothing is
/// appended (an append trims too). A check is an in-memory comparison unless something expired.
const EXPIRE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

async fn expire_logs(app: App) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EXPIRE_EVERY) => {}
            _ = app.shutdown.cancelled() => return,
        }
        let logs = app.clone();
        let _ = tokio::task::spawn_blocking(move || logs.logs.expire()).await;
    }
}

/// Starts the HTTP surface: one listener per address, serving the endpoints configured on it,
/// each on `tasks`.
fn serve_http(
    app: &App,
    config: &ServeConfig,
    bound: Vec<HttpBound>,
    tasks: &TaskTracker,
) -> anyhow::Result<()> {
    for HttpBound {
        listener,
        endpoints,
    } in bound
    {
        let addr = listener.local_addr()?;
        let tls_wanted = endpoints.iter().any(|e| e.tls);
        let scheme = if tls_wanted { "https" } else { "http" };
        for e in &endpoints {
            println!("{}", endpoint_line(e.kind, scheme, addr));
        }
        // Where every endpoint on the listener needs a certificate, the handshake asks for one.
        let require_cert = endpoints.iter().all(|e| {
            matches!(
                e.kind,
                HttpKind::Falco { mtls: true } | HttpKind::Metrics { mtls: true }
            )
        });
        let tls = match (&config.tls, tls_wanted) {
            (Some(t), true) => {
                let acceptor =
                    crate::http::tls_acceptor(&t.cert, &t.key, Some(&t.client_ca), require_cert);
                Some(acceptor.map_err(anyhow::Error::msg)?)
            }
            _ => None,
        };
        let opts = crate::http::HttpOptions {
            tls,
            limits: config.limits.clone(),
            policy: std::sync::Arc::new(config.policy.clone()),
            allowed_hosts: std::sync::Arc::new(config.allowed_hosts.clone()),
        };
        let endpoints: Vec<&HttpEndpoint> = endpoints.iter().collect();
        let router = crate::http::router(app.clone(), &endpoints);
        tasks.spawn(crate::http::serve(app.clone(), listener, router, opts));
    }
    Ok(())
}

/// The line `serve` prints for an HTTP endpoint: what it is and its URL.
fn endpoint_line(kind: HttpKind, scheme: &str, addr: std::net::SocketAddr) -> String {
    let certs = |mtls: bool, role: &str| {
        if mtls {
            format!(", client certificates with the {role} role")
        } else {
            String::new()
        }
    };
    match kind {
        HttpKind::Webhook => format!("k8s audit webhook: {scheme}://{addr}/k8s-audit"),
        HttpKind::Console => format!("web console: {scheme}://{addr}/console/"),
        HttpKind::Metrics { mtls } => format!(
            "prometheus metrics: {scheme}://{addr}/metrics{}",
            certs(mtls, "reader")
        ),
        HttpKind::Falco { mtls } => format!(
            "falco http_output receiver: {scheme}://{addr}/ (and /falco){}",
            certs(mtls, "ingest")
        ),
    }
}

/// An HTTP listener and the endpoints it serves.
struct HttpBound {
    listener: tokio::net::TcpListener,
    endpoints: Vec<HttpEndpoint>,
}

/// Serves gRPC on every bound listener until they end (the caller bounds that with the grace).
async fn serve_grpc(
    app: &App,
    config: &ServeConfig,
    listeners: Vec<Bound>,
    open_files: u64,
) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    let limits = fit_connections(config.limits.clone(), open_files, listeners.len());
    let opts = grpc::ServerOptions {
        policy: std::sync::Arc::new(config.policy.clone()),
        limits,
    };
    for bound in listeners {
        let app = app.clone();
        let opts = opts.clone();
        match bound {
            Bound::Unix(path, listener) => tasks.spawn(async move {
                let result = grpc::serve_unix_with(app, listener, opts).await;
                let _ = std::fs::remove_file(&path);
                result
            }),
            Bound::Tcp(_, listener) => {
                let tls = config
                    .tls
                    .as_ref()
                    .expect("checked by the config: TCP needs TLS");
                let tls = grpc::tls_config(&tls.cert, &tls.key, &tls.client_ca);
                tasks.spawn(grpc::serve_tcp(app, listener, tls, opts))
            }
        };
    }
    while let Some(result) = tasks.join_next().await {
        result.context("server task panicked")??;
    }
    Ok(())
}

/// Binds the gRPC listeners and the HTTP surface's.
async fn bind(config: &ServeConfig) -> anyhow::Result<(Vec<Bound>, Vec<HttpBound>)> {
    let mut listeners = Vec::new();
    for target in &config.listen {
        listeners.push(match target {
            Listen::Unix(path) => {
                let listener = grpc::bind_unix_with(path, config.socket_mode, config.socket_gid)
                    .with_context(|| format!("cannot listen on {}", path.display()))?;
                Bound::Unix(path.clone(), listener)
            }
            Listen::Tcp(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                Bound::Tcp(listener.local_addr()?, listener)
            }
        });
    }
    let mut http: Vec<HttpBound> = Vec::new();
    for e in &config.http {
        // Endpoints on one fixed address share its listener (port 0 means a listener each).
        if let Some(shared) = http
            .iter_mut()
            .find(|b| e.addr.port() != 0 && b.endpoints[0].addr == e.addr)
        {
            shared.endpoints.push(e.clone());
            continue;
        }
        let listener = tokio::net::TcpListener::bind(e.addr)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", e.addr))?;
        http.push(HttpBound {
            listener,
            endpoints: vec![e.clone()],
        });
    }
    Ok((listeners, http))
}

/// Says where falco-api writes for Falco, and whether it could.
fn print_falco(app: &App) {
    for (kind, state) in app.nodes.sync_states() {
        let what = match kind {
            crate::falco::sync::RULES_DIR => "falco rules directory",
            _ => "falco config file",
        };
        if state.error.is_empty() {
            println!("{what}: {} (revision {})", state.path, state.written);
        } else {
            println!(
                "{what}: {} NOT WRITTEN: {} (retrying)",
                state.path, state.error
            );
        }
    }
}

/// Says which rules are in force, and where they came from.
fn print_rules(app: &App, config: &ServeConfig, imported: Option<u64>) -> anyhow::Result<()> {
    let set = app.pipeline.rules();
    let files = app.rules.list(0)?.0.len();
    match (files, imported) {
        (0, _) => println!("rules: none loaded (events are accepted, and no rule can match them)"),
        (n, Some(rev)) => println!(
            "rules: {} from {}, imported from --rules as revision {rev}",
            counted(set.infos().len() as u64, "rule", "rules"),
            counted(n as u64, "file", "files")
        ),
        (n, None) => {
            println!(
                "rules: {} from {} (revision {})",
                counted(set.infos().len() as u64, "rule", "rules"),
                counted(n as u64, "stored file", "stored files"),
                set.revision
            );
            if !config.rules_files.is_empty() {
                println!("rules: --rules ignored: the store already has rules (use --import-rules to record them as a change)");
            }
        }
    }
    Ok(())
}

/// Lowers `limits.max_connections` so every listener's connections fit under the open-files
/// limit, leaving room for the database, logs and rules files.
fn fit_connections(
    mut limits: crate::net::Limits,
    open_files: u64,
    listeners: usize,
) -> crate::net::Limits {
    let fit = (open_files.saturating_sub(RESERVED_FILES) / listeners.max(1) as u64) as usize;
    if limits.max_connections > fit.max(1) {
        tracing::warn!(
            configured = limits.max_connections,
            now = fit.max(1),
            open_files,
            "limits.max_connections lowered to fit the open-files limit"
        );
        limits.max_connections = fit.max(1);
    }
    limits
}

/// A bound listener.
enum Bound {
    Unix(std::path::PathBuf, tokio::net::UnixListener),
    Tcp(std::net::SocketAddr, tokio::net::TcpListener),
}

/// Reads and checks the boot rules files; an error stops the server before anything is bound.
/// Returns (basename, content) pairs in the order given.
fn load_rules(paths: &[std::path::PathBuf]) -> anyhow::Result<Option<Vec<(String, String)>>> {
    if paths.is_empty() {
        return Ok(None);
    }
    let files = crate::engine::files::read_rules_files(paths).map_err(anyhow::Error::msg)?;
    if let Err(e) = crate::engine::RuleSet::load(&files, &crate::engine::LoadOptions::default()) {
        return Err(anyhow::anyhow!("rules do not load: {}", e.error));
    }
    Ok(Some(
        paths
            .iter()
            .zip(files)
            .map(|(p, f)| {
                let base = p.file_name().map_or_else(
                    || "rules.yaml".to_string(),
                    |b| b.to_string_lossy().into_owned(),
                );
                let base: String = base
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || "._-".contains(c) {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                (base, f.content)
            })
            .collect(),
    ))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("cannot install the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("cannot install the SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
