//! What a versioned entry is about: a rules file, a rule's or a tag's toggle, or a config key.
//! The store keeps targets as text (`file:<name>`, `rule:<name>`, `tag:<tag>`, `config:<key>`)
//! and toggles as `true`/`false`; this module is the one place that reads and writes that text.

use std::fmt;
use std::str::FromStr;

/// The kind of a target; its prefix selects all targets of the kind in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Rule,
    Tag,
    Config,
}

impl Kind {
    /// The text every stored target of this kind starts with.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::File => "file:",
            Kind::Rule => "rule:",
            Kind::Tag => "tag:",
            Kind::Config => "config:",
        }
    }

    pub fn of(self, name: &str) -> Target {
        Target {
            kind: self,
            name: name.to_string(),
        }
    }
}

/// One versioned target.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub kind: Kind,
    pub name: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.kind.prefix(), self.name)
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(text: &str) -> Result<Target, String> {
        for kind in [Kind::File, Kind::Rule, Kind::Tag, Kind::Config] {
            if let Some(name) = text.strip_prefix(kind.prefix()) {
                return Ok(kind.of(name));
            }
        }
        Err(format!("'{text}' is not a versioned target"))
    }
}

/// The sha256 (hex) of a rules file's content, as listings and history show it.
pub fn digest(content: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(content.as_bytes()))
}

/// A toggle's stored value.
pub fn toggle_value(enabled: bool) -> &'static str {
    if enabled {
        "true"
    } else {
        "false"
    }
}

/// Whether a stored toggle value enables.
pub fn is_enabled(value: &str) -> bool {
    value == "true"
}

/// What one recorded change did to a rules target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// A file written, with the sha256 of its new content.
    Put {
        digest: String,
    },
    Delete,
    Enable,
    Disable,
    /// A toggle removed (back to the file's own `enabled`).
    Clear,
}

impl Effect {
    pub fn of(target: &Target, value: Option<&str>) -> Effect {
        match (target.kind, value) {
            (Kind::File, Some(content)) => Effect::Put {
                digest: digest(content),
            },
            (Kind::File, None) => Effect::Delete,
            (_, None) => Effect::Clear,
            (_, Some(v)) if is_enabled(v) => Effect::Enable,
            (_, Some(_)) => Effect::Disable,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Effect::Put { .. } => "put",
            Effect::Delete => "delete",
            Effect::Enable => "enable",
            Effect::Disable => "disable",
            Effect::Clear => "clear",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip_through_text() {
        for text in [
            "file:a.yaml",
            "rule:Write below etc",
            "tag:k8s",
            "config:outputs.rate",
        ] {
            let t: Target = text.parse().unwrap();
            assert_eq!(t.to_string(), text);
        }
        assert!("nothing".parse::<Target>().is_err());
        assert_eq!(Kind::Rule.of("x").to_string(), "rule:x");
    }
}
