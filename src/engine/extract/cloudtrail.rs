//! The `aws_cloudtrail` source: the cloudtrail plugin's fields (v0.17.1, `pkg/cloudtrail/extract.go`)
//! from one CloudTrail record, with the plugin's edge cases: a present key whose value is not a
//! string reads as `""` (fastjson's `GetStringBytes`), an absent key extracts nothing, `ct.user`
//! depends on the identity type, booleans read `true`/`false` only from JSON booleans, and
//! `ct.request.documentname` never extracts (the plugin's switch spells it `documentName`).

use std::borrow::Cow;

use serde_json::Value;

use super::{at, ex, go_str as go_str_of, many, one, EventData, ExtractFn, Extracted};

/// A present value as the plugin reads it (`""` when not a string).
fn go_str(v: &Value) -> Cow<'_, str> {
    go_str_of(Some(v))
}

/// Fields that read one key path as a string.
const PATHS: &[(&str, &[&str])] = &[
    ("ct.id", &["eventID"]),
    ("ct.error", &["errorCode"]),
    ("ct.errormessage", &["errorMessage"]),
    ("ct.time", &["eventTime"]),
    ("ct.src", &["eventSource"]),
    ("ct.name", &["eventName"]),
    ("ct.user.identitytype", &["userIdentity", "type"]),
    ("ct.user.principalid", &["userIdentity", "principalId"]),
    ("ct.user.arn", &["userIdentity", "arn"]),
    ("ct.region", &["awsRegion"]),
    ("ct.response.subnetid", &["responseElements", "subnetId"]),
    (
        "ct.response.reservationid",
        &["responseElements", "reservationId"],
    ),
    (
        "ct.request.availabilityzone",
        &["requestParameters", "availabilityZone"],
    ),
    ("ct.request.cluster", &["requestParameters", "cluster"]),
    (
        "ct.request.functionname",
        &["requestParameters", "functionName"],
    ),
    ("ct.request.groupname", &["requestParameters", "groupName"]),
    ("ct.request.host", &["requestParameters", "Host"]),
    ("ct.request.name", &["requestParameters", "name"]),
    ("ct.request.policy", &["requestParameters", "policy"]),
    ("ct.request.reason", &["requestParameters", "reason"]),
    ("ct.request.target", &["requestParameters", "target"]),
    (
        "ct.request.serialnumber",
        &["requestParameters", "serialNumber"],
    ),
    (
        "ct.request.servicename",
        &["requestParameters", "serviceName"],
    ),
    ("ct.request.subnetid", &["requestParameters", "subnetId"]),
    (
        "ct.request.taskdefinition",
        &["requestParameters", "taskDefinition"],
    ),
    ("ct.request.username", &["requestParameters", "userName"]),
    ("ct.srcip", &["sourceIPAddress"]),
    ("ct.useragent", &["userAgent"]),
    ("ct.requestid", &["requestID"]),
    ("ct.eventtype", &["eventType"]),
    ("ct.apiversion", &["apiVersion"]),
    ("ct.recipientaccountid", &["recipientAccountId"]),
    ("ct.serviceeventdetails", &["serviceEventDetails"]),
    ("ct.sharedeventid", &["sharedEventID"]),
    ("ct.vpcendpointid", &["vpcEndpointId"]),
    ("ct.eventcategory", &["eventCategory"]),
    ("ct.addendum.reason", &["addendum", "reason"]),
    ("ct.addendum.updatedfields", &["addendum", "updatedFields"]),
    (
        "ct.addendum.originalrequestid",
        &["addendum", "originalRequestID"],
    ),
    (
        "ct.addendum.originaleventid",
        &["addendum", "originalEventID"],
    ),
    ("ct.edgedevicedetails", &["edgeDeviceDetails"]),
    ("ct.tlsdetails.tlsversion", &["tlsDetails", "tlsVersion"]),
    ("ct.tlsdetails.ciphersuite", &["tlsDetails", "cipherSuite"]),
    (
        "ct.tlsdetails.clientprovidedhostheader",
        &["tlsDetails", "clientProvidedHostHeader"],
    ),
    ("s3.bucket", &["requestParameters", "bucketName"]),
    ("s3.key", &["requestParameters", "key"]),
    ("ecr.repository", &["requestParameters", "repositoryName"]),
    ("ecr.imagetag", &["requestParameters", "imageTag"]),
    ("iam.role", &["requestParameters", "roleName"]),
    ("iam.policy", &["requestParameters", "policyName"]),
];

/// Fields that print a whole JSON value.
const RAW: &[(&str, &str)] = &[
    ("ct.response", "responseElements"),
    ("ct.request", "requestParameters"),
    ("ct.additionaleventdata", "additionalEventData"),
];

/// Fields that read a JSON boolean as `true`/`false` (anything else present is `false`).
const BOOLS: &[(&str, &str)] = &[
    ("ct.managementevent", "managementEvent"),
    ("ct.readonly", "readOnly"),
    (
        "ct.sessioncredentialfromconsole",
        "sessionCredentialFromConsole",
    ),
];

/// The extractor of a cloudtrail field, `None` when the plugin never extracts it.
pub fn extractor(name: &str, arg: Option<&str>) -> Option<Box<ExtractFn>> {
    if let Some((_, path)) = PATHS.iter().find(|(n, _)| *n == name) {
        return Some(ex(move |e| one(go_str(at(e.json, path)?))));
    }
    if let Some((_, key)) = RAW.iter().find(|(n, _)| *n == name) {
        return Some(ex(move |e| one(Cow::Owned(e.json.get(*key)?.to_string()))));
    }
    if let Some((_, key)) = BOOLS.iter().find(|(n, _)| *n == name) {
        return Some(ex(move |e| {
            let v = e.json.get(*key)?;
            one(Cow::Borrowed(if v == &Value::Bool(true) {
                "true"
            } else {
                "false"
            }))
        }));
    }
    Some(match name {
        "ct.shortsrc" => ex(|e| {
            let src = go_str(e.json.get("eventSource")?);
            let short = match &src {
                Cow::Borrowed(s) if s.len() > TRAILER.len() => s.strip_suffix(TRAILER),
                _ => None,
            };
            one(short.map(Cow::Borrowed).unwrap_or(src))
        }),
        "ct.user" => ex(|e| user(e.json).map(Extracted::One)),
        "ct.originaluser" => ex(|e| original_user(e.json).map(Extracted::One)),
        "ct.user.accountid" => ex(|e| {
            let v = at(e.json, &["userIdentity", "accountId"])
                .or_else(|| e.json.get("recipientAccountId"))?;
            one(go_str(v))
        }),
        "ct.info" => ex(|e| one(Cow::Owned(info(e.json)))),
        "ct.resources" => ex(|e| {
            let items = e.json.get("resources")?.as_array()?;
            let text = items
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(",");
            (!text.is_empty()).then_some(Extracted::One(Cow::Owned(text)))
        }),
        _ => return resource_extractor(name, arg),
    })
}

/// The `s3.*`, `ec2.*` fields: the resources a record acts on.
fn resource_extractor(name: &str, arg: Option<&str>) -> Option<Box<ExtractFn>> {
    Some(match name {
        "s3.uri" => ex(|e| {
            let bucket = at(e.json, &["requestParameters", "bucketName"])?.as_str()?;
            let key = at(e.json, &["requestParameters", "key"])?.as_str()?;
            one(Cow::Owned(format!("s3://{bucket}/{key}")))
        }),
        "ec2.name" => ex(|e| ec2_name(e.json).map(|n| Extracted::One(Cow::Borrowed(n)))),
        "ec2.imageid" => ex(|e| {
            image_ids(e.json, Some(0))
                .and_then(|mut v| v.pop())
                .map(Extracted::One)
        }),
        "ec2.imageids" => {
            let index = arg.and_then(|a| a.parse::<usize>().ok());
            ex(move |e| {
                let ids = image_ids(e.json, index)?;
                match index {
                    Some(_) => ids.into_iter().next().map(Extracted::One),
                    None => many(ids),
                }
            })
        }
        "s3.bytes" => ex(|e| {
            let input = bytes(e.json, "bytesTransferredIn");
            let output = bytes(e.json, "bytesTransferredOut");
            (input.is_some() || output.is_some()).then(|| {
                let total = input.unwrap_or(0).wrapping_add(output.unwrap_or(0));
                Extracted::One(Cow::Owned(total.to_string()))
            })
        }),
        "s3.bytes.in" => ex(|e| num(bytes(e.json, "bytesTransferredIn")?)),
        "s3.bytes.out" => ex(|e| num(bytes(e.json, "bytesTransferredOut")?)),
        "s3.cnt.get" => ex(|e| (event_name(e) == "GetObject").then(|| one_num(1))),
        "s3.cnt.put" => ex(|e| (event_name(e) == "PutObject").then(|| one_num(1))),
        "s3.cnt.other" => {
            ex(|e| (!matches!(event_name(e), "GetObject" | "PutObject")).then(|| one_num(1)))
        }
        _ => return None,
    })
}

const TRAILER: &str = ".amazonaws.com";

fn event_name<'a>(e: &EventData<'a>) -> &'a str {
    e.json
        .get("eventName")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn num(n: u64) -> Option<Extracted<'static>> {
    Some(one_num(n))
}

fn one_num(n: u64) -> Extracted<'static> {
    Extracted::One(Cow::Owned(n.to_string()))
}

/// `additionalEventData.<key>` as the plugin reads it: an integer, a float truncated, else 0.
fn bytes(json: &Value, key: &str) -> Option<u64> {
    let v = at(json, &["additionalEventData", key])?;
    Some(
        v.as_u64()
            .or_else(|| v.as_f64().map(|f| f as u64))
            .unwrap_or(0),
    )
}

/// `ct.user`: by identity type; absent when there is no type or no name for it.
fn user(json: &Value) -> Option<Cow<'_, str>> {
    match user_lookup(json) {
        (true, name) => Some(name),
        (false, _) => None,
    }
}

/// The plugin's `getUser`: (present, text), where an absent user still has a text that its
/// `String()` prints (`<NA>`, `<unknown user type>`).
fn user_lookup(json: &Value) -> (bool, Cow<'_, str>) {
    let Some(kind) = at(json, &["userIdentity", "type"]).and_then(Value::as_str) else {
        return (false, Cow::Borrowed(""));
    };
    let name = match kind {
        "Root" | "IAMUser" => at(json, &["userIdentity", "userName"]),
        "AWSService" => at(json, &["userIdentity", "invokedBy"]),
        "AssumedRole" => {
            let issuer = at(
                json,
                &[
                    "userIdentity",
                    "sessionContext",
                    "sessionIssuer",
                    "userName",
                ],
            );
            return (
                true,
                issuer.map(go_str).unwrap_or(Cow::Borrowed("AssumedRole")),
            );
        }
        "AWSAccount" => return (true, Cow::Borrowed("AWSAccount")),
        "FederatedUser" => return (true, Cow::Borrowed("FederatedUser")),
        _ => return (false, Cow::Borrowed("<unknown user type>")),
    };
    match name {
        Some(v) => (true, go_str(v)),
        None => (false, Cow::Borrowed("<NA>")),
    }
}

/// `ct.originaluser`: the session name of an assumed role (from the ARN's third part or the
/// principal ID's second), else `userIdentity.userName`.
fn original_user(json: &Value) -> Option<Cow<'_, str>> {
    let kind = at(json, &["userIdentity", "type"]).and_then(Value::as_str);
    if kind != Some("AssumedRole") {
        return at(json, &["userIdentity", "userName"]).map(go_str);
    }
    if let Some(arn) = at(json, &["userIdentity", "arn"]) {
        let text = go_str(arn);
        let split: Vec<&str> = text.split('/').collect();
        if split.len() == 3 {
            return Some(Cow::Owned(split[2].to_string()));
        }
    }
    if let Some(principal) = at(json, &["userIdentity", "principalId"]) {
        let text = go_str(principal);
        let split: Vec<&str> = text.split(':').collect();
        if split.len() == 2 {
            return Some(Cow::Owned(split[1].to_string()));
        }
    }
    None
}

fn ec2_name(json: &Value) -> Option<&str> {
    let items = at(json, &["requestParameters", "tagSpecificationSet", "items"])?.as_array()?;
    let mut name = "";
    for item in items {
        if item.get("resourceType").and_then(Value::as_str) != Some("instance") {
            continue;
        }
        for tag in item
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if tag.get("key").and_then(Value::as_str) == Some("Name") {
                name = tag.get("value").and_then(Value::as_str).unwrap_or("");
                break;
            }
        }
    }
    (!name.is_empty()).then_some(name)
}

/// The image IDs of the instances involved (all, or the one at `index`).
fn image_ids(json: &Value, index: Option<usize>) -> Option<Vec<Cow<'_, str>>> {
    if let Some(set) = at(json, &["responseElements", "instancesSet", "items"]) {
        let items = set.as_array().map(Vec::as_slice).unwrap_or(&[]);
        return match index {
            None => {
                let ids: Vec<Cow<'_, str>> = items
                    .iter()
                    .filter_map(|i| i.get("imageId").and_then(Value::as_str))
                    .filter(|id| !id.is_empty())
                    .map(Cow::Borrowed)
                    .collect();
                (!ids.is_empty()).then_some(ids)
            }
            Some(i) => items
                .get(i)
                .and_then(|item| item.get("imageId"))
                .map(|v| vec![go_str(v)]),
        };
    }
    if index.is_some_and(|i| i != 0) {
        return None;
    }
    let paths: [&[&str]; 3] = [
        &["requestParameters", "imageId"],
        &[
            "requestParameters",
            "DescribeFastLaunchImagesRequest",
            "ImageId",
            "content",
        ],
        &["requestParameters", "launchSpecification", "imageId"],
    ];
    paths
        .iter()
        .find_map(|p| at(json, p))
        .map(|v| vec![go_str(v)])
}

/// `ct.info`: who, from where, read or write, what, and the object of S3 and host requests.
pub fn info(json: &Value) -> String {
    let Some(user) = user(json) else {
        return "<invalid cloudtrail event: userIdentity field missing>".into();
    };
    let Some(srcip) = json.get("sourceIPAddress").map(go_str) else {
        return "<invalid cloudtrail event: eventSource field missing>".into();
    };
    let error = if json.get("errorCode").is_some() {
        "!"
    } else {
        ""
    };
    let rw = if json
        .get("readOnly")
        .is_some_and(|v| v != &Value::Bool(true))
    {
        "→"
    } else {
        "←"
    };
    let Some(name) = json.get("eventName").map(go_str) else {
        return "<invalid cloudtrail event: eventName field missing>".into();
    };
    let mut info = if user == srcip {
        format!("{user} {error}{rw} {name}")
    } else {
        format!("{user} via {srcip} {error}{rw} {name}")
    };
    if name == "PutBucketPublicAccessBlock" {
        if at(
            json,
            &["requestParameters", "PublicAccessBlockConfiguration"],
        )
        .is_some_and(Value::is_object)
        {
            // The plugin reads these four from the record's top level, where they never are.
            info.push_str(" BlockPublicAcls=false BlockPublicPolicy=false IgnorePublicAcls=false RestrictPublicBuckets=false ");
        }
        return info;
    }
    let input = bytes(json, "bytesTransferredIn");
    let output = bytes(json, "bytesTransferredOut");
    if input.is_some() || output.is_some() {
        let total = input.unwrap_or(0).wrapping_add(output.unwrap_or(0));
        info.push_str(&format!(" Size={total}"));
    }
    let bucket = at(json, &["requestParameters", "bucketName"]);
    let key = at(json, &["requestParameters", "key"]);
    if let (Some(b), Some(k)) = (bucket.and_then(Value::as_str), key.and_then(Value::as_str)) {
        info.push_str(&format!(" URI=s3://{b}/{k}"));
    } else if let Some(b) = bucket {
        info.push_str(&format!(" Bucket={}", go_str(b)));
    } else if let Some(k) = key {
        info.push_str(&format!(" Key={}", go_str(k)));
    } else if let Some(h) = at(json, &["requestParameters", "Host"]) {
        info.push_str(&format!(" Host={}", go_str(h)));
    }
    info
}

/// `evt.plugininfo` of a cloudtrail event: the plugin's `String()`.
pub fn plugin_info(json: &Value) -> Option<String> {
    let mut src = json.get("eventSource")?.as_str()?;
    let region = json.get("awsRegion")?.as_str()?;
    let name = json.get("eventName")?.as_str()?;
    if src.len() > TRAILER.len() {
        src = src.strip_suffix(TRAILER).unwrap_or(src);
    }
    let user = match user_lookup(json) {
        (true, u) if !u.is_empty() => format!(" {u}"),
        (_, u) => u.into_owned(),
    };
    Some(format!("{region}{user} {src} {name} {}", info(json)))
}
