//! The `falco-api` binary: parse the command line, set up logging, run the command.

use std::process::ExitCode;

// mimalloc instead of glibc's malloc: the log replay path allocates on one thread and frees on
// another, which glibc serialises on arena locks (measured: `bench log` replay 0.46 → see the
// commit message).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};
use falco_api::cli;

#[derive(Parser, Debug)]
#[command(
    name = "falco-api",
    version,
    about = "The Falco gRPC API, complete and persistent"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (with no flags: default data directory and Unix socket, printed at start).
    Serve(cli::ServeArgs),
    /// Print the server's version.
    Version(cli::ConnectArgs),
    /// Stream output events (alerts).
    Tail(cli::tail::TailArgs),
    /// Manage versioned rules files.
    Rules {
        #[command(flatten)]
        connect: cli::ConnectArgs,
        #[command(subcommand)]
        command: cli::rules::RulesCommand,
    },
    /// Manage the runtime configuration.
    Config {
        #[command(flatten)]
        connect: cli::ConnectArgs,
        #[command(subcommand)]
        command: cli::configs::ConfigCommand,
    },
    /// Make certificates for mutual TLS.
    #[command(subcommand)]
    Certs(cli::certs::CertsCommand),
    /// Stream events from a file into the server (falco.inputs), or with --alerts, Falco's own
    /// alerts from its file or program output.
    Send(cli::send::SendArgs),
    /// Beside a running Falco: the nodes seen and the rules/config written for them (status),
    /// and the falco.yaml settings that connect Falco (setup).
    Falco {
        #[command(flatten)]
        connect: cli::ConnectArgs,
        #[command(subcommand)]
        command: cli::falco::FalcoCommand,
    },
    /// The fleet: which nodes follow this server's rules, at what revision, and what they refused.
    Fleet {
        #[command(flatten)]
        connect: cli::ConnectArgs,
        #[command(subcommand)]
        command: cli::fleet::FleetCommand,
    },
    /// Tokens for the web console: create (printed once), list, revoke.
    Token {
        #[command(flatten)]
        connect: cli::ConnectArgs,
        #[command(subcommand)]
        command: cli::token::TokenCommand,
    },
    /// Stream drop records (losses), with the same flags as tail.
    Drops(cli::tail::TailArgs),
    /// Copy the whole store from the running server, while it runs, to a new file.
    Backup(cli::backup::BackupArgs),
    /// Make a new data directory from a backup file (offline; refuses a non-empty directory).
    Restore(cli::backup::RestoreArgs),
    /// Evaluate rules files on recorded events offline (no server), or just validate them.
    Eval(cli::eval::EvalArgs),
    /// Load generators that print throughput, latency and size figures.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// The outputs log: append, replay through `sub` (against a bare stream), disk use.
    Log(falco_api::bench::LogBenchArgs),
    /// The pipeline: N input streams, M subscribers, throughput, latency, drops, RSS (against a
    /// bare bidi stream).
    Ingest(falco_api::bench::ingest::IngestBenchArgs),
    /// Rules and config commits per second, and reload latency (put → first alert).
    Control(falco_api::bench::ControlBenchArgs),
    /// Falco's http_output: alerts/s posted by keep-alive clients until durable, latency at a
    /// fixed rate, against a bare endpoint.
    Http(falco_api::bench::http::HttpBenchArgs),
    /// Forwarding to a local nats-server beside bare JetStream publishes, and collecting.
    Fleet(falco_api::bench::fleet::FleetBenchArgs),
    /// What metrics cost ingest (on vs off, interleaved) and how long a scrape of 10,000
    /// falco_events series takes.
    Metrics(falco_api::bench::metrics::MetricsBenchArgs),
    /// Crash soak: kill -9 the server at random moments under load, restart it, and check that
    /// nothing acknowledged was lost.
    Crash(falco_api::bench::crash::CrashBenchArgs),
}

/// What a shell reports for a process ended by SIGPIPE: the status a closed stdout gives.
const BROKEN_PIPE_STATUS: u8 = 141;

/// A reader that closed our stdout (`falco-api tail | head -1`) ends the command quietly, as it
/// ends other Unix tools: `print!` panics on a closed pipe, so the panic hook exits instead of
/// printing a backtrace, and a write error of that kind exits the same way.
fn exit_quietly_on_closed_stdout() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(i32::from(BROKEN_PIPE_STATUS));
        }
        default_hook(info)
    }));
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    exit_quietly_on_closed_stdout();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("falco-api: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => {
                let config = args.resolve()?;
                let reloader = init_tracing(&config.log_level());
                falco_api::app::serve::serve(config, Some(reloader))
                    .await
                    .map(|()| 0)
            }
            Command::Version(args) => cli::version(args).await,
            Command::Tail(args) => cli::tail(args).await,
            Command::Eval(args) => cli::eval::eval(args),
            Command::Backup(args) => cli::backup::backup(args).await,
            Command::Restore(args) => cli::backup::restore(args),
            Command::Send(args) => cli::send::send(args).await,
            Command::Certs(command) => cli::certs::run(command),
            Command::Rules { connect, command } => cli::rules::rules(connect, command).await,
            Command::Config { connect, command } => cli::configs::config(connect, command).await,
            Command::Drops(args) => cli::drops(args).await,
            Command::Falco { connect, command } => cli::falco::run(connect, command).await,
            Command::Token { connect, command } => cli::token::run(connect, command).await,
            Command::Fleet { connect, command } => cli::fleet::run(connect, command).await,
            Command::Bench(BenchCommand::Control(args)) => {
                let _ = init_tracing("warn");
                falco_api::bench::control_bench(args).await
            }
            Command::Bench(BenchCommand::Http(args)) => {
                let _ = init_tracing("warn");
                falco_api::bench::http::http_bench(args).await
            }
            Command::Bench(BenchCommand::Fleet(args)) => {
                let _ = init_tracing("warn");
                falco_api::bench::fleet::fleet_bench(args).await
            }
            Command::Bench(BenchCommand::Metrics(args)) => {
                let _ = init_tracing("warn");
                falco_api::bench::metrics::metrics_bench(args).await
            }
            Command::Bench(BenchCommand::Ingest(args)) => {
                let _ = init_tracing("warn");
                falco_api::bench::ingest::ingest_bench(args).await
            }
            Command::Bench(BenchCommand::Crash(args)) => {
                let _ = init_tracing("warn");
                falco_api::bench::crash::crash_bench(args).await
            }
            Command::Bench(BenchCommand::Log(args)) => {
                let _ = init_tracing("warn");
                falco_api::bench::log_bench(args).await
            }
        }
    });
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) if is_broken_pipe(&e) => ExitCode::from(BROKEN_PIPE_STATUS),
        Err(e) => {
            match e.downcast_ref::<tonic::Status>() {
                Some(status) => eprintln!("falco-api: {} ({:?})", status.message(), status.code()),
                None => eprintln!("falco-api: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// Sets up logging to stderr; returns what changes the filter later (for `log_level`).
fn init_tracing(filter: &str) -> falco_api::services::control::LogReloader {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(ansi)
                .with_writer(std::io::stderr),
        )
        .init();
    Box::new(move |level| {
        let new = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(new).map_err(|e| e.to_string())
    })
}
