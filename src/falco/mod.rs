//! Running beside Falco (0.44+, which has no gRPC server): Falco's alerts come in through its
//! http_output (`crate::http::falco`) or its file/program output (`send --alerts`, served by the
//! sidecar gRPC service), are parsed as Falco wrote them ([`alert`]) and stored here; the rules
//! and runtime configuration go out to the directory and file Falco watches ([`sync`]).

pub mod alert;
pub mod sync;

use crate::feed::FeedError;
use crate::services::logs::{Batch, Logs, Writer, Written};

pub use alert::{parse, AlertError, FalcoAlert};

/// What [`store`] stored.
pub type Stored = Written;

/// Stores Falco's alerts, durable when this returns: the drop records their internal drop alerts
/// imply first, then the alerts and `marks` in one transaction (under [`Writer::Falco`]'s policy).
pub async fn store(
    logs: &Logs,
    alerts: Vec<FalcoAlert>,
    client: &str,
    marks: Vec<(String, u64)>,
) -> Result<Stored, FeedError> {
    let mut batch = Batch {
        alert_marks: marks,
        ..Batch::default()
    };
    for a in alerts {
        batch.drops.extend(a.drop);
        batch.alerts.push(a.event);
    }
    logs.write(Writer::Falco, batch, "falco", client).await
}
