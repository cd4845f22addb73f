//! The Falco rules engine: pure and synchronous (no tokio, no tonic). Today it holds the field
//! registry; the rules loader, condition compiler, evaluator and output formatter build on it.

pub mod fields;

/// The rules engine version this engine implements: the language of Falco 0.44's engine, so rules
/// files that require engine versions up to this load.
pub const ENGINE_VERSION: (u32, u32, u32) = (0, 62, 0);

/// `ENGINE_VERSION` as text.
pub fn engine_version_string() -> String {
    let (major, minor, patch) = ENGINE_VERSION;
    format!("{major}.{minor}.{patch}")
}

/// The checksum of every field the engine supports, over all sources.
pub fn fields_checksum() -> String {
    fields::checksum(&[("k8s_audit", fields::k8s_audit())])
}
