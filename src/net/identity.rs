//! Identities and roles, whatever the transport: who a caller is (the Unix peer's uid, or a
//! verified client certificate's CN and SANs), and which roles the boot config gives them. The
//! gRPC layer (`server/auth.rs`) and the HTTP surface (`http/`) both ask this module.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// version, outputs, drops, rules and config reads.
    Reader,
    /// inputs.
    Ingest,
    /// rules and config writes (and everything a reader may do).
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Ingest => "ingest",
            Role::Admin => "admin",
        }
    }
}

/// Who is calling, with every name they are known by and their roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The name recorded as the author of changes: `uid:N`, `cn:NAME` or `san:NAME`.
    pub name: String,
    pub names: Vec<String>,
    pub roles: HashSet<Role>,
}

/// The boot config's identity → roles mapping.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub roles: HashMap<String, Vec<Role>>,
    /// On the Unix socket, root and the server's own uid get every role.
    pub socket_owner_is_admin: bool,
    pub own_uid: u32,
}

impl Policy {
    /// The roles of a caller known by `names` (and, on the Unix socket, by `uid`).
    pub fn roles_of(&self, names: &[String], uid: Option<u32>) -> HashSet<Role> {
        let mut roles = HashSet::new();
        if let (true, Some(uid)) = (self.socket_owner_is_admin, uid) {
            if uid == 0 || uid == self.own_uid {
                roles.extend([Role::Reader, Role::Ingest, Role::Admin]);
            }
        }
        for name in names {
            for role in self.roles.get(name).into_iter().flatten() {
                roles.insert(*role);
                if *role == Role::Admin {
                    roles.insert(Role::Reader);
                }
            }
        }
        roles
    }

    /// The identity of a TLS client from its leaf certificate (DER); `None` without a usable name.
    pub fn identify_certificate(&self, der: &[u8]) -> Option<Identity> {
        let names = certificate_names(der);
        let name = names.first()?.clone();
        let roles = self.roles_of(&names, None);
        Some(Identity { name, names, roles })
    }
}

/// `cn:<common name>` and `san:<name>` for each DNS name, IP address or URI, from a DER cert.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(|cn| format!("cn:{cn}"))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for general in &san.value.general_names {
            match general {
                GeneralName::DNSName(d) => names.push(format!("san:{d}")),
                GeneralName::URI(u) => names.push(format!("san:{u}")),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes)
                            .ok()
                            .map(|b| std::net::IpAddr::from(b).to_string()),
                        16 => <[u8; 16]>::try_from(*bytes)
                            .ok()
                            .map(|b| std::net::IpAddr::from(b).to_string()),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        names.push(format!("san:{ip}"));
                    }
                }
                _ => {}
            }
        }
    }
    names
}
