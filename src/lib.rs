//! falco-api: the complete, persistent, wire-compatible implementation of the Falco gRPC API.
//!
//! Map of the crate (the README's "Code map" says the same; `scripts/module-deps.py` checks that
//! no two top-level modules, and no two files of one folder, import each other in a cycle):
//! - [`serve`]: `falco-api serve`: a fallible `prepare` before anything binds, then `run`.
//! - [`config`]: boot configuration (file + flags), validated before anything binds.
//! - [`app`]: the shared state handed to every transport, and the runtime settings it applies.
//! - [`auth`]: identities and roles, whatever the transport.
//! - [`ingest`]: where events enter, whatever carried them: rate limit, queue, drops, commit.
//! - [`pipeline`]: the ingest queue and the evaluation threads.
//! - [`engine`]: the Falco rules engine (pure, synchronous: no tokio, no tonic).
//! - [`feed`]: group commit, the published head, and resumable subscriptions over a ring log.
//! - [`control`]: versioned rules files, toggles and runtime configuration, applied live.
//! - [`store`]: the redb database (the only module that touches redb, and sled for converting
//!   old data directories): ring logs, consumer positions, versioned state, migrations.
//! - [`event`]: the domain records (output events, drop records, priorities, filters).
//! - [`throttle`]: token buckets and the drop-alert settings.
//! - [`files`]: reading only regular files within a size, creating files without following links.
//! - [`server`]: the gRPC services, one thin adapter per service, `status.rs` (the one table
//!   from domain errors to statuses), auth, and the bounded listeners gRPC and HTTP share (caps
//!   per listener and peer, idle connections evicted, first-byte and idle timeouts).
//! - [`http`]: the HTTP surface (axum): the Kubernetes audit webhook, Falco's http_output
//!   receiver, `/metrics`, the web console; `Host`/`Origin` checks.
//! - [`falco`]: running beside Falco: its alerts in (JSON or text), its rules directory and
//!   config file out; [`nodes`]: what is known about the Falco nodes that send alerts.
//! - [`fleet`]: NATS JetStream: forwarding this node's logs, collecting a fleet's, rules for the
//!   fleet through a key-value bucket.
//! - [`telemetry`]: the counters, histograms and `falco_events`; [`metrics`]: every series
//!   gathered at scrape time.
//! - [`tokens`]: console tokens (stored hashed) and signed sessions.
//! - [`cli`]: the client commands and the gRPC client helpers; [`bench`]: the load generators,
//!   their baselines and the crash soak.
//! - [`proto`]: generated code.

#![forbid(unsafe_code)]

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
