//! The form encoder against real PHP 8.2.
//!
//! `tests/data/form/vectors.json` was printed by `scripts/form-vectors.php` (PHP's own
//! `http_build_query(json_decode($json, true))`) from `tests/data/form/inputs.json`.
//! One test proves ferry matches every vector; another re-runs PHP to prove the vectors
//! are current. Run `php -n scripts/form-vectors.php > tests/data/form/vectors.json` after
//! editing the inputs.

use ferry::proto::form::{
    encode_json_object, encode_with_limits, FormError, JsonFault, JsonKind, Limits,
};

use super::form_php::run_php;
use crate::data;

fn vectors() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(data::path("form/vectors.json")).expect("vectors.json");
    let parsed: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(&text).expect("vectors.json is a list of objects");
    parsed
        .into_iter()
        .map(|v| {
            let field = |name: &str| v[name].as_str().expect("string field").to_owned();
            (field("json"), field("php"))
        })
        .collect()
}

#[test]
fn every_vector_encodes_exactly_as_php() {
    let vectors = vectors();
    assert!(vectors.len() >= 60, "only {} vectors", vectors.len());
    let mut failures = Vec::new();
    for (json, php) in &vectors {
        let mut out = Vec::new();
        match encode_json_object(json.as_bytes(), &mut out) {
            Ok(()) if out == php.as_bytes() => {}
            Ok(()) => failures.push(format!(
                "{json}\n  php:   {php}\n  ferry: {}",
                String::from_utf8_lossy(&out)
            )),
            Err(error) => failures.push(format!("{json}\n  php:   {php}\n  ferry: {error}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn committed_vectors_are_what_php_prints_today() {
    let printed = run_php(
        &["scripts/form-vectors.php", "tests/data/form/inputs.json"],
        None,
    );
    let committed = std::fs::read(data::path("form/vectors.json")).expect("vectors.json");
    assert!(
        printed == committed,
        "tests/data/form/vectors.json is stale: run `php -n scripts/form-vectors.php > tests/data/form/vectors.json`"
    );
}

fn error_of(json: &[u8]) -> FormError {
    let mut out = b"untouched".to_vec();
    let error = encode_json_object(json, &mut out).expect_err("must be refused");
    assert_eq!(out, b"untouched", "a refused body leaves the buffer alone");
    error
}

#[test]
fn non_objects_are_refused() {
    let cases: [(&[u8], JsonKind); 9] = [
        (b"[]", JsonKind::Array),
        (b"[1,2]", JsonKind::Array),
        (b"[{\"a\":1}]", JsonKind::Array),
        (b"\"text\"", JsonKind::String),
        (b"0", JsonKind::Number),
        (b"-1.5e3", JsonKind::Number),
        (b"true", JsonKind::Bool),
        (b"false", JsonKind::Bool),
        (b" null ", JsonKind::Null),
    ];
    for (json, found) in cases {
        assert_eq!(
            error_of(json),
            FormError::NotAnObject { found },
            "{:?}",
            String::from_utf8_lossy(json)
        );
    }
}

#[test]
fn invalid_json_is_refused() {
    let cases: [(&[u8], JsonFault); 16] = [
        (b"", JsonFault::Truncated),
        (b"   ", JsonFault::Truncated),
        (b"{", JsonFault::Truncated),
        (b"{\"a\":[1,", JsonFault::Truncated),
        (b"{\"a\":\"unterminated", JsonFault::Truncated),
        (b"{\"a\":1,}", JsonFault::Syntax),
        (b"{a:1}", JsonFault::Syntax),
        (b"{\"a\":01}", JsonFault::Syntax),
        (b"{\"a\":NaN}", JsonFault::Syntax),
        (b"{\"a\":\"\\x\"}", JsonFault::Syntax),
        (b"{\"a\":\"\xff\"}", JsonFault::Syntax),
        (b"{\"a\":\"\\udc00\"}", JsonFault::Syntax),
        (b"\xef\xbb\xbf{}", JsonFault::Syntax),
        (b"{} {}", JsonFault::Syntax),
        (b"{\"a\":1e400}", JsonFault::NumberOutOfRange),
        (b"{\"a\":[-1e309]}", JsonFault::NumberOutOfRange),
    ];
    for (json, expected) in cases {
        match error_of(json) {
            FormError::InvalidJson { fault, .. } => {
                assert_eq!(fault, expected, "{:?}", String::from_utf8_lossy(json))
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(json)),
        }
    }
}

#[test]
fn nesting_bombs_are_refused() {
    let objects = |depth: usize| format!("{}1{}", "{\"k\":".repeat(depth), "}".repeat(depth));
    let arrays = |depth: usize| {
        format!(
            "{{\"k\":{}1{}}}",
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        )
    };
    assert!(encode_json_object(objects(64).as_bytes(), &mut Vec::new()).is_ok());
    assert!(encode_json_object(arrays(64).as_bytes(), &mut Vec::new()).is_ok());
    assert_eq!(
        error_of(objects(65).as_bytes()),
        FormError::TooDeep { limit: 64 }
    );
    assert_eq!(
        error_of(arrays(65).as_bytes()),
        FormError::TooDeep { limit: 64 }
    );
    // Far beyond serde_json's own limit: ours trips first.
    assert_eq!(
        error_of(arrays(100_000).as_bytes()),
        FormError::TooDeep { limit: 64 }
    );
    // A top-level array bomb is beyond serde_json's limit before it is "not an object".
    let top_array = "[".repeat(100_000);
    assert!(matches!(
        error_of(top_array.as_bytes()),
        FormError::InvalidJson { .. }
    ));
    // Configured limits.
    let shallow = Limits {
        max_depth: 2,
        ..Limits::default()
    };
    assert!(encode_with_limits(b"{\"a\":{\"b\":1}}", &mut Vec::new(), &shallow).is_ok());
    assert_eq!(
        encode_with_limits(b"{\"a\":{\"b\":[1]}}", &mut Vec::new(), &shallow),
        Err(FormError::TooDeep { limit: 2 })
    );
}

#[test]
fn output_bombs_are_refused() {
    // Long keys nested deep, many leaves: quadratic output.
    let key = "%".repeat(2000);
    let mut json = String::new();
    for _ in 0..40 {
        json.push_str(&format!("{{\"{key}\":"));
    }
    json.push('[');
    json.push_str(&vec!["0"; 3000].join(","));
    json.push(']');
    json.push_str(&"}".repeat(40));
    assert!(json.len() < 100_000);
    let limits = Limits {
        max_output_bytes: 1 << 20,
        ..Limits::default()
    };
    assert_eq!(
        encode_with_limits(json.as_bytes(), &mut Vec::new(), &limits),
        Err(FormError::TooLarge { limit: 1 << 20 })
    );
}
