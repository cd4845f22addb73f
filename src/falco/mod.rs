//! Running beside Falco (0.44+, which has no gRPC server): Falco's alerts come in through its
//! http_output (`crate::http::falco`) or its file/program output (`send --alerts`, served by the
//! sidecar gRPC service), are parsed as Falco wrote them ([`alert`]) and stored here; the rules
//! and runtime configuration go out to the directory and file Falco watches ([`sync`]).

pub mod alert;
pub mod sync;

use std::ops::Range;

use crate::app::App;
use crate::feed::FeedError;

pub use alert::{parse, FalcoAlert};

/// What [`store`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The outputs-log seqs of the alerts.
    pub seqs: Range<u64>,
    /// Drop records written for Falco's internal drop alerts.
    pub drops: u64,
}

/// Stores Falco's alerts, durable when this returns: the drop records their internal drop alerts
/// imply first, then the alerts and `marks` in one transaction. Every node they came from is
/// counted in [`App::nodes`].
pub async fn store(
    app: &App,
    alerts: Vec<FalcoAlert>,
    client: &str,
    marks: Vec<(String, u64)>,
) -> Result<Stored, FeedError> {
    let mut drops = Vec::new();
    let mut events = Vec::with_capacity(alerts.len());
    for a in alerts {
        drops.extend(a.drop);
        events.push(a.event);
    }
    let n_drops = drops.len() as u64;
    if !drops.is_empty() {
        app.drops.append(drops).await?;
    }
    for e in &events {
        app.nodes.observe(e);
    }
    let seqs = app
        .commit_alerts_marked(events, "falco", client, marks)
        .await?;
    Ok(Stored {
        seqs,
        drops: n_drops,
    })
}
