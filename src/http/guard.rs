//! What every request on the HTTP surface passes before any endpoint sees it: the `Host` it names
//! (plain HTTP on loopback: a web page's DNS-rebinding trick points a name of its own at
//! 127.0.0.1, and that name is not one this listener answers to; a TLS listener's certificate
//! and a listener opened to the network with `allow_remote_plaintext` are out of that trick's
//! reach or past its point), and for anything that changes state, an
//! `Origin` and `Sec-Fetch-Site` of this listener (so a page of another site in the operator's
//! browser cannot post forged alerts into the loopback receiver). Every answer is marked
//! `nosniff`, and `no-store` unless it says otherwise.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{header, HeaderValue, Method, StatusCode};

/// The names a listener answers to.
pub struct Hosts {
    /// Names from the boot file's `allowed_hosts`, lowercase.
    allowed: Vec<String>,
    /// This machine's name, lowercase.
    own: String,
    /// Whether `Host` is checked: plain HTTP on a loopback address.
    check: bool,
    /// The listener speaks TLS (an `Origin` without a port means 443).
    tls: bool,
}

impl Hosts {
    pub fn new(allowed: Arc<Vec<String>>, tls: bool, loopback: bool) -> Hosts {
        Hosts {
            allowed: allowed.iter().map(|h| h.to_ascii_lowercase()).collect(),
            own: crate::base::hostname().to_ascii_lowercase(),
            check: !tls && loopback,
            tls,
        }
    }

    fn allows(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        name.parse::<std::net::IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || name == self.own
            || self.allowed.contains(&name)
    }
}

/// `example.org` of `example.org:8080`, `::1` of `[::1]:80`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// `host:port` of an `Origin` value (`scheme://host:port`), default ports filled in.
fn origin_authority(origin: &str) -> Option<String> {
    let (scheme, rest) = origin.split_once("://")?;
    let rest = rest.trim_end_matches('/');
    let default = match scheme {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    Some(if rest.starts_with('[') {
        if rest.contains("]:") {
            rest.to_string()
        } else {
            format!("{rest}:{default}")
        }
    } else if rest.contains(':') {
        rest.to_string()
    } else {
        format!("{rest}:{default}")
    })
}

fn refuse(status: StatusCode, message: String) -> Response {
    super::json(status, serde_json::json!({ "error": message }))
}

pub async fn same_origin(
    State(hosts): State<Arc<Hosts>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    if hosts.check && !host.is_empty() && !hosts.allows(&host) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this listener does not answer to Host '{}': add the name to allowed_hosts in the boot file",
                host_name(&host)
            ),
        );
    }
    let changes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if changes {
        if let Some(refused) = cross_site_refusal(&request, &host, hosts.tls) {
            return refused;
        }
    }
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The refusal of a change from another site: a browser's `Sec-Fetch-Site: cross-site`, or an
/// `Origin` whose authority is not the `Host` asked for (with the scheme's port when it has none).
fn cross_site_refusal(request: &Request, host: &str, tls: bool) -> Option<Response> {
    let cross_site = request
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or("?").to_string());
    let foreign = origin.as_deref().is_some_and(|o| {
        let scheme_port = if tls { "443" } else { "80" };
        let host = if host.contains(':') && !host.ends_with(']') {
            host.to_string()
        } else {
            format!("{host}:{scheme_port}")
        };
        origin_authority(o).is_none_or(|a| !a.eq_ignore_ascii_case(&host))
    });
    (cross_site || foreign).then(|| {
        refuse(
            StatusCode::FORBIDDEN,
            format!(
                "a request from another site ({}) cannot change anything here",
                origin.as_deref().unwrap_or("Sec-Fetch-Site: cross-site")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_origins() {
        let hosts = Hosts::new(Arc::new(vec!["Falco-API.svc".into()]), false, true);
        for ok in [
            "127.0.0.1:2801",
            "[::1]:2801",
            "localhost:9376",
            "a.localhost",
            "falco-api.svc:80",
            "10.0.0.3",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example:2801",
            "localhost.evil.example",
            "127.0.0.1.nip.io:80",
        ] {
            assert!(!hosts.allows(bad), "{bad}");
        }
        assert_eq!(
            origin_authority("http://127.0.0.1:2801").unwrap(),
            "127.0.0.1:2801"
        );
        assert_eq!(origin_authority("https://a.b").unwrap(), "a.b:443");
        assert_eq!(origin_authority("http://[::1]").unwrap(), "[::1]:80");
        assert!(origin_authority("null").is_none());
    }
}
