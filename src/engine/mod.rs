//! The Falco rules engine: pure and synchronous (no tokio, no tonic).
//!
//! Pipeline, as in Falco: rules files → [`yaml`] (scalars as text, with positions) → [`loader`]
//! (lists, macros, rules; define / append / override) → after each file, [`text`] (one-level
//! list expansion, textual list substitution, exceptions rewriting) → [`parser`] (condition →
//! [`ast`]) → macro resolution → [`compiler`] (fields from [`fields`] via [`extract`], operator
//! checks) → [`eval`] evaluators and [`format`] output formats, gathered in a [`ruleset::RuleSet`].

pub mod ast;
pub mod catalog;
pub mod compiler;
pub mod eval;
pub mod extract;
pub mod fields;
pub mod files;
pub mod format;
pub mod input;
pub mod isolate;
pub mod loader;
pub mod multi;
pub mod parser;
pub mod ruleset;
pub mod text;
pub mod time;
pub mod tuning;
pub mod yaml;

pub use extract::EventData;
pub use loader::Diagnostic;
pub use ruleset::{
    Alert, EvalOptions, LoadError, LoadOptions, Matching, RuleInfo, RuleSet, RulesFile,
};

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
    let mut sources: Vec<(&str, &[fields::FieldInfo])> = vec![
        ("k8s_audit", fields::k8s_audit()),
        ("syscall", fields::syscall()),
        ("<custom>", fields::custom()),
    ];
    for (source, _) in fields::PLUGIN_SOURCES {
        sources.push((source, fields::registry(source)));
    }
    fields::checksum(&sources)
}
