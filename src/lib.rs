//! falco-api: the complete, persistent, wire-compatible implementation of the Falco gRPC API.
//!
//! Map of the crate:
//! - [`config`]: boot configuration (file + flags), validated before anything binds.
//! - [`control`]: versioned rules files, toggles and runtime configuration, applied live.
//! - [`store`]: the redb database (the only module that touches redb, and sled for converting
//!   old data directories): ring logs, consumer positions, versioned state, schema migrations
//!   (`migrations/`).
//! - [`feed`]: group commit, the published head, and resumable subscriptions over a ring log.
//! - [`event`]: the domain records (output events, priorities, filters).
//! - [`engine`]: the Falco rules engine (pure, synchronous).
//! - [`pipeline`]: the ingest queue and evaluation threads between inputs and the outputs log.
//! - [`server`]: the gRPC services (the only module that knows tonic's server side).
//! - [`app`]: the shared state handed to the services.
//! - [`client`], [`cli`], [`run`], [`bench`]: connecting, the command line, `serve`, and the
//!   load generators.
//! - [`proto`]: generated code.

#![forbid(unsafe_code)]

pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod control;
pub mod engine;
pub mod event;
pub mod feed;
pub mod http;
pub mod ingest;
pub mod pipeline;
pub mod proto;
pub mod serve;
pub mod server;
pub mod store;
pub mod throttle;
