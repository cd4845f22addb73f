//! Structure-aware fuzzing of the engine, on stable Rust with proptest: rules files built from
//! lists, macros, rules, exceptions (both forms, right and wrong shapes), appends, overrides,
//! enable-only items and YAML anchors; conditions with nesting, macro and list references,
//! transformers and every operator family; events of arbitrary JSON. Properties: loading never
//! panics and takes bounded time; a set that loads evaluates any event without panicking.
//!
//! `cargo test` runs a modest number of cases. For a long run:
//! `FALCO_API_FUZZ_CASES=20000 cargo test --release --test api fuzz::`
//! A failing case is shrunk and saved by proptest under `tests/proptest-regressions/`; commit it,
//! and add the rules file to `fixtures/hostile/` with a test of its expected error.

use std::time::{Duration, Instant};

use falco_api::engine::{EvalOptions, EventData, LoadOptions, RuleSet, RulesFile};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("FALCO_API_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

const FIELDS: &[&str] = &[
    "proc.name",
    "proc.pname",
    "fd.name",
    "evt.type",
    "user.name",
    "proc.aname[2]",
    "proc.pid",
    "ka.verb",
    "json.value[/a/b]",
    "no.such.field",
];
const OPS: &[&str] = &[
    "=",
    "!=",
    "<",
    ">=",
    "contains",
    "icontains",
    "startswith",
    "endswith",
    "glob",
    "in",
    "intersects",
    "pmatch",
    "exists",
    "regex",
    "bcontains",
];

fn name(prefix: &'static str) -> impl Strategy<Value = String> {
    (0u8..3).prop_map(move |i| format!("{prefix}{i}"))
}

fn scalar_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z/]{1,6}".prop_map(String::from),
        Just("\"quoted value\"".to_string()),
        (0i64..100000).prop_map(|n| n.to_string()),
    ]
}

fn list_value() -> impl Strategy<Value = String> {
    prop_oneof![
        name("l").prop_map(|l| format!("({l})")),
        proptest::collection::vec("[a-z0-9]{1,4}", 1..4)
            .prop_map(|v| format!("({})", v.join(", "))),
    ]
}

fn check() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(FIELDS),
        proptest::sample::select(OPS),
        scalar_value(),
        list_value(),
        0u8..4,
    )
        .prop_map(|(field, op, scalar, list, wrap)| {
            let value = if matches!(op, "in" | "intersects" | "pmatch") {
                list
            } else {
                scalar
            };
            let field = match wrap {
                1 => format!("tolower({field})"),
                2 => format!("len({field})"),
                _ => field.to_string(),
            };
            if op == "exists" {
                format!("{field} exists")
            } else {
                format!("{field} {op} {value}")
            }
        })
}

fn condition() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![4 => check(), 1 => name("m")];
    leaf.prop_recursive(5, 40, 4, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} and {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} or {b})")),
            inner.clone().prop_map(|a| format!("not {a}")),
            inner.prop_map(|a| format!("({a})")),
        ]
    })
}

fn yaml_scalar(text: String) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn exception() -> impl Strategy<Value = String> {
    (
        name("e"),
        prop::bool::ANY,
        proptest::collection::vec(proptest::sample::select(FIELDS), 1..3),
        proptest::collection::vec("[a-z]{1,4}", 1..4),
        prop::bool::ANY,
    )
        .prop_map(|(name, list_form, fields, values, with_comps)| {
            let mut out = format!("    - name: {name}\n");
            if list_form {
                let quoted: Vec<String> = fields.iter().map(|f| format!("'{f}'")).collect();
                out.push_str(&format!("      fields: [{}]\n", quoted.join(", ")));
                if with_comps {
                    let comps = vec!["="; fields.len()];
                    out.push_str(&format!("      comps: [{}]\n", comps.join(", ")));
                }
                // Mostly the right shape; sometimes one value short.
                let width = if values.len() == 3 {
                    fields.len().saturating_sub(1).max(1)
                } else {
                    fields.len()
                };
                let tuples: Vec<String> = values
                    .iter()
                    .map(|v| format!("[{}]", vec![v.as_str(); width].join(", ")))
                    .collect();
                out.push_str(&format!("      values: [{}]\n", tuples.join(", ")));
            } else {
                out.push_str(&format!("      fields: '{}'\n", fields[0]));
                if with_comps {
                    out.push_str("      comps: in\n");
                }
                out.push_str(&format!("      values: [{}]\n", values.join(", ")));
            }
            out
        })
}

fn item() -> impl Strategy<Value = String> {
    let list = (
        name("l"),
        proptest::collection::vec(
            prop_oneof!["[a-z]{1,5}".prop_map(String::from), name("l")],
            0..5,
        ),
        0u8..3,
    )
        .prop_map(|(n, items, mode)| {
            let tail = match mode {
                1 => "  append: true\n",
                2 => "  override:\n    items: append\n",
                _ => "",
            };
            format!("- list: {n}\n  items: [{}]\n{tail}", items.join(", "))
        });
    let makro = (name("m"), condition(), 0u8..3).prop_map(|(n, c, mode)| {
        let tail = match mode {
            1 => "  append: true\n",
            2 => "  override:\n    condition: replace\n",
            _ => "",
        };
        format!("- macro: {n}\n  condition: {}\n{tail}", yaml_scalar(c))
    });
    let rule = (
        name("r"),
        condition(),
        proptest::collection::vec(exception(), 0..3),
        0u8..6,
        prop::bool::ANY,
    )
        .prop_map(|(n, c, exceptions, mode, anchored)| {
            let mut out = format!("- rule: {n}\n");
            let ex = if exceptions.is_empty() {
                String::new()
            } else {
                format!("  exceptions:\n{}", exceptions.concat())
            };
            match mode {
                0 | 1 => {
                    let tags = if anchored { "  tags: *t\n" } else { "  tags: [a]\n" };
                    out.push_str(&format!(
                        "  desc: d\n  condition: {}\n  output: \"%proc.name %fd.name\"\n  priority: WARNING\n  source: syscall\n{tags}{ex}",
                        yaml_scalar(c)
                    ));
                }
                2 => out.push_str(&format!("  condition: {}\n  append: true\n{ex}", yaml_scalar(format!("and {c}")))),
                3 => out.push_str(if anchored {
                    "  exceptions:\n    - name: e0\n      values: [[bash, /etc]]\n  override:\n    exceptions: append\n"
                } else {
                    "  exceptions:\n    - name: e1\n      values: [zsh, sh]\n  override:\n    exceptions: append\n"
                }),
                4 => out.push_str("  enabled: false\n"),
                _ => out.push_str(
                    "  output: more\n  priority: ERROR\n  override:\n    output: append\n    priority: replace\n",
                ),
            }
            out
        });
    prop_oneof![2 => list, 3 => makro, 4 => rule]
}

/// Definitions the generated items can append to, override and refer to.
const BASE: &str = "\
- list: l0
  items: [cat, dog]
- list: l1
  items: [l0, bash]
- list: l2
  items: []
- macro: m0
  condition: proc.name in (l1)
- macro: m1
  condition: m0 or evt.type = open
- macro: m2
  condition: not m1
- rule: r0
  desc: d
  condition: m1
  output: \"%proc.name\"
  priority: NOTICE
  source: syscall
  tags: &t [a, b]
  exceptions:
    - name: e0
      fields: [proc.name, fd.name]
      values: [[cat, /tmp]]
    - name: e1
      fields: proc.name
      values: [dog]
- rule: r1
  desc: d
  condition: m2 and fd.name startswith /etc
  output: \"%fd.name\"
  priority: ERROR
  source: syscall
  exceptions:
    - name: e0
      fields: [proc.name, fd.name]
      values: [[cat, /tmp]]
    - name: e1
      fields: proc.name
      values: [dog]
- rule: r2
  desc: d
  condition: evt.type in (open, openat)
  output: o
  priority: DEBUG
  source: syscall
  exceptions:
    - name: e0
      fields: [proc.name, fd.name]
      values: [[cat, /tmp]]
    - name: e1
      fields: proc.name
      values: [dog]
";

fn rules_file() -> impl Strategy<Value = String> {
    proptest::collection::vec(item(), 1..12).prop_map(|items| format!("{BASE}{}", items.concat()))
}

fn event() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-z/]{0,8}".prop_map(serde_json::Value::from),
    ];
    let json = leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z]{1,3}", inner, 0..3)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    proptest::collection::btree_map(proptest::sample::select(FIELDS), json, 0..6).prop_map(|m| {
        serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn generated_rules_files_load_or_fail_cleanly_and_evaluate_any_event(
        first in rules_file(),
        second in rules_file(),
        events in proptest::collection::vec(event(), 1..4),
    ) {
        let files = [
            RulesFile { name: "a.yaml".into(), content: first },
            RulesFile { name: "b.yaml".into(), content: second },
        ];
        let started = Instant::now();
        let loaded = RuleSet::load(&files, &LoadOptions::default());
        prop_assert!(started.elapsed() < Duration::from_secs(10), "load took {:?}", started.elapsed());
        match loaded {
            Ok(set) => {
                for json in &events {
                    let data = EventData { source: "syscall", json, time_ns: 1, hostname: "h", num: 1 };
                    let _ = set.evaluate(&data, &EvalOptions::default());
                }
            }
            Err(e) => {
                prop_assert!(e.error.pos.line > 0, "errors are located: {}", e.error)
            }
        }
    }
}
