//! The `okta`, `github` and `gcp_auditlog` sources: each plugin's fields from one event, as its
//! Go extractor reads them (okta v0.12.0 `pkg/okta/okta.go`, github v0.10.1
//! `pkg/github/extract.go`, gcpaudit v0.8.1 `pkg/gcpaudit/extract.go`).
//!
//! The plugins differ in what "absent" means. okta decodes into a Go struct, so every string
//! field is present and `""` when the key is missing (numbers `0`). github reads with fastjson and
//! sets every field, `""` when missing. gcpaudit extracts nothing for a missing key and `""` for a
//! present value that is not a string (objects such as `gcp.request` included).

use std::borrow::Cow;

use serde_json::Value;

use super::{at, ex, go_str, one, EventData, ExtractFn};

/// The extractor of `name` for one of the Go plugins' sources.
pub fn extractor(source: &str, name: &str, arg: Option<&str>) -> Option<Box<ExtractFn>> {
    match source {
        "okta" => okta(name, arg),
        "github" => github(name),
        "gcp_auditlog" => gcpaudit(name),
        _ => None,
    }
}

const OKTA_PATHS: &[(&str, &[&str])] = &[
    (
        "okta.behaviors",
        &["debugContext", "debugData", "behaviors"],
    ),
    ("okta.evt.type", &["eventType"]),
    ("okta.evt.legacytype", &["legacyEventType"]),
    ("okta.severity", &["severity"]),
    ("okta.message", &["displayMessage"]),
    ("okta.published", &["published"]),
    (
        "okta.logonlysecuritydata",
        &["debugContext", "debugData", "logOnlySecurityData"],
    ),
    ("okta.actor.id", &["actor", "id"]),
    ("okta.actor.Type", &["actor", "type"]),
    ("okta.actor.alternateid", &["actor", "alternateId"]),
    ("okta.actor.name", &["actor", "displayName"]),
    ("okta.client.zone", &["client", "zone"]),
    ("okta.client.ip", &["client", "ipAddress"]),
    ("okta.client.device", &["client", "device"]),
    ("okta.client.id", &["client", "id"]),
    (
        "okta.client.geo.city",
        &["client", "geographicalContext", "city"],
    ),
    (
        "okta.client.geo.state",
        &["client", "geographicalContext", "state"],
    ),
    (
        "okta.client.geo.country",
        &["client", "geographicalContext", "country"],
    ),
    (
        "okta.client.geo.postalcode",
        &["client", "geographicalContext", "postalCode"],
    ),
    ("okta.useragent.os", &["client", "userAgent", "os"]),
    (
        "okta.useragent.browser",
        &["client", "userAgent", "browser"],
    ),
    (
        "okta.useragent.raw",
        &["client", "userAgent", "rawUserAgent"],
    ),
    ("okta.result", &["outcome", "result"]),
    ("okta.reason", &["outcome", "reason"]),
    ("okta.transaction.id", &["transaction", "id"]),
    ("okta.transaction.type", &["transaction", "type"]),
    (
        "okta.requesturi",
        &["debugContext", "debugData", "requestUri"],
    ),
    (
        "okta.principal.id",
        &["debugContext", "debugData", "originalPrincipal", "id"],
    ),
    (
        "okta.principal.alternateid",
        &[
            "debugContext",
            "debugData",
            "originalPrincipal",
            "alternateId",
        ],
    ),
    (
        "okta.principal.type",
        &["debugContext", "debugData", "originalPrincipal", "type"],
    ),
    (
        "okta.principal.name",
        &[
            "debugContext",
            "debugData",
            "originalPrincipal",
            "displayName",
        ],
    ),
    (
        "okta.authentication.sessionid",
        &["authenticationContext", "externalSessionId"],
    ),
    (
        "okta.authentication.provider",
        &["authenticationContext", "authenticationProvider"],
    ),
    (
        "okta.authentication.credentialprovider",
        &["authenticationContext", "credentialProvider"],
    ),
    ("okta.security.asorg", &["securityContext", "asOrg"]),
    ("okta.security.isp", &["securityContext", "isp"]),
    ("okta.security.domain", &["securityContext", "domain"]),
    ("okta.security.isproxy", &["securityContext", "isProxy"]),
];

/// Go struct fields that are numbers: `0` when missing.
const OKTA_NUMBERS: &[(&str, &[&str])] = &[
    (
        "okta.authentication.step",
        &["authenticationContext", "authenticationStep"],
    ),
    ("okta.security.asnumber", &["securityContext", "asNumber"]),
    (
        "okta.client.geo.lat",
        &["client", "geographicalContext", "geolocation", "lat"],
    ),
    // The plugin's struct tag reads `lonDe`, so the longitude is 0 unless that key is sent.
    (
        "okta.client.geo.lon",
        &["client", "geographicalContext", "geolocation", "lonDe"],
    ),
];

/// The `Type` of the target each `okta.target.*` field reads (the last such target wins).
const OKTA_TARGETS: &[(&str, &str, &str)] = &[
    ("okta.target.user.id", "User", "id"),
    ("okta.target.user.alternateid", "User", "alternateId"),
    ("okta.target.user.name", "User", "displayName"),
    ("okta.target.group.id", "UserGroup", "id"),
    ("okta.target.group.alternateid", "UserGroup", "alternateId"),
    ("okta.target.group.name", "UserGroup", "displayName"),
    ("okta.target.app.alternateid", "AppInstance", "alternateId"),
];

fn targets<'a>(e: &EventData<'a>) -> &'a [Value] {
    e.json
        .get("target")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn okta(name: &str, arg: Option<&str>) -> Option<Box<ExtractFn>> {
    if let Some((_, path)) = OKTA_PATHS.iter().find(|(n, _)| *n == name) {
        return Some(ex(move |e| one(go_str(at(e.json, path)))));
    }
    if let Some((_, path)) = OKTA_NUMBERS.iter().find(|(n, _)| *n == name) {
        return Some(ex(move |e| {
            let n = at(e.json, path).and_then(Value::as_f64).unwrap_or(0.0);
            one(Cow::Owned(n.to_string()))
        }));
    }
    if let Some((_, kind, key)) = OKTA_TARGETS.iter().find(|(n, _, _)| *n == name) {
        return Some(ex(move |e| {
            let hit = targets(e)
                .iter()
                .rev()
                .find(|t| t.get("type").and_then(Value::as_str) == Some(kind))?;
            one(go_str(hit.get(*key)))
        }));
    }
    Some(match name {
        "okta.app" => ex(|e| {
            let uri = at(e.json, &["debugContext", "debugData", "requestUri"])?.as_str()?;
            let rest = uri.strip_prefix("/app/")?;
            one(Cow::Borrowed(rest.split('/').next().unwrap_or("")))
        }),
        // The organization is the plugin's configuration, not part of the event.
        "okta.org" => ex(|_| one(Cow::Borrowed(""))),
        "okta.targets.displayName" => {
            let index = arg.and_then(|a| a.parse::<usize>().ok());
            ex(move |e| {
                let all = targets(e);
                if all.is_empty() {
                    return None;
                }
                match index {
                    Some(i) => one(go_str(all.get(i)?.get("displayName"))),
                    None => {
                        let names: Vec<Cow<'_, str>> =
                            all.iter().map(|t| go_str(t.get("displayName"))).collect();
                        one(Cow::Owned(format!("({})", names.join(","))))
                    }
                }
            })
        }
        // Counting MFA failures over time needs the plugin's per-actor cache across events.
        "okta.mfa.failure.countlast" | "okta.mfa.deny.countlast" => ex(|_| None),
        _ => return None,
    })
}

const GITHUB_PATHS: &[(&str, &[&str])] = &[
    ("github.type", &["webhook_type"]),
    ("github.action", &["action"]),
    ("github.user", &["sender", "login"]),
    ("github.repo", &["repository", "html_url"]),
    ("github.repo.url", &["repository", "html_url"]),
    ("github.repo.description", &["repository", "description"]),
    ("github.org", &["organization", "login"]),
    ("github.owner", &["repository", "owner", "login"]),
    ("github.collaborator.name", &["member", "login"]),
    ("github.collaborator.role", &["changes", "permission", "to"]),
    ("github.webhook.type", &["hook", "type"]),
    ("github.workflow.filename", &["workflow", "path"]),
];

fn array<'a>(v: &'a Value, path: &[&str]) -> Option<&'a [Value]> {
    at(v, path).and_then(Value::as_array).map(Vec::as_slice)
}

/// Items joined by commas within each group, groups simply concatenated (the plugin trims the
/// trailing comma per group, so two groups `a,b` and `c` read `a,bc`).
fn grouped(groups: impl Iterator<Item = Vec<String>>) -> String {
    let mut out = String::new();
    for group in groups {
        for item in group {
            out.push_str(&item);
            out.push(',');
        }
        if out.ends_with(',') {
            out.pop();
        }
    }
    out
}

fn github(name: &str) -> Option<Box<ExtractFn>> {
    if let Some((_, path)) = GITHUB_PATHS.iter().find(|(n, _)| *n == name) {
        return Some(ex(move |e| one(go_str(at(e.json, path)))));
    }
    Some(match name {
        "github.repo.name" => ex(|e| {
            let url = go_str(at(e.json, &["repository", "html_url"]));
            let name = url.strip_prefix("https://github.com/").unwrap_or(&url);
            one(Cow::Owned(name.to_string()))
        }),
        "github.repo.public" => ex(|e| {
            let private = at(e.json, &["repository", "private"]) == Some(&Value::Bool(true));
            one(Cow::Borrowed(if private { "false" } else { "true" }))
        }),
        "github.webhook.id" => ex(|e| {
            let id = at(e.json, &["hook", "id"])
                .and_then(Value::as_u64)
                .unwrap_or(0);
            one(Cow::Owned(id.to_string()))
        }),
        "github.commit.added" => commit_files("added"),
        "github.commit.modified" => commit_files("modified"),
        "github.commit.removed" => commit_files("removed"),
        _ => return github_scanning(name),
    })
}

/// The fields of what the plugin's scanners add to an event: committed secrets, miners.
fn github_scanning(name: &str) -> Option<Box<ExtractFn>> {
    Some(match name {
        "github.diff.has_secrets" => ex(|e| {
            let Some(files) = array(e.json, &["files"]) else {
                return one(Cow::Borrowed(""));
            };
            let any = files
                .iter()
                .any(|f| array(f, &["matches"]).is_some_and(|m| !m.is_empty()));
            one(Cow::Borrowed(if any { "true" } else { "false" }))
        }),
        "github.diff.committed_secrets.desc" => {
            secret_matches(|_, _, m| go_str(m.get("desc")).into_owned())
        }
        "github.diff.committed_secrets.files" => {
            secret_matches(|_, file, _| go_str(file.get("name")).into_owned())
        }
        "github.diff.committed_secrets.lines" => secret_matches(|_, _, m| {
            m.get("line")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .to_string()
        }),
        "github.diff.committed_secrets.links" => secret_matches(|json, file, m| {
            format!(
                "{}/blob/{}/{}/#L{}",
                go_str(at(json, &["repository", "html_url"])),
                go_str(at(json, &["head_commit", "id"])),
                go_str(file.get("name")),
                m.get("line").and_then(Value::as_u64).unwrap_or(0)
            )
        }),
        "github.workflow.has_miners" => ex(|e| {
            let matches = array(e.json, &["workflow_miner_detections", "matches"])?;
            one(Cow::Borrowed(if matches.is_empty() {
                "false"
            } else {
                "true"
            }))
        }),
        "github.workflow.miners.type" => ex(|e| {
            let matches = array(e.json, &["workflow_miner_detections", "matches"])?;
            let mut kinds: Vec<Cow<'_, str>> = Vec::new();
            for m in matches {
                let kind = go_str(m.get("type"));
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
            one(Cow::Owned(kinds.join(",")))
        }),
        _ => return None,
    })
}

fn commit_files(key: &'static str) -> Box<ExtractFn> {
    ex(move |e| {
        let commits = array(e.json, &["commits"]).unwrap_or(&[]);
        let groups = commits.iter().map(|c| {
            array(c, &[key])
                .unwrap_or(&[])
                .iter()
                .map(|f| go_str(Some(f)).into_owned())
                .collect()
        });
        one(Cow::Owned(grouped(groups)))
    })
}

type MatchText = fn(&Value, &Value, &Value) -> String;

/// The secret-scanning matches the plugin adds to push events (`files[].matches[]`); absent when
/// there is no `files` array.
fn secret_matches(text: MatchText) -> Box<ExtractFn> {
    ex(move |e| {
        let files = array(e.json, &["files"])?;
        let groups = files.iter().map(|f| {
            array(f, &["matches"])
                .unwrap_or(&[])
                .iter()
                .map(|m| text(e.json, f, m))
                .collect()
        });
        one(Cow::Owned(grouped(groups)))
    })
}

/// `evt.plugininfo` of a github event: the plugin's `String()`.
pub fn github_info(json: &Value) -> String {
    let mut line = format!("github {}", go_str(json.get("webhook_type")));
    let parts: [(&str, &[&str]); 3] = [
        (" user:", &["sender", "login"]),
        (" repo:", &["repository", "html_url"]),
        (" action:", &["action"]),
    ];
    for (label, path) in parts {
        if let Some(v) = at(json, path).and_then(Value::as_str) {
            line.push_str(label);
            line.push_str(v);
        }
    }
    line
}

const GCP_PATHS: &[(&str, &[&str])] = &[
    (
        "gcp.user",
        &["protoPayload", "authenticationInfo", "principalEmail"],
    ),
    (
        "gcp.callerIP",
        &["protoPayload", "requestMetadata", "callerIp"],
    ),
    (
        "gcp.userAgent",
        &["protoPayload", "requestMetadata", "callerSuppliedUserAgent"],
    ),
    (
        "gcp.authorizationInfo",
        &["protoPayload", "authorizationInfo"],
    ),
    ("gcp.serviceName", &["protoPayload", "serviceName"]),
    ("gcp.request", &["protoPayload", "request"]),
    ("gcp.methodName", &["protoPayload", "methodName"]),
    (
        "gcp.cloudfunctions.function",
        &["resource", "labels", "function_name"],
    ),
    (
        "gcp.cloudsql.databaseId",
        &["resource", "labels", "database_id"],
    ),
    (
        "gcp.compute.instanceId",
        &["resource", "labels", "instance_id"],
    ),
    (
        "gcp.compute.networkId",
        &["resource", "labels", "network_id"],
    ),
    (
        "gcp.compute.subnetwork",
        &["resource", "labels", "subnetwork_name"],
    ),
    (
        "gcp.compute.subnetworkId",
        &["resource", "labels", "subnetwork_id"],
    ),
    ("gcp.dns.zone", &["resource", "labels", "zone_name"]),
    (
        "gcp.iam.serviceAccount",
        &["resource", "labels", "email_id"],
    ),
    (
        "gcp.iam.serviceAccountId",
        &["resource", "labels", "unique_id"],
    ),
    ("gcp.projectId", &["resource", "labels", "project_id"]),
    ("gcp.resourceName", &["protoPayload", "resourceName"]),
    ("gcp.resourceType", &["resource", "type"]),
    ("gcp.storage.bucket", &["resource", "labels", "bucket_name"]),
    ("gcp.time", &["timestamp"]),
];

fn resource_type<'a>(e: &EventData<'a>) -> Cow<'a, str> {
    go_str(at(e.json, &["resource", "type"]))
}

fn gcpaudit(name: &str) -> Option<Box<ExtractFn>> {
    if let Some((_, path)) = GCP_PATHS.iter().find(|(n, _)| *n == name) {
        return Some(ex(move |e| one(go_str(Some(at(e.json, path)?)))));
    }
    Some(match name {
        "gcp.policyDelta" => ex(|e| {
            let path: &[&str] = if resource_type(e) == "gcs_bucket" {
                &[
                    "protoPayload",
                    "serviceData",
                    "policyDelta",
                    "bindingDeltas",
                ]
            } else {
                &["protoPayload", "metadata", "datasetChange", "bindingDeltas"]
            };
            one(go_str(Some(at(e.json, path)?)))
        }),
        "gcp.location" => ex(|e| {
            let labels = at(e.json, &["resource", "labels"]);
            if let Some(v) = labels.and_then(|l| l.get("location").or_else(|| l.get("region"))) {
                return one(go_str(Some(v)));
            }
            let zone = labels.and_then(|l| l.get("zone")).and_then(Value::as_str)?;
            match zone.len() {
                0 => None,
                // `us-central1-a` → `us-central1`
                n if n > 2 => one(Cow::Owned(zone.get(..n - 2).unwrap_or(zone).to_string())),
                _ => one(Cow::Borrowed(zone)),
            }
        }),
        "gcp.logging.sink" => ex(|e| {
            if resource_type(e) != "logging_sink" {
                return None;
            }
            one(go_str(Some(at(e.json, &["resource", "labels", "name"])?)))
        }),
        "gcp.resourceLabels" => ex(|e| {
            let labels = at(e.json, &["resource", "labels"])?;
            one(Cow::Owned(labels.to_string()))
        }),
        _ => return None,
    })
}
