//! A field catalog from the Falco you run: `falco --list --format json` prints every field class
//! of every loaded source (plugins included) as `{"fieldclasses": [{"name", "event_sources",
//! "fields": [{"name", "type", "is_list", "argument"}]}]}`. Loaded into the engine, its fields
//! that falco-api does not implement are validated (name, argument, type, list) but not
//! evaluated: they never extract, and every rule using one gets a warning saying so.
//!
//! The catalog in force is scoped to one rules load on one thread ([`scope`]), so concurrent
//! loads with different catalogs (tests, the eval command) never see each other's.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::fields::{Arg, FieldInfo, FieldType};

/// The largest catalog file accepted (Falco 0.44 with every official plugin prints ~0.5 MiB).
pub const MAX_BYTES: usize = 16 << 20;

/// Fields by event source.
#[derive(Debug, Default)]
pub struct Catalog {
    sources: BTreeMap<String, Vec<FieldInfo>>,
}

#[derive(Deserialize)]
struct ListJson {
    fieldclasses: Vec<ClassJson>,
}

#[derive(Deserialize)]
struct ClassJson {
    #[serde(default)]
    event_sources: Vec<String>,
    fields: Vec<FieldJson>,
}

#[derive(Deserialize)]
struct FieldJson {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    is_list: bool,
    #[serde(default)]
    argument: Option<ArgJson>,
}

#[derive(Deserialize)]
struct ArgJson {
    #[serde(default)]
    required: bool,
    #[serde(default, rename = "type")]
    kinds: Vec<String>,
}

/// libsinsp's type names (`param_type_to_string`) as the engine's types.
fn field_type(name: &str) -> FieldType {
    match name {
        "BOOL" => FieldType::Bool,
        "IPV4ADDR" | "IPV6ADDR" | "IPADDR" => FieldType::Ip,
        "IPV4NET" | "IPV6NET" | "IPNET" => FieldType::IpNet,
        "BYTEBUF" => FieldType::Bytes,
        "INT8" | "INT16" | "INT32" | "INT64" | "UINT8" | "UINT16" | "UINT32" | "UINT64"
        | "ERRNO" | "FD" | "PID" | "SYSCALLID" | "SIGTYPE" | "RELTIME" | "ABSTIME" | "PORT"
        | "FLAGS8" | "FLAGS16" | "FLAGS32" | "DOUBLE" | "MODE" | "ENUMFLAGS8" | "ENUMFLAGS16"
        | "ENUMFLAGS32" | "UID" | "GID" | "L4PROTO" | "SOCKFAMILY" => FieldType::Number,
        _ => FieldType::String,
    }
}

fn arg(a: Option<&ArgJson>) -> Arg {
    let Some(a) = a else { return Arg::None };
    let key = a.kinds.iter().any(|k| k == "KEY");
    match (a.required, key) {
        (true, true) => Arg::RequiredKey,
        (true, false) => Arg::RequiredIndex,
        (false, true) => Arg::OptionalKey,
        (false, false) => Arg::OptionalIndex,
    }
}

impl Catalog {
    /// Parses `falco --list --format json` output.
    pub fn parse(text: &str) -> Result<Catalog, String> {
        if text.len() > MAX_BYTES {
            return Err(format!(
                "the field catalog is {} bytes; at most {MAX_BYTES} are accepted",
                text.len()
            ));
        }
        let list: ListJson = serde_json::from_str(text)
            .map_err(|e| format!("not the output of `falco --list --format json`: {e}"))?;
        let mut sources: BTreeMap<String, Vec<FieldInfo>> = BTreeMap::new();
        for class in list.fieldclasses {
            for field in &class.fields {
                let info = FieldInfo {
                    // Loaded once per process (boot, or one eval run): the names live as long.
                    name: Box::leak(field.name.clone().into_boxed_str()),
                    ty: field_type(&field.ty),
                    list: field.is_list,
                    arg: arg(field.argument.as_ref()),
                };
                for source in &class.event_sources {
                    let fields = sources.entry(source.clone()).or_default();
                    if !fields.iter().any(|f| f.name == info.name) {
                        fields.push(info);
                    }
                }
            }
        }
        if sources.is_empty() {
            return Err("the field catalog lists no field of any event source".into());
        }
        Ok(Catalog { sources })
    }

    /// Reads and parses a catalog file.
    pub fn read(path: &std::path::Path) -> Result<Catalog, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.len() > MAX_BYTES as u64 {
            return Err(format!(
                "{}: {} bytes; a field catalog may hold at most {MAX_BYTES}",
                path.display(),
                meta.len()
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Catalog::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn lookup(&self, source: &str, name: &str) -> Option<FieldInfo> {
        self.sources
            .get(source)?
            .iter()
            .find(|f| f.name == name)
            .copied()
    }

    /// (source, fields listed, of which the engine implements natively).
    pub fn summary(&self) -> Vec<(String, usize, usize)> {
        self.sources
            .iter()
            .map(|(source, fields)| {
                let registry = super::fields::registry(source);
                let native = fields
                    .iter()
                    .filter(|f| super::fields::lookup(registry, f.name).is_some())
                    .count();
                (source.clone(), fields.len(), native)
            })
            .collect()
    }
}

/// Fields a rule uses that falco-api checks but never extracts, noted while it compiles.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unevaluated {
    /// Known only from the catalog.
    pub catalog: Vec<String>,
    /// Known natively but needing what a server does not have (state across events, a capture).
    pub native: Vec<String>,
}

impl Unevaluated {
    pub fn is_empty(&self) -> bool {
        self.catalog.is_empty() && self.native.is_empty()
    }
}

thread_local! {
    static CURRENT: RefCell<(Option<Arc<Catalog>>, Unevaluated)> =
        RefCell::new((None, Unevaluated::default()));
}

fn note(list: &mut Vec<String>, name: &str) {
    if !list.iter().any(|n| n == name) {
        list.push(name.to_string());
    }
}

/// Notes that a native field that is never evaluated was used.
pub fn note_native(name: &str) {
    CURRENT.with(|c| note(&mut c.borrow_mut().1.native, name));
}

/// Runs `f` with `catalog` in force on this thread.
pub fn scope<T>(catalog: Option<Arc<Catalog>>, f: impl FnOnce() -> T) -> T {
    let previous = CURRENT.with(|c| std::mem::replace(&mut c.borrow_mut().0, catalog));
    struct Restore(Option<Option<Arc<Catalog>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take().flatten();
            CURRENT.with(|c| c.borrow_mut().0 = previous);
        }
    }
    let _restore = Restore(Some(previous));
    f()
}

/// A field of `source` known only from the catalog in force, noting its use.
pub fn lookup(source: &str, name: &str) -> Option<FieldInfo> {
    CURRENT.with(|c| {
        let mut current = c.borrow_mut();
        let info = current.0.as_ref()?.lookup(source, name)?;
        note(&mut current.1.catalog, name);
        Some(info)
    })
}

/// The fields used since the last call that are never evaluated.
pub fn take_used() -> Unevaluated {
    CURRENT.with(|c| std::mem::take(&mut c.borrow_mut().1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{"fieldclasses": [
      {"name": "myplug", "event_sources": ["myplug"], "fields": [
        {"name": "my.user", "type": "CHARBUF", "desc": "d", "is_list": false, "argument": null},
        {"name": "my.count", "type": "UINT64", "desc": "d", "is_list": false,
         "argument": {"required": true, "type": ["INDEX"]}},
        {"name": "my.tags", "type": "CHARBUF", "desc": "d", "is_list": true,
         "argument": {"required": false, "type": ["KEY"]}}]},
      {"name": "evt", "event_sources": ["myplug", "syscall"], "fields": [
        {"name": "evt.num", "type": "UINT64", "desc": "d", "is_list": false, "argument": null}]}]}"#;

    #[test]
    fn falcos_field_list_becomes_typed_fields_by_source() {
        let c = Catalog::parse(LIST).unwrap();
        let count = c.lookup("myplug", "my.count").unwrap();
        assert_eq!(
            (count.ty, count.list, count.arg),
            (FieldType::Number, false, Arg::RequiredIndex)
        );
        let tags = c.lookup("myplug", "my.tags").unwrap();
        assert_eq!((tags.list, tags.arg), (true, Arg::OptionalKey));
        assert!(c.lookup("syscall", "my.user").is_none());
        assert_eq!(
            c.summary(),
            vec![("myplug".to_string(), 4, 1), ("syscall".to_string(), 1, 1)]
        );
        assert!(Catalog::parse("{}")
            .unwrap_err()
            .contains("falco --list --format json"));
        assert!(Catalog::parse(r#"{"fieldclasses": []}"#)
            .unwrap_err()
            .contains("no field"));
    }

    #[test]
    fn the_catalog_is_scoped_to_one_load_on_one_thread() {
        let c = Arc::new(Catalog::parse(LIST).unwrap());
        assert!(lookup("myplug", "my.user").is_none());
        scope(Some(c), || {
            assert!(lookup("myplug", "my.user").is_some());
            assert!(std::thread::spawn(|| lookup("myplug", "my.user").is_none())
                .join()
                .unwrap());
            assert_eq!(take_used().catalog, ["my.user"]);
        });
        assert!(lookup("myplug", "my.user").is_none());
    }
}
