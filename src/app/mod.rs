//! The top of the crate: `serve` builds the services once (a [`crate::services::App`]) and
//! starts every transport over them, then joins them at shutdown.

pub mod serve;
