//! The services the composition root (`app::serve`) builds once and hands to the transports:
//! the logs' one write path, ingest, the Falco nodes, telemetry and its scrape-time gathering,
//! and console tokens.

mod app;
pub mod control;
pub mod ingest;
pub mod logs;
pub mod metrics;
pub mod nodes;
pub mod status;
pub mod telemetry;
pub mod tokens;

pub use app::App;
