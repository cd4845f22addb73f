//! falco-api: the complete, persistent, wire-compatible implementation of the Falco gRPC API.
//!
//! Map of the crate, lowest layer first (the README's "Code map" says the same;
//! `scripts/module-deps.py` checks that no two top-level modules, and no two files of one
//! folder, import each other in a cycle):
//! - [`base`]: the domain records (events, drop records, priorities, filters), token buckets,
//!   reading and creating files safely.
//! - [`engine`]: the Falco rules engine (pure, synchronous: no tokio, no tonic).
//! - [`store`]: the redb database (the only module that touches redb, and sled for converting
//!   old data directories): ring logs, consumer positions, versioned state, migrations.
//! - [`feed`]: group commit, the published head, and resumable subscriptions over a ring log.
//! - [`pipeline`]: the ingest queue and the evaluation threads.
//! - [`net`]: what gRPC and HTTP share: bounded listeners (caps per listener and peer, idle
//!   connections evicted, first-byte and idle timeouts), calls in flight, identities and roles.
//! - [`services`]: the services built once over one store ([`services::App`] holds them):
//!   `logs` (the one write path into the outputs and drops logs), `ingest`, `control` (rules and
//!   runtime configuration), `nodes`, `telemetry`, `metrics`, `tokens`, and `status` (the one
//!   table from service errors to gRPC codes and HTTP statuses).
//! - [`config`]: boot configuration (file + flags), validated before anything binds.
//! - [`proto`]: generated code, and `convert` (stored records to messages).
//! - The transports: [`grpc`] (one thin adapter per service), [`http`] (the Kubernetes audit
//!   webhook, Falco's http_output receiver, `/metrics`, the web console; one `ApiError`),
//!   [`falco`] (Falco's alerts in, its rules directory and config file out), [`fleet`] (NATS
//!   JetStream: forwarding, collecting, rules through a key-value bucket).
//! - [`app`]: the composition root: `serve` builds the services once, starts every transport,
//!   and at shutdown joins them all within the grace.
//! - [`cli`]: the client commands; [`bench`]: the load generators, their baselines and the
//!   crash soak.

pub mod app;
pub mod base;
pub mod bench;
pub mod cli;
pub mod config;
pub mod engine;
pub mod falco;
pub mod feed;
pub mod fleet;
pub mod grpc;
pub mod http;
pub mod net;
pub mod pipeline;
pub mod proto;
pub mod services;
pub mod store;
