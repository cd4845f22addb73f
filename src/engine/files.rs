//! Reading rules files from disk, for `serve --rules`, `eval` and the benchmarks.

use std::path::PathBuf;

use super::RulesFile;

/// Reads each file in order; an unreadable file is an error naming it.
pub fn read_rules_files(paths: &[PathBuf]) -> Result<Vec<RulesFile>, String> {
    paths
        .iter()
        .map(|p| {
            let content = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            Ok(RulesFile {
                name: p.display().to_string(),
                content,
            })
        })
        .collect()
}
