//! Property tests of the engine: arbitrary condition text and arbitrary rules YAML never panic,
//! printing a parsed condition parses back to the same print, and evaluation never panics.

use falco_api::engine::parser;
use falco_api::engine::{EvalOptions, EventData, LoadOptions, RuleSet, RulesFile};
use proptest::prelude::*;

const BASE_RULES: &str = r#"- required_engine_version: 15
- list: names
  items: [cat, "a b", 80]
- macro: m
  condition: proc.name in (names) or proc.pname = sh
- rule: r
  desc: d
  condition: m and not fd.name startswith /etc and evt.type in (open, openat)
  output: "%proc.name %fd.name %5proc.pid"
  priority: WARNING
  tags: [x, y]
  exceptions:
    - name: e
      fields: [proc.name, fd.name]
      comps: [=, pmatch]
      values: [[cat, [/tmp]]]
- rule: r
  condition: or proc.name = dog
  override:
    condition: append
"#;

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("proc.name".to_string()),
        Just("fd.name[1]".to_string()),
        Just("ka.uri.param[x]".to_string()),
        Just(" and ".to_string()),
        Just(" or ".to_string()),
        Just("not ".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just(" = ".to_string()),
        Just("!=".to_string()),
        Just(" in ".to_string()),
        Just(" contains ".to_string()),
        Just(" exists".to_string()),
        Just("\"q\\\"s\"".to_string()),
        Just("'x'".to_string()),
        Just(",".to_string()),
        Just("val(".to_string()),
        Just("tolower(".to_string()),
        Just(">= 4".to_string()),
        "[a-z]{1,6}".prop_map(String::from),
        "[\\PC]{1,3}".prop_map(String::from),
    ]
}

fn condition_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(token(), 1..16).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn parsing_arbitrary_text_never_panics_and_printing_is_stable(text in condition_text()) {
        if let Ok(expr) = parser::parse(&text) {
            let printed = expr.to_string();
            let again = parser::parse(&printed);
            prop_assert!(again.is_ok(), "'{}' printed as '{}' does not parse: {:?}", text, printed, again);
            prop_assert_eq!(again.unwrap().to_string(), printed);
        }
    }

    #[test]
    fn raw_bytes_never_panic_the_parser(text in "\\PC{0,40}") {
        let _ = parser::parse(&text);
    }

    #[test]
    fn mutated_rules_yaml_never_panics(cuts in proptest::collection::vec((0usize..1000, "[\\PC]{0,3}"), 1..6)) {
        let mut text = BASE_RULES.to_string();
        for (at, insert) in cuts {
            let mut at = at % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let end = (at + 2).min(text.len());
            let end = (end..=text.len()).find(|e| text.is_char_boundary(*e)).unwrap();
            text.replace_range(at..end, &insert);
        }
        let files = [RulesFile { name: "fuzz.yaml".into(), content: text }];
        if let Ok(set) = RuleSet::load(&files, &LoadOptions::default()) {
            let event = serde_json::json!({"proc.name": "cat", "evt.type": "open", "fd.name": "/x"});
            let data = EventData { source: "syscall", json: &event, time_ns: 0, hostname: "h", num: 0 };
            let _ = set.evaluate(&data, &EvalOptions::default());
        }
    }

    #[test]
    fn evaluating_arbitrary_events_never_panics(
        name in "[\\PC]{0,8}",
        pid in proptest::num::i64::ANY,
        nested in proptest::bool::ANY,
    ) {
        let files = [RulesFile { name: "base.yaml".into(), content: BASE_RULES.into() }];
        let set = RuleSet::load(&files, &LoadOptions::default()).unwrap();
        let event = if nested {
            serde_json::json!({"proc.name": [name, pid], "evt.type": {"x": 1}, "proc.pid": name})
        } else {
            serde_json::json!({"proc.name": name, "evt.type": "open", "proc.pid": pid, "fd.name": "/tmp/q"})
        };
        let data = EventData { source: "syscall", json: &event, time_ns: pid, hostname: "h", num: 0 };
        let _ = set.evaluate(&data, &EvalOptions::default());
    }
}

#[test]
fn the_base_rules_of_the_properties_load() {
    let files = [RulesFile {
        name: "base.yaml".into(),
        content: BASE_RULES.into(),
    }];
    let set = RuleSet::load(&files, &LoadOptions::default()).unwrap();
    assert_eq!(set.rules().len(), 1);
    let event =
        serde_json::json!({"proc.name": "dog", "evt.type": "open", "fd.name": "/x", "proc.pid": 7});
    let data = EventData {
        source: "syscall",
        json: &event,
        time_ns: 0,
        hostname: "h",
        num: 0,
    };
    let alerts = set.evaluate(&data, &EvalOptions::default());
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        alerts[0].rendered.message, "dog /x 7    ",
        "width pads after the value"
    );
}
