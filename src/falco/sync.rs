//! What falco-api writes for a running Falco to read: the rules in force as `falco-api-*.yaml`
//! files in a directory Falco loads (`falco.rules_dir`), and the runtime keys that are Falco
//! settings in a file of Falco's `config_files` (`falco.config_file`). Falco's
//! `watch_config_files` reloads when they change, so every file is replaced atomically: written
//! beside its final name, fsynced, renamed over it, and the directory fsynced.
//!
//! A write follows every committed change (the commit hook, after the change is durable); a
//! failure is reported to the caller and to `falco status`, and a retry loop catches up.
//!
//! File names keep the load order: Falco loads a directory's files in byte order of name, and
//! falco-api loads its files in byte order of their stored names; each is written as
//! `falco-api-NAME+.yaml` — `+` sorts before every character a name may hold, so the order is
//! kept even where one name is a prefix of another — and the toggles go last, in
//! `falco-api-~toggles.yaml`. Files falco-api wrote are listed in `falco-rules-dir.json` in the
//! data directory; it removes only those, never a file it did not write.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::services::control::Committed;
use crate::services::nodes::SyncState;
use crate::services::App;

/// How often a directory or file that is behind is tried again.
const RETRY: Duration = Duration::from_secs(2);
/// The list of files written into the rules directory, in the data directory.
const MANIFEST: &str = "falco-rules-dir.json";
pub const TOGGLES_FILE: &str = "falco-api-~toggles.yaml";

pub const RULES_DIR: &str = "rules_dir";
pub const CONFIG_FILE: &str = "config_file";

/// The runtime keys that are Falco settings, each a top-level key of falco.yaml of the same
/// name and type (Falco 0.44's schema: `fixtures/falco-config-schema-0.44.0.json`).
///
/// Not written: `outputs.rate`/`outputs.max_burst` (Falco removed its `outputs` key in 0.37 and
/// 0.44's schema refuses it); `drops.alert_*` (a config file replaces Falco's
/// `syscall_event_drops` whole, which would drop the `actions` falco.yaml sets); Falco's
/// `buffered_outputs` and `outputs_queue`, which no falco-api setting matches.
const FALCO_KEYS: &[&str] = &[
    "priority",
    "json_output",
    "json_include_output_property",
    "json_include_tags_property",
    "json_include_message_property",
    "json_include_output_fields_property",
    "time_format_iso_8601",
    "rule_matching",
];

/// The file a stored rules file is written as.
pub fn file_name(name: &str) -> String {
    format!("falco-api-{name}+.yaml")
}

/// Where to write for Falco (`falco.rules_dir`, `falco.config_file`).
#[derive(Clone, Debug, Default)]
pub struct Targets {
    pub rules_dir: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
}

/// Writes for Falco; one at a time.
pub struct Syncer {
    config: Targets,
    data_dir: PathBuf,
    lock: Mutex<()>,
}

/// Starts writing for Falco: once now, after every commit, and again while behind.
pub fn start(app: &App, config: Targets) -> tokio_util::task::TaskTracker {
    let tasks = tokio_util::task::TaskTracker::new();
    tasks.close();
    if config.rules_dir.is_none() && config.config_file.is_none() {
        return tasks;
    }
    let syncer = Arc::new(Syncer {
        config,
        data_dir: app.data_dir.clone(),
        lock: Mutex::new(()),
    });
    let hook = syncer.clone();
    let hook_app = app.clone();
    app.hooks
        .add(Box::new(move |what| hook.committed(&hook_app, what)));
    for problem in syncer.catch_up(app) {
        tracing::warn!("{problem}");
    }
    let app = app.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                _ = app.shutdown.cancelled() => return,
            }
            let behind = app
                .nodes
                .sync_states()
                .iter()
                .any(|(_, s)| s.written < s.wanted || !s.error.is_empty());
            if behind {
                let (syncer, app) = (syncer.clone(), app.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    for problem in syncer.catch_up(&app) {
                        tracing::debug!("{problem}");
                    }
                })
                .await;
            }
        }
    });
    tasks
}

impl Syncer {
    fn committed(&self, app: &App, what: Committed) -> Vec<String> {
        let result = match what {
            Committed::Rules(_) => self.rules(app),
            Committed::Config(_) => self.config_file(app),
        };
        result.err().into_iter().collect()
    }

    /// Writes whatever is configured; returns what failed.
    fn catch_up(&self, app: &App) -> Vec<String> {
        [self.rules(app), self.config_file(app)]
            .into_iter()
            .filter_map(Result::err)
            .collect()
    }

    fn rules(&self, app: &App) -> Result<(), String> {
        let Some(dir) = &self.config.rules_dir else {
            return Ok(());
        };
        let _turn = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let view = app.rules.falco_view().map_err(|e| e.to_string())?;
        let wanted = view.revision;
        let written = app
            .nodes
            .sync_states()
            .into_iter()
            .find(|(k, _)| *k == RULES_DIR)
            .map_or(0, |(_, s)| s.written);
        let result = write_rules_dir(dir, &self.data_dir.join(MANIFEST), &view);
        let (written, error) = match &result {
            Ok(()) => (wanted, String::new()),
            Err(e) => (written, e.clone()),
        };
        app.nodes.set_sync(
            RULES_DIR,
            SyncState {
                path: dir.display().to_string(),
                written,
                wanted,
                error: error.clone(),
            },
        );
        result.map_err(|e| {
            format!(
                "the rules are committed, but Falco's rules directory {} was not written ({e}); \
                 it is behind by revision {wanted}, and falco-api keeps trying",
                dir.display()
            )
        })
    }

    fn config_file(&self, app: &App) -> Result<(), String> {
        let Some(path) = &self.config.config_file else {
            return Ok(());
        };
        let _turn = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let (entries, revision) = app.config.get(&[], 0).map_err(|e| e.to_string())?;
        let values: Vec<(String, String)> = entries
            .into_iter()
            .filter(|e| e.origin != "default")
            .map(|e| (e.key, e.value))
            .collect();
        let text = falco_config(&values, revision);
        let result = ensure_dir(path.parent().unwrap_or(Path::new(".")))
            .and_then(|()| atomic_write(path, text.as_bytes()));
        let (written, error) = match &result {
            Ok(()) => (revision, String::new()),
            Err(e) => (0, e.clone()),
        };
        app.nodes.set_sync(
            CONFIG_FILE,
            SyncState {
                path: path.display().to_string(),
                written,
                wanted: revision,
                error,
            },
        );
        result.map_err(|e| {
            format!(
                "the configuration is committed, but Falco's config file {} was not written ({e}); \
                 falco-api keeps trying",
                path.display()
            )
        })
    }
}

/// The rules directory's files for `view`: file name → content.
pub fn rules_files(view: &crate::services::control::rules::FalcoView) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = view
        .files
        .iter()
        .map(|(name, content)| {
            let header = format!(
                "# Written by falco-api: rules file '{name}' at revision {}. Changes made here \
                 are overwritten; use `falco-api rules put`.\n",
                view.revision
            );
            (file_name(name), header + content)
        })
        .collect();
    if !view.enabled.is_empty() {
        let mut text = format!(
            "# Written by falco-api: rules enabled or disabled through its API (revision {}).\n",
            view.revision
        );
        for (rule, enabled) in &view.enabled {
            let name = serde_json::Value::String(rule.clone()).to_string();
            text.push_str(&format!(
                "- rule: {name}\n  enabled: {enabled}\n  override:\n    enabled: replace\n"
            ));
        }
        out.push((TOGGLES_FILE.to_string(), text));
    }
    out
}

/// Writes `view` into `dir`: new and changed files, then removes files an earlier write left
/// that are no longer wanted (only those listed in `manifest`), then records the new list.
fn write_rules_dir(
    dir: &Path,
    manifest: &Path,
    view: &crate::services::control::rules::FalcoView,
) -> Result<(), String> {
    ensure_dir(dir)?;
    let files = rules_files(view);
    for (name, content) in &files {
        let path = dir.join(name);
        // Whatever else is at the name (a link, a FIFO, another file) is replaced, never read
        // through or waited on.
        let limit = content.len() as u64 + 1;
        let same =
            crate::base::files::read_regular(&path, limit, crate::base::files::Links::Refuse);
        if same.ok().as_deref() == Some(content.as_bytes()) {
            continue;
        }
        atomic_write(&path, content.as_bytes())?;
    }
    let wanted: BTreeSet<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let before = read_manifest(manifest, dir);
    let mut removed = false;
    for old in before.iter().filter(|n| !wanted.contains(n.as_str())) {
        match std::fs::remove_file(dir.join(old)) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove {}: {e}", dir.join(old).display())),
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    let list = serde_json::json!({ "dir": dir, "files": wanted });
    atomic_write(manifest, list.to_string().as_bytes())
}

/// Creates `dir` (and its parents) when it does not exist, as Falco's `rules.d` and `config.d`
/// may not yet; says exactly what is wrong when something else is there.
fn ensure_dir(dir: &Path) -> Result<(), String> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(format!("{} exists and is not a directory", dir.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| {
                format!(
                    "{} does not exist and cannot be created: {e}",
                    dir.display()
                )
            })?;
            tracing::info!(dir = %dir.display(), "created the directory for Falco's files");
            Ok(())
        }
        Err(e) => Err(format!("cannot use {}: {e}", dir.display())),
    }
}

/// The files an earlier write put into `dir` (none when the manifest names another directory).
fn read_manifest(manifest: &Path, dir: &Path) -> Vec<String> {
    let Ok(bytes) =
        crate::base::files::read_regular(manifest, 1 << 20, crate::base::files::Links::Refuse)
    else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    if value["dir"].as_str() != Some(&dir.display().to_string()) {
        return Vec::new();
    }
    value["files"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                // Only names this module writes, whatever the manifest says.
                .filter(|n| n.starts_with("falco-api-") && !n.contains('/'))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Falco's config file for the runtime keys in `values` that are Falco settings.
pub fn falco_config(values: &[(String, String)], revision: u64) -> String {
    let mut top = serde_json::Map::new();
    for key in FALCO_KEYS {
        if let Some((_, value)) = values.iter().find(|(k, _)| k == key) {
            top.insert(key.to_string(), yaml_value(value));
        }
    }
    let mut text = format!(
        "# Written by falco-api at configuration revision {revision}: the settings set through \
         its boot file or API that are Falco settings. Changes made here are overwritten; use \
         `falco-api config set`.\n"
    );
    for (key, value) in &top {
        text.push_str(&format!("{key}: {value}\n"));
    }
    if top.is_empty() {
        text.push_str("{}\n");
    }
    text
}

/// Booleans and numbers as themselves, anything else as a quoted string (JSON scalars are YAML).
fn yaml_value(value: &str) -> serde_json::Value {
    if let Ok(b) = value.parse::<bool>() {
        return serde_json::Value::Bool(b);
    }
    if let Ok(n) = value.parse::<i64>() {
        return n.into();
    }
    if let Some(n) = value
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
    {
        return serde_json::Value::Number(n);
    }
    serde_json::Value::String(value.to_string())
}

/// Replaces `path` with `content` so a reader sees the old file or the new one, never a part:
/// a temporary file in the same directory (named so Falco does not load it), fsync, rename,
/// fsync of the directory.
pub fn atomic_write(path: &Path, content: &[u8]) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} names no file", path.display()))?;
    let tmp = dir.join(format!(".{}.falco-api-tmp", name.to_string_lossy()));
    let write = || -> std::io::Result<()> {
        // Created new, never through a link someone planted at the temporary's name; one left by
        // a crash (or planted) is removed first (removing a link never touches its target).
        let mut f = match crate::base::files::create_new_private(&tmp) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::remove_file(&tmp)?;
                crate::base::files::create_new_private(&tmp)?
            }
            other => other?,
        };
        f.write_all(content)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("cannot write {}: {e}", path.display()));
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("cannot fsync {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_keep_the_load_order() {
        let mut names = ["a", "a-b", "a.yaml", "b", "B", "a_1", "a0"];
        names.sort();
        let mut written: Vec<String> = names.iter().map(|n| file_name(n)).collect();
        written.push(TOGGLES_FILE.into());
        let mut sorted = written.clone();
        sorted.sort();
        assert_eq!(written, sorted);
    }

    #[test]
    fn the_config_file_holds_only_falco_settings() {
        let text = falco_config(
            &[
                ("priority".into(), "warning".into()),
                ("outputs.rate".into(), "0.5".into()),
                ("outputs.max_burst".into(), "10".into()),
                ("json_output".into(), "true".into()),
                ("ingest.queue_size".into(), "9".into()),
                ("drops.alert_rate".into(), "1".into()),
            ],
            7,
        );
        assert!(text.contains("revision 7"));
        assert!(text.contains("priority: \"warning\"\n"), "{text}");
        assert!(text.contains("json_output: true\n"));
        assert!(!text.contains("outputs"), "{text}");
        assert!(!text.contains("queue_size"));
        assert!(!text.contains("rate"));
    }

    /// Falco 0.44.0's config schema (`userspace/falco/config_json_schema.h` at tag 0.44.0, commit
    /// a078853fe47d), as `falco --config-schema` prints it.
    fn falco_schema() -> serde_json::Value {
        serde_json::from_str(include_str!(
            "../../fixtures/falco-config-schema-0.44.0.json"
        ))
        .expect("schema fixture")
    }

    /// A draft-06 validator for the keywords Falco's schema uses; the errors found.
    fn validate(
        root: &serde_json::Value,
        schema: &serde_json::Value,
        v: &serde_json::Value,
        at: &str,
        errors: &mut Vec<String>,
    ) {
        use serde_json::Value;
        if let Some(Value::String(r)) = schema.get("$ref") {
            let name = r.trim_start_matches("#/definitions/");
            return validate(root, &root["definitions"][name], v, at, errors);
        }
        if let Some(Value::Array(options)) = schema.get("anyOf").or_else(|| schema.get("oneOf")) {
            let fits = options.iter().filter(|o| {
                let mut e = Vec::new();
                validate(root, o, v, at, &mut e);
                e.is_empty()
            });
            if fits.count() == 0 {
                errors.push(format!("{at}: matches none of its alternatives"));
            }
            return;
        }
        let type_ok = match schema.get("type").and_then(Value::as_str) {
            Some("object") => v.is_object(),
            Some("array") => v.is_array(),
            Some("string") => v.is_string(),
            Some("boolean") => v.is_boolean(),
            Some("integer") => v.is_i64() || v.is_u64(),
            Some("number") => v.is_number(),
            _ => true,
        };
        if !type_ok {
            errors.push(format!("{at}: {v} is not of type {}", schema["type"]));
            return;
        }
        if let Some(Value::Array(allowed)) = schema.get("enum") {
            if !allowed.contains(v) {
                errors.push(format!("{at}: {v} is not one of {allowed:?}"));
            }
        }
        if let Value::Object(map) = v {
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, item) in map {
                match props.and_then(|p| p.get(k)) {
                    Some(sub) => validate(root, sub, item, &format!("{at}.{k}"), errors),
                    None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        errors.push(format!("{at}: unknown property '{k}'"))
                    }
                    None => {}
                }
            }
            let min = schema.get("minProperties").and_then(Value::as_u64);
            if min.is_some_and(|m| (map.len() as u64) < m) {
                errors.push(format!("{at}: fewer than {min:?} properties"));
            }
        }
        if let (Value::Array(items), Some(sub)) = (v, schema.get("items")) {
            for (i, item) in items.iter().enumerate() {
                validate(root, sub, item, &format!("{at}[{i}]"), errors);
            }
        }
    }

    fn schema_errors(text: &str) -> Vec<String> {
        let root = falco_schema();
        let doc: serde_json::Value = serde_saphyr::from_str(text).expect("the file is YAML");
        let mut errors = Vec::new();
        validate(&root, &root, &doc, "falco.yaml", &mut errors);
        errors
    }

    #[test]
    fn every_config_file_falco_api_writes_is_valid_for_falco_0_44() {
        let keys = crate::services::control::keys::KEYS;
        // Every key falco-api knows set to a non-default value of its kind, so every Falco key
        // is written: the fullest file it can write, and the empty one.
        let values: Vec<(String, String)> = keys
            .iter()
            .map(|k| {
                let value = match k.default {
                    "true" => "false",
                    "false" => "true",
                    "first" => "all",
                    "debug" => "warning",
                    _ => "7",
                };
                (k.name.to_string(), value.to_string())
            })
            .collect();
        let full = falco_config(&values, 3);
        for key in FALCO_KEYS {
            assert!(
                full.contains(&format!("\n{key}: ")),
                "{key} written: {full}"
            );
        }
        assert_eq!(schema_errors(&full), Vec::<String>::new(), "{full}");
        assert_eq!(schema_errors(&falco_config(&[], 1)), Vec::<String>::new());
        // The validator refuses what Falco refuses: the pre-0.37 `outputs` key, wrong types.
        let old = "outputs:\n  rate: 0.5\n  max_burst: 10\n";
        assert!(schema_errors(old)[0].contains("unknown property 'outputs'"));
        assert!(!schema_errors("json_output: \"yes\"\n").is_empty());
        assert!(!schema_errors("outputs_queue: {}\n").is_empty());
    }
}
