//! The field registry: every field the engine can extract, per source, with its type, whether it
//! is list-valued and what argument it takes. The compiler type-checks conditions against it and
//! the version service publishes its checksum (`engine_fields_checksum`).

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// Value types, named after libsinsp's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// Text (PT_CHARBUF); every `ka.*`, `json.*` and `jevt.*` field.
    String,
    /// Unsigned and signed integers (PT_UINT*/PT_INT*), including pids, ports, fds and times.
    Number,
    Bool,
    /// An IP address (PT_IPADDR / PT_IPV4ADDR / PT_IPV6ADDR).
    Ip,
    /// An IP network (PT_IPNET): compared against CIDR values.
    IpNet,
    /// A byte buffer (PT_BYTEBUF): the only type `bcontains`/`bstartswith` accept.
    Bytes,
}

impl FieldType {
    fn tag(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Number => "number",
            FieldType::Bool => "bool",
            FieldType::Ip => "ip",
            FieldType::IpNet => "ipnet",
            FieldType::Bytes => "bytes",
        }
    }
}

/// What may follow the field name in brackets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arg {
    None,
    /// `[N]`, optional.
    OptionalIndex,
    /// `[N]`, required.
    RequiredIndex,
    /// `[key]`, required.
    RequiredKey,
    /// `[key]`, optional.
    OptionalKey,
}

impl Arg {
    fn tag(self) -> &'static str {
        match self {
            Arg::None => "-",
            Arg::OptionalIndex => "[N]?",
            Arg::RequiredIndex => "[N]",
            Arg::RequiredKey => "[key]",
            Arg::OptionalKey => "[key]?",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FieldInfo {
    pub name: &'static str,
    pub ty: FieldType,
    pub list: bool,
    pub arg: Arg,
}

const fn f(name: &'static str, ty: FieldType, list: bool, arg: Arg) -> FieldInfo {
    FieldInfo {
        name,
        ty,
        list,
        arg,
    }
}

const fn s(name: &'static str) -> FieldInfo {
    f(name, FieldType::String, false, Arg::None)
}

const fn sl(name: &'static str, arg: Arg) -> FieldInfo {
    f(name, FieldType::String, true, arg)
}

/// Fields every source has (the generic `evt.*` fields that matter for plugin-style sources).
pub const GENERIC: &[FieldInfo] = &[
    f("evt.num", FieldType::Number, false, Arg::None),
    s("evt.time"),
    s("evt.time.s"),
    s("evt.time.iso8601"),
    s("evt.datetime"),
    s("evt.datetime.s"),
    f("evt.rawtime", FieldType::Number, false, Arg::None),
    f("evt.rawtime.s", FieldType::Number, false, Arg::None),
    f("evt.rawtime.ns", FieldType::Number, false, Arg::None),
    f("evt.reltime", FieldType::Number, false, Arg::None),
    f("evt.reltime.s", FieldType::Number, false, Arg::None),
    f("evt.reltime.ns", FieldType::Number, false, Arg::None),
    s("evt.pluginname"),
    s("evt.plugininfo"),
    s("evt.source"),
    f("evt.is_async", FieldType::Bool, false, Arg::None),
    s("evt.asynctype"),
    s("evt.hostname"),
];

/// The `json` plugin's fields and their `jevt` aliases: any JSON-payload source.
pub const JSON: &[FieldInfo] = &[
    f("json.value", FieldType::String, false, Arg::RequiredKey),
    s("json.obj"),
    s("json.rawtime"),
    f("jevt.value", FieldType::String, false, Arg::RequiredKey),
    s("jevt.obj"),
    s("jevt.rawtime"),
];

/// The sub-fields shared by `ka.req.pod.{containers,initContainers,ephemeralContainers}.*`.
pub const CONTAINER_SUBFIELDS: &[&str] = &[
    "name",
    "image",
    "image.repository",
    "command",
    "args",
    "privileged",
    "allow_privilege_escalation",
    "read_only_fs",
    "run_as_user",
    "run_as_group",
    "eff_run_as_user",
    "eff_run_as_group",
    "proc_mount",
    "add_capabilities",
    "host_port",
];

/// The k8saudit plugin's `ka.*` fields (0.18.0), except the per-container families, which
/// [`k8s_audit`] expands from [`CONTAINER_SUBFIELDS`].
pub const K8S_AUDIT: &[FieldInfo] = &[
    s("ka.auditid"),
    s("ka.stage"),
    s("ka.auth.decision"),
    s("ka.auth.reason"),
    s("ka.auth.openshift.decision"),
    s("ka.auth.openshift.username"),
    s("ka.validations.admission.policy.failure"),
    s("ka.security.pod.violations"),
    s("ka.cluster.name"),
    s("ka.user.name"),
    sl("ka.user.groups", Arg::None),
    s("ka.impuser.name"),
    s("ka.verb"),
    s("ka.uri"),
    f("ka.uri.param", FieldType::String, false, Arg::RequiredKey),
    s("ka.target.name"),
    s("ka.target.namespace"),
    s("ka.target.resource"),
    s("ka.target.subresource"),
    s("ka.target.pod.name"),
    sl("ka.req.binding.subjects", Arg::None),
    sl("ka.req.binding.subjects.user_names", Arg::None),
    sl("ka.req.binding.subjects.serviceaccount_names", Arg::None),
    sl("ka.req.binding.subjects.serviceaccount_ns_names", Arg::None),
    sl("ka.req.binding.subjects.group_names", Arg::None),
    s("ka.req.binding.role"),
    f(
        "ka.req.binding.subject.has_name",
        FieldType::String,
        false,
        Arg::RequiredKey,
    ),
    s("ka.req.configmap.name"),
    s("ka.req.configmap.obj"),
    s("ka.req.container.image"),
    s("ka.req.container.image.repository"),
    s("ka.req.container.privileged"),
    s("ka.req.container.host_network"),
    s("ka.req.pod.host_ipc"),
    s("ka.req.pod.host_network"),
    s("ka.req.pod.host_pid"),
    s("ka.req.pod.run_as_user"),
    s("ka.req.pod.run_as_group"),
    s("ka.req.pod.fs_group"),
    sl("ka.req.pod.supplemental_groups", Arg::None),
    sl("ka.req.pod.volumes.hostpath", Arg::OptionalIndex),
    f(
        "ka.req.volume.hostpath",
        FieldType::String,
        false,
        Arg::RequiredKey,
    ),
    sl("ka.req.pod.volumes.flexvolume_driver", Arg::OptionalIndex),
    sl("ka.req.pod.volumes.volume_type", Arg::OptionalIndex),
    sl("ka.req.role.rules", Arg::None),
    sl("ka.req.role.rules.apiGroups", Arg::OptionalIndex),
    sl("ka.req.role.rules.nonResourceURLs", Arg::OptionalIndex),
    sl("ka.req.role.rules.verbs", Arg::OptionalIndex),
    sl("ka.req.role.rules.resources", Arg::OptionalIndex),
    s("ka.req.service.type"),
    sl("ka.req.service.ports", Arg::OptionalIndex),
    s("ka.resp.name"),
    s("ka.response.code"),
    s("ka.response.reason"),
    s("ka.useragent"),
    sl("ka.sourceips", Arg::OptionalIndex),
];

/// The complete `k8s_audit` registry, in a stable order.
pub fn k8s_audit() -> &'static [FieldInfo] {
    static ALL: OnceLock<Vec<FieldInfo>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all: Vec<FieldInfo> = K8S_AUDIT.to_vec();
        for family in ["containers", "initContainers", "ephemeralContainers"] {
            for sub in CONTAINER_SUBFIELDS {
                if family == "ephemeralContainers" && *sub == "host_port" {
                    continue;
                }
                let name: &'static str =
                    Box::leak(format!("ka.req.pod.{family}.{sub}").into_boxed_str());
                all.push(sl(name, Arg::OptionalIndex));
            }
        }
        all.extend_from_slice(JSON);
        all.extend_from_slice(GENERIC);
        all
    })
}

/// Reads a field table: one field a line, `name type list arg` (see `syscall_fields.txt`).
fn table(text: &'static str) -> Vec<FieldInfo> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&'static str> = line.split_whitespace().collect();
            assert_eq!(cols.len(), 4, "bad field line: {line}");
            let ty = match cols[1] {
                "string" => FieldType::String,
                "number" => FieldType::Number,
                "bool" => FieldType::Bool,
                "ip" => FieldType::Ip,
                "ipnet" => FieldType::IpNet,
                "bytes" => FieldType::Bytes,
                other => panic!("bad field type {other} in: {line}"),
            };
            let arg = match cols[3] {
                "-" => Arg::None,
                "N?" => Arg::OptionalIndex,
                "N" => Arg::RequiredIndex,
                "key" => Arg::RequiredKey,
                "key?" => Arg::OptionalKey,
                other => panic!("bad field argument {other} in: {line}"),
            };
            FieldInfo {
                name: cols[0],
                ty,
                list: cols[2] == "true",
                arg,
            }
        })
        .collect()
}

/// The official plugins' field tables, kept as data (one file per plugin, regenerated by
/// `scripts/plugin-fields.py` from falcosecurity/plugins): (plugin, version, table).
pub const PLUGIN_TABLES: [(&str, &str, &str); 6] = [
    (
        "cloudtrail",
        "0.17.1",
        include_str!("fields/cloudtrail.txt"),
    ),
    ("okta", "0.12.0", include_str!("fields/okta.txt")),
    ("github", "0.10.1", include_str!("fields/github.txt")),
    ("gcpaudit", "0.8.1", include_str!("fields/gcpaudit.txt")),
    ("container", "0.7.0", include_str!("fields/container.txt")),
    ("k8smeta", "0.4.1", include_str!("fields/k8smeta.txt")),
];

/// The event source each source plugin produces, and its plugin: Falco's names.
pub const PLUGIN_SOURCES: [(&str, &str); 4] = [
    ("aws_cloudtrail", "cloudtrail"),
    ("okta", "okta"),
    ("github", "github"),
    ("gcp_auditlog", "gcpaudit"),
];

fn plugin_table(plugin: &str) -> Vec<FieldInfo> {
    PLUGIN_TABLES
        .iter()
        .find(|(name, _, _)| *name == plugin)
        .map(|(_, _, text)| table(text))
        .unwrap_or_default()
}

/// The `syscall` registry: Falco's syscall fields (at least every field the public rules use),
/// with the container and k8smeta plugins' fields (theirs win where both name a field).
pub fn syscall() -> &'static [FieldInfo] {
    static ALL: OnceLock<Vec<FieldInfo>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all = plugin_table("container");
        all.extend(plugin_table("k8smeta"));
        let own = table(include_str!("syscall_fields.txt"));
        let extra: Vec<FieldInfo> = own
            .into_iter()
            .filter(|f| !all.iter().any(|p| p.name == f.name))
            .collect();
        let mut merged = extra;
        merged.extend(all);
        merged
    })
}

/// The registry of a source plugin's source: its table, the json plugin's and the event fields.
fn plugin_source(plugin: &str) -> Vec<FieldInfo> {
    let mut all = plugin_table(plugin);
    all.extend_from_slice(JSON);
    all.extend_from_slice(GENERIC);
    all
}

/// Fields of a source that has no registry of its own: read from the JSON payload.
pub fn custom() -> &'static [FieldInfo] {
    static ALL: OnceLock<Vec<FieldInfo>> = OnceLock::new();
    ALL.get_or_init(|| JSON.iter().chain(GENERIC).copied().collect())
}

/// The registries of the official source plugins' sources, built once.
fn plugin_registries() -> &'static [(&'static str, Vec<FieldInfo>)] {
    static ALL: OnceLock<Vec<(&'static str, Vec<FieldInfo>)>> = OnceLock::new();
    ALL.get_or_init(|| {
        PLUGIN_SOURCES
            .iter()
            .map(|(source, plugin)| (*source, plugin_source(plugin)))
            .collect()
    })
}

/// The plugin that produces `source` in Falco, if an official one does.
pub fn plugin_of(source: &str) -> Option<&'static str> {
    match source {
        "k8s_audit" => Some("k8saudit"),
        "syscall" => None,
        _ => PLUGIN_SOURCES
            .iter()
            .find(|(s, _)| *s == source)
            .map(|(_, p)| *p),
    }
}

/// The registry of `source`.
pub fn registry(source: &str) -> &'static [FieldInfo] {
    match source {
        "k8s_audit" => k8s_audit(),
        "syscall" => syscall(),
        _ => plugin_registries()
            .iter()
            .find(|(s, _)| *s == source)
            .map(|(_, fields)| fields.as_slice())
            .unwrap_or_else(custom),
    }
}

/// Looks a field up in a registry.
pub fn lookup(registry: &[FieldInfo], name: &str) -> Option<FieldInfo> {
    registry.iter().find(|f| f.name == name).copied()
}

/// sha256 (hex) of every source's field list: one line per field, `source name type list arg`.
/// It changes whenever a field is added, removed or retyped.
pub fn checksum(sources: &[(&str, &[FieldInfo])]) -> String {
    let mut lines: Vec<String> = sources
        .iter()
        .flat_map(|(source, fields)| {
            fields.iter().map(move |f| {
                format!(
                    "{source} {} {} {} {}",
                    f.name,
                    f.ty.tag(),
                    f.list,
                    f.arg.tag()
                )
            })
        })
        .collect();
    lines.sort();
    let mut hasher = Sha256::new();
    for line in &lines {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k8s_registry_has_the_container_families_and_no_duplicates() {
        let all = k8s_audit();
        let mut names: Vec<_> = all.iter().map(|f| f.name).collect();
        let before = names.len();
        names.sort();
        names.dedup();
        assert_eq!(before, names.len(), "duplicate field names");
        let image = lookup(all, "ka.req.pod.initContainers.image").expect("init image");
        assert!(image.list);
        assert!(lookup(all, "ka.req.pod.ephemeralContainers.host_port").is_none());
        assert!(lookup(all, "jevt.value").is_some());
    }

    #[test]
    fn checksum_changes_with_the_field_list() {
        let a = checksum(&[("k8s_audit", k8s_audit())]);
        let b = checksum(&[("k8s_audit", &k8s_audit()[1..])]);
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(a, checksum(&[("k8s_audit", k8s_audit())]));
    }
}
