//! The `k8s_audit` source: `ka.*` fields from a Kubernetes audit event (as the k8saudit plugin
//! extracts them), and splitting an audit payload (an array, an `EventList`, one `Event`) into
//! events with their times.

use std::borrow::Cow;

use serde_json::Value;

use super::{at, ex, many, text, EventData, ExtractFn, Extracted};
use crate::engine::fields;

/// The audit event, if it is one (every `ka.*` field needs a top-level `auditID`).
fn audit<'a>(e: &EventData<'a>) -> Option<&'a Value> {
    e.json.get("auditID").map(|_| e.json)
}

fn ka_path(path: &'static [&'static str]) -> Box<ExtractFn> {
    ex(move |e| {
        audit(e)
            .and_then(|r| at(r, path))
            .map(|v| Extracted::One(text(v)))
    })
}

fn annotation(key: &'static str) -> Box<ExtractFn> {
    ex(move |e| {
        audit(e)
            .and_then(|r| r.get("annotations"))
            .and_then(|a| a.get(key))
            .map(|v| Extracted::One(text(v)))
    })
}

fn subjects_of_kind(kind: &'static str, with_ns: bool) -> Box<ExtractFn> {
    ex(move |e| {
        let subjects = audit(e)
            .and_then(|r| at(r, &["requestObject", "subjects"]))?
            .as_array()?;
        let items = subjects
            .iter()
            .filter(|s| s.get("kind").and_then(Value::as_str) == Some(kind))
            .filter_map(|s| {
                let name = s.get("name").map(text)?;
                if with_ns {
                    let ns = s.get("namespace").map(text)?;
                    Some(Cow::Owned(format!("{ns}:{name}")))
                } else {
                    Some(name)
                }
            })
            .collect();
        many(items)
    })
}

/// Elements of the array at `path` (compact JSON each); `index` picks one.
fn array_elements(path: &'static [&'static str], index: Option<usize>) -> Box<ExtractFn> {
    ex(move |e| {
        let arr = audit(e).and_then(|r| at(r, path))?.as_array()?;
        match index {
            Some(i) => arr.get(i).map(|v| Extracted::One(text(v))),
            None => many(arr.iter().map(text).collect()),
        }
    })
}

/// `requestObject.rules[].<key>[]`, flattened; `index` picks rule N.
fn role_rules(key: &'static str, index: Option<usize>) -> Box<ExtractFn> {
    ex(move |e| {
        let rules = audit(e)
            .and_then(|r| at(r, &["requestObject", "rules"]))?
            .as_array()?;
        let picked: Vec<&Value> = match index {
            Some(i) => rules.get(i).into_iter().collect(),
            None => rules.iter().collect(),
        };
        let mut items = Vec::new();
        for rule in picked {
            match rule.get(key) {
                Some(Value::Array(values)) => items.extend(values.iter().map(text)),
                Some(Value::Null) | None => {}
                Some(v) => items.push(text(v)),
            }
        }
        many(items)
    })
}

fn image_repository(image: &str) -> &str {
    let cut = image.split(':').next().unwrap_or(image);
    cut.split('@').next().unwrap_or(cut)
}

/// One container's value(s) for a `ka.req.pod.<family>.<sub>` field.
fn container_values<'a>(sub: &str, c: &'a Value, spec: &'a Value, out: &mut Vec<Cow<'a, str>>) {
    let sc = |key: &str| at(c, &["securityContext", key]).map(text);
    let pushed = match sub {
        "name" => c.get("name").map(text),
        "image" => c.get("image").map(text),
        "image.repository" => c
            .get("image")
            .and_then(Value::as_str)
            .map(|i| Cow::Borrowed(image_repository(i))),
        "command" | "args" => c.get(sub).and_then(Value::as_array).map(|parts| {
            Cow::Owned(
                parts
                    .iter()
                    .map(|p| text(p).into_owned())
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        }),
        "privileged" => sc("privileged"),
        "allow_privilege_escalation" => sc("allowPrivilegeEscalation"),
        "read_only_fs" => sc("readOnlyRootFilesystem"),
        "run_as_user" => sc("runAsUser"),
        "run_as_group" => sc("runAsGroup"),
        "proc_mount" => sc("procMount"),
        "add_capabilities" => at(c, &["securityContext", "capabilities", "add"]).map(text),
        // The plugin reads runAsUser/runAsGroup beside the container and the pod spec (not
        // securityContext), so ordinary pods get "0"; kept as the plugin does it.
        "eff_run_as_user" | "eff_run_as_group" => {
            let key = if sub == "eff_run_as_user" {
                "runAsUser"
            } else {
                "runAsGroup"
            };
            Some(
                c.get(key)
                    .or_else(|| spec.get(key))
                    .map(text)
                    .unwrap_or(Cow::Borrowed("0")),
            )
        }
        "host_port" => {
            if let Some(ports) = c.get("ports").and_then(Value::as_array) {
                for p in ports {
                    if let Some(v) = p.get("hostPort").or_else(|| p.get("containerPort")) {
                        out.push(text(v));
                    }
                }
            }
            None
        }
        _ => None,
    };
    if let Some(v) = pushed {
        out.push(v);
    }
}

fn containers(family: &'static str, sub: &'static str, index: Option<usize>) -> Box<ExtractFn> {
    ex(move |e| {
        let spec = audit(e).and_then(|r| at(r, &["requestObject", "spec"]))?;
        let list = spec.get(family)?.as_array()?;
        let picked: Vec<&Value> = match index {
            Some(i) => list.get(i).into_iter().collect(),
            None => list.iter().collect(),
        };
        let mut out = Vec::new();
        for c in picked {
            container_values(sub, c, spec, &mut out);
        }
        many(out)
    })
}

fn volumes(f: fn(&Value, &mut Vec<String>), index: Option<usize>) -> Box<ExtractFn> {
    ex(move |e| {
        let vols = audit(e)
            .and_then(|r| at(r, &["requestObject", "spec", "volumes"]))?
            .as_array()?;
        let picked: Vec<&Value> = match index {
            Some(i) => vols.get(i).into_iter().collect(),
            None => vols.iter().collect(),
        };
        let mut out = Vec::new();
        for v in picked {
            f(v, &mut out);
        }
        many(out.into_iter().map(Cow::Owned).collect())
    })
}

fn uri_param<'a>(uri: &'a str, key: &str) -> Option<Cow<'a, str>> {
    let query = uri.split_once('?')?.1;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if url_decode(k) == key {
            return Some(Cow::Owned(url_decode(v)));
        }
    }
    None
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn ka(name: &str, arg: Option<&str>) -> Result<Box<ExtractFn>, String> {
    let index = arg.and_then(|a| a.parse::<usize>().ok());
    let key = arg.map(str::to_string);
    if let Some(rest) = name.strip_prefix("ka.req.pod.") {
        for family in ["containers", "initContainers", "ephemeralContainers"] {
            if let Some(sub) = rest.strip_prefix(family).and_then(|r| r.strip_prefix('.')) {
                let sub = fields::CONTAINER_SUBFIELDS
                    .iter()
                    .find(|s| **s == sub)
                    .ok_or_else(|| format!("filter_check called with nonexistent field {name}"))?;
                return Ok(containers(family, sub, index));
            }
        }
    }
    Ok(match name {
        "ka.auditid" => ka_path(&["auditID"]),
        "ka.stage" => ka_path(&["stage"]),
        "ka.auth.decision" => annotation("authorization.k8s.io/decision"),
        "ka.auth.reason" => annotation("authorization.k8s.io/reason"),
        "ka.auth.openshift.decision" => annotation("authentication.openshift.io/decision"),
        "ka.auth.openshift.username" => annotation("authentication.openshift.io/username"),
        "ka.validations.admission.policy.failure" => {
            annotation("validation.policy.admission.k8s.io/validation_failure")
        }
        "ka.security.pod.violations" => annotation("pod-security.kubernetes.io/audit-violations"),
        "ka.cluster.name" => annotation("cluster_name"),
        "ka.user.name" => ka_path(&["user", "username"]),
        "ka.user.groups" => array_elements(&["user", "groups"], None),
        "ka.impuser.name" => ka_path(&["impersonatedUser", "username"]),
        "ka.verb" => ka_path(&["verb"]),
        "ka.uri" => ka_path(&["requestURI"]),
        "ka.uri.param" => {
            let key = key.unwrap_or_default();
            ex(move |e| {
                let uri = audit(e)?.get("requestURI")?.as_str()?;
                uri_param(uri, &key).map(Extracted::One)
            })
        }
        "ka.target.name" | "ka.req.configmap.name" => ka_path(&["objectRef", "name"]),
        "ka.target.namespace" => ka_path(&["objectRef", "namespace"]),
        "ka.target.resource" => ka_path(&["objectRef", "resource"]),
        "ka.target.subresource" => ka_path(&["objectRef", "subresource"]),
        "ka.target.pod.name" => ex(|e| {
            let r = audit(e)?;
            let is_pod = at(r, &["objectRef", "resource"]).and_then(Value::as_str) == Some("pods");
            let sub = at(r, &["objectRef", "subresource"])
                .and_then(Value::as_str)
                .unwrap_or("");
            if !is_pod || !sub.is_empty() {
                return None;
            }
            at(r, &["responseObject", "metadata", "name"]).map(|v| Extracted::One(text(v)))
        }),
        "ka.req.binding.subjects" => array_elements(&["requestObject", "subjects"], None),
        "ka.req.binding.subjects.user_names" => subjects_of_kind("User", false),
        "ka.req.binding.subjects.serviceaccount_names" => subjects_of_kind("ServiceAccount", false),
        "ka.req.binding.subjects.serviceaccount_ns_names" => {
            subjects_of_kind("ServiceAccount", true)
        }
        "ka.req.binding.subjects.group_names" => subjects_of_kind("Group", false),
        "ka.req.binding.role" => ka_path(&["requestObject", "roleRef", "name"]),
        "ka.req.binding.subject.has_name" => {
            ex(|e| audit(e).map(|_| Extracted::One(Cow::Borrowed("true"))))
        }
        "ka.req.configmap.obj" => ka_path(&["requestObject", "data"]),
        "ka.req.container.image" => containers("containers", "image", Some(0)),
        "ka.req.container.image.repository" => {
            containers("containers", "image.repository", Some(0))
        }
        "ka.req.container.privileged" => ex(|e| {
            let list = audit(e)
                .and_then(|r| at(r, &["requestObject", "spec", "containers"]))?
                .as_array()?;
            let any = list
                .iter()
                .any(|c| at(c, &["securityContext", "privileged"]) == Some(&Value::Bool(true)));
            Some(Extracted::One(Cow::Borrowed(if any {
                "true"
            } else {
                "false"
            })))
        }),
        "ka.req.container.host_network" | "ka.req.pod.host_network" => {
            ka_path(&["requestObject", "spec", "hostNetwork"])
        }
        "ka.req.pod.host_ipc" => ka_path(&["requestObject", "spec", "hostIPC"]),
        "ka.req.pod.host_pid" => ka_path(&["requestObject", "spec", "hostPID"]),
        "ka.req.pod.run_as_user" => {
            ka_path(&["requestObject", "spec", "securityContext", "runAsUser"])
        }
        "ka.req.pod.run_as_group" => {
            ka_path(&["requestObject", "spec", "securityContext", "runAsGroup"])
        }
        "ka.req.pod.fs_group" => ka_path(&["requestObject", "spec", "securityContext", "fsGroup"]),
        "ka.req.pod.supplemental_groups" => array_elements(
            &[
                "requestObject",
                "spec",
                "securityContext",
                "supplementalGroups",
            ],
            None,
        ),
        "ka.req.pod.volumes.hostpath" => volumes(
            |v, out| {
                if let Some(p) = at(v, &["hostPath", "path"]) {
                    out.push(text(p).into_owned());
                }
            },
            index,
        ),
        "ka.req.volume.hostpath" => {
            let key = key.unwrap_or_default();
            ex(move |e| {
                let r = audit(e)?;
                let vols = at(r, &["requestObject", "spec", "volumes"]).and_then(Value::as_array);
                let prefix = key.strip_suffix('*');
                let hit = vols
                    .into_iter()
                    .flatten()
                    .filter_map(|v| at(v, &["hostPath", "path"])?.as_str())
                    .any(|p| p == key || prefix.is_some_and(|pre| p.starts_with(pre)));
                Some(Extracted::One(Cow::Borrowed(if hit {
                    "true"
                } else {
                    "false"
                })))
            })
        }
        "ka.req.pod.volumes.flexvolume_driver" => volumes(
            |v, out| {
                if let Some(d) = at(v, &["flexVolume", "driver"]) {
                    out.push(text(d).into_owned());
                }
            },
            index,
        ),
        "ka.req.pod.volumes.volume_type" => volumes(
            |v, out| {
                if let Some(map) = v.as_object() {
                    out.extend(map.keys().filter(|k| *k != "name").cloned());
                }
            },
            index,
        ),
        "ka.req.role.rules" => array_elements(&["requestObject", "rules"], None),
        "ka.req.role.rules.apiGroups" => role_rules("apiGroups", index),
        "ka.req.role.rules.nonResourceURLs" => role_rules("nonResourceURLs", index),
        "ka.req.role.rules.verbs" => role_rules("verbs", index),
        "ka.req.role.rules.resources" => role_rules("resources", index),
        "ka.sourceips" => role_rules("sourceIPs", index),
        "ka.req.service.type" => ka_path(&["requestObject", "spec", "type"]),
        "ka.req.service.ports" => ex(|e| {
            let ports = audit(e).and_then(|r| at(r, &["requestObject", "spec", "ports"]))?;
            Some(Extracted::Many(vec![text(ports)]))
        }),
        "ka.resp.name" => ka_path(&["responseObject", "metadata", "name"]),
        "ka.response.code" => ka_path(&["responseStatus", "code"]),
        "ka.response.reason" => ka_path(&["responseStatus", "reason"]),
        "ka.useragent" => ka_path(&["userAgent"]),
        other => {
            return Err(format!(
                "filter_check called with nonexistent field {other}"
            ))
        }
    })
}

/// Splits a k8s audit payload into events: an array (recursively), an `EventList`'s items, or
/// one `Event`.
pub fn split_audit_payload(v: Value) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    split_into(v, &mut out)?;
    Ok(out)
}

fn split_into(v: Value, out: &mut Vec<Value>) -> Result<(), String> {
    match v {
        Value::Array(items) => {
            for item in items {
                split_into(item, out)?;
            }
            Ok(())
        }
        Value::Object(mut map) => match map.get("kind").and_then(Value::as_str) {
            Some("EventList") => match map.remove("items") {
                Some(Value::Array(items)) => {
                    for item in items {
                        split_into(item, out)?;
                    }
                    Ok(())
                }
                _ => {
                    Err("data not recognized as a k8s audit event: EventList without items".into())
                }
            },
            Some("Event") => {
                out.push(Value::Object(map));
                Ok(())
            }
            _ => Err("data not recognized as a k8s audit event".into()),
        },
        _ => Err("data not recognized as a k8s audit event".into()),
    }
}

/// An audit event's time: its `stageTimestamp` (RFC 3339), in ns.
pub fn audit_time(v: &Value) -> Option<i64> {
    let ts = v.get("stageTimestamp")?.as_str()?;
    chrono::DateTime::parse_from_rfc3339(ts)
        .ok()?
        .timestamp_nanos_opt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parameters_and_repositories() {
        assert_eq!(
            uri_param("/api/x?command=ls+-la&b=%2Fetc", "command").unwrap(),
            "ls -la"
        );
        assert_eq!(
            uri_param("/api/x?command=ls&b=%2Fetc", "b").unwrap(),
            "/etc"
        );
        assert!(uri_param("/api/x", "b").is_none());
        assert_eq!(image_repository("registry:5000/app:1"), "registry");
        assert_eq!(image_repository("nginx@sha256:abc"), "nginx");
        assert_eq!(
            super::super::pointer_segments("/a~1b/0"),
            vec!["a/b".to_string(), "0".to_string()]
        );
    }
}
