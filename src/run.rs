//! `falco-api serve`: open the store, bind, serve until SIGINT/SIGTERM, drain, flush.

use anyhow::Context;

use crate::app::App;
use crate::client::Target;
use crate::config::ServeConfig;
use crate::server;
use crate::store::StoreOptions;

/// Runs the server until a signal; returns once everything is flushed.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let opts = StoreOptions {
        outputs_capacity: config.outputs_capacity,
        ..Default::default()
    };
    let app = App::open(&config.data_dir, &opts).with_context(|| {
        format!(
            "cannot open the data directory {}",
            config.data_dir.display()
        )
    })?;
    let mut listeners = Vec::new();
    for target in &config.listen {
        let Target::Unix(path) = target;
        let listener = server::bind_unix(path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        listeners.push((path.clone(), listener));
    }
    println!("falco-api {} serving", env!("CARGO_PKG_VERSION"));
    println!("data directory: {}", config.data_dir.display());
    for (path, _) in &listeners {
        println!("listening on: unix://{}", path.display());
    }
    tracing::info!(data_dir = %config.data_dir.display(), "server started");

    let signals = app.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        signals.cancel();
    });

    let mut tasks = tokio::task::JoinSet::new();
    for (path, listener) in listeners {
        let app = app.clone();
        tasks.spawn(async move {
            let result = server::serve_unix(app, listener).await;
            let _ = std::fs::remove_file(&path);
            result
        });
    }
    let all = async {
        while let Some(result) = tasks.join_next().await {
            result.context("server task panicked")??;
        }
        Ok::<(), anyhow::Error>(())
    };
    let grace = config.shutdown_grace;
    let outcome = tokio::select! {
        result = all => result,
        _ = async { app.shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "streams still open after the grace period; closing them");
            Ok(())
        }
    };
    app.store.flush().context("final flush")?;
    outcome
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
