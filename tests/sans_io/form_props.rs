//! Property tests for the form encoder: random JSON objects (generated as text) encode
//! deterministically, only to the form alphabet, and decode back to the same leaves in
//! document order; and PHP 8.2 itself agrees on a few hundred generated inputs.

use ferry::proto::form::encode_json_object;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

/// A JSON value with the PHP-visible leaf it should produce.
#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    /// A number literal; PHP formats it, so only the PHP comparison checks its text.
    Float(String),
    Str(String),
    List(Vec<Json>),
    Object(Vec<(String, Json)>),
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,6}",
        "[a-z0-9 ._\\[\\]&=+%~#-]{0,5}",
        "[é日😀\u{0}\u{1f}a]{0,3}",
        (0u32..30).prop_map(|n| n.to_string()),
    ]
}

fn float_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        // Up to 26 integer digits: exponents stay below 280 so the value fits a double
        // (PHP would print INF past it; ferry refuses such a number).
        ("-?[1-9][0-9]{0,25}", "[0-9]{1,20}", -330i32..280)
            .prop_map(|(i, d, e)| format!("{i}.{d}e{e}")),
        "-?[1-9][0-9]{19,40}",
        Just("-0".to_owned()),
        Just("-0.0".to_owned()),
    ]
}

fn leaf(with_floats: bool) -> BoxedStrategy<Json> {
    let base = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::Int),
        any::<String>().prop_map(Json::Str),
        "[a-z +&=%é]{0,8}".prop_map(Json::Str),
    ];
    if with_floats {
        prop_oneof![4 => base, 1 => float_literal().prop_map(Json::Float)].boxed()
    } else {
        base.boxed()
    }
}

fn value(with_floats: bool) -> impl Strategy<Value = Json> {
    leaf(with_floats).prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Json::List),
            object_of(inner),
        ]
    })
}

/// Objects with unique keys in random order (repeated keys are covered by the vectors).
fn object_of(inner: impl Strategy<Value = Json>) -> impl Strategy<Value = Json> {
    prop::collection::vec((key(), inner), 0..5).prop_map(|mut entries| {
        let mut seen = std::collections::HashSet::new();
        entries.retain(|(k, _)| seen.insert(k.clone()));
        Json::Object(entries)
    })
}

fn top(with_floats: bool) -> impl Strategy<Value = Json> {
    object_of(value(with_floats))
}

fn render(json: &Json, out: &mut String) {
    match json {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Int(i) => out.push_str(&i.to_string()),
        Json::Float(text) => out.push_str(text),
        Json::Str(s) => out.push_str(&serde_json::to_string(s).unwrap()),
        Json::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                render(item, out);
            }
            out.push(']');
        }
        Json::Object(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap());
                out.push(':');
                render(v, out);
            }
            out.push('}');
        }
    }
}

/// `(name as PHP would parse it back, value)` for every variable, in order.
/// `name` is `None` only for the top-level object, whose keys are names themselves.
fn expected_under(name: Option<&str>, json: &Json, out: &mut Vec<(String, String)>) {
    let name = match (name, json) {
        (None, Json::Object(entries)) => {
            for (k, v) in entries {
                expected_under(Some(k), v, out);
            }
            return;
        }
        (name, _) => name.unwrap_or_default(),
    };
    match json {
        Json::Null => {}
        Json::Bool(b) => out.push((name.to_owned(), if *b { "1" } else { "0" }.to_owned())),
        Json::Int(i) => out.push((name.to_owned(), i.to_string())),
        Json::Float(_) => out.push((name.to_owned(), "<float>".to_owned())),
        Json::Str(s) => out.push((name.to_owned(), s.clone())),
        Json::List(items) => {
            for (i, item) in items.iter().enumerate() {
                expected_under(Some(&format!("{name}[{i}]")), item, out);
            }
        }
        Json::Object(entries) => {
            for (k, v) in entries {
                expected_under(Some(&format!("{name}[{k}]")), v, out);
            }
        }
    }
}

/// A tiny `application/x-www-form-urlencoded` decoder, for tests only.
fn decode_form(body: &[u8]) -> Vec<(String, String)> {
    fn unescape(part: &[u8]) -> String {
        let mut bytes = Vec::new();
        let mut i = 0;
        while i < part.len() {
            match part[i] {
                b'+' => bytes.push(b' '),
                b'%' => {
                    let hex = std::str::from_utf8(&part[i + 1..i + 3]).unwrap();
                    bytes.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b => bytes.push(b),
            }
            i += 1;
        }
        String::from_utf8(bytes).unwrap()
    }
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|&b| b == b'&')
        .map(|pair| {
            let eq = pair.iter().position(|&b| b == b'=').expect("name=value");
            (unescape(&pair[..eq]), unescape(&pair[eq + 1..]))
        })
        .collect()
}

fn allowed(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"._-%+=&".contains(&byte)
}

proptest! {
    #![proptest_config(Config { cases: 512, ..Config::default() })]

    #[test]
    fn encodes_deterministically_to_the_form_alphabet(json in top(true)) {
        let mut text = String::new();
        render(&json, &mut text);
        let mut first = Vec::new();
        encode_json_object(text.as_bytes(), &mut first).unwrap();
        let mut second = Vec::new();
        encode_json_object(text.as_bytes(), &mut second).unwrap();
        prop_assert_eq!(&first, &second);
        prop_assert!(first.iter().all(|&b| allowed(b)), "{}", String::from_utf8_lossy(&first));
    }

    #[test]
    fn decodes_back_to_the_leaves_in_order(json in top(false)) {
        let mut text = String::new();
        render(&json, &mut text);
        let mut body = Vec::new();
        encode_json_object(text.as_bytes(), &mut body).unwrap();
        let mut expected = Vec::new();
        expected_under(None, &json, &mut expected);
        prop_assert_eq!(decode_form(&body), expected);
    }
}

/// ~300 generated objects (floats included) through ONE php process, compared line by
/// line with ferry. Fails when php is missing.
#[test]
fn php_agrees_on_generated_objects() {
    let mut runner = TestRunner::deterministic();
    let strategy = top(true);
    let mut inputs = Vec::new();
    for _ in 0..300 {
        let tree = strategy.new_tree(&mut runner).unwrap();
        let mut text = String::new();
        render(&tree.current(), &mut text);
        inputs.push(text);
    }
    let stdin = inputs.join("\n") + "\n";
    let printed = super::form_php::run_php(
        &["scripts/form-vectors.php", "--lines"],
        Some(stdin.as_bytes()),
    );
    let lines: Vec<&[u8]> = printed.split(|&b| b == b'\n').take(inputs.len()).collect();
    assert_eq!(lines.len(), inputs.len());
    let mut failures = Vec::new();
    for (input, php) in inputs.iter().zip(lines) {
        let mut ours = Vec::new();
        encode_json_object(input.as_bytes(), &mut ours).unwrap();
        if ours != php {
            failures.push(format!(
                "{input}\n  php:   {}\n  ferry: {}",
                String::from_utf8_lossy(php),
                String::from_utf8_lossy(&ours)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n")
    );
}
