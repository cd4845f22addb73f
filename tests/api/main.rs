//! Integration tests against the real server: one test binary (one link) with a module per area.

mod authority;
mod common;
mod conformance;
mod console;
mod control;
mod engine_cases;
mod engine_props;
mod falco;
mod first_hour;
mod fleet;
mod fuzz;
mod hardening;
mod http;
mod metrics;
mod outputs;
mod pipeline;
mod plugin_sources;
mod process;
mod retention;
mod security;
mod shared_host;
mod store;
mod tuning;
mod upgrade;
mod version;
