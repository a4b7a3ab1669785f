//! Table tests beside the codec; PHP-generated vectors live in
//! `tests/sans_io/form_vectors.rs`.

use super::*;

fn enc(json: &str) -> Result<String, FormError> {
    let mut out = Vec::new();
    encode_json_object(json.as_bytes(), &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

#[test]
fn php_table() {
    // Expectations printed by PHP 8.2's http_build_query(json_decode($j, true)).
    let table = [
        (r#"{"a":1,"b":2,"a":3}"#, "a=3&b=2"),
        (r#"{"a":{"x":1},"b":2,"a":3}"#, "a=3&b=2"),
        (
            r#"{"x":{"a":{"q":1},"b":2,"a":{"r":2}}}"#,
            "x%5Ba%5D%5Br%5D=2&x%5Bb%5D=2",
        ),
        (
            r#"{"a":[null,1,true,false,""]}"#,
            "a%5B1%5D=1&a%5B2%5D=1&a%5B3%5D=0&a%5B4%5D=",
        ),
        (r#"{"e":[],"o":{},"s":""}"#, "s="),
        (r#"{"0":"a","1":"b","01":"c","":"d"}"#, "0=a&1=b&01=c&=d"),
        (
            r#"{"a":{"b":{"c":{"d":{"e":[1]}}}}}"#,
            "a%5Bb%5D%5Bc%5D%5Bd%5D%5Be%5D%5B0%5D=1",
        ),
        (r#"{"n":"\u0000\u001f\u007f"}"#, "n=%00%1F%7F"),
        (r#"{"1":1,"1":2}"#, "1=2"),
        (r#"{"a":null}"#, ""),
        (r#"{"\u0000k":{"\u0000":1}}"#, "%00k%5B%00%5D=1"),
        (r#"{"a":[[],{},[null]],"b":1}"#, "b=1"),
        (r#"{"a":-0,"b":-0.0,"c":1.0,"d":1e2}"#, "a=0&b=-0&c=1&d=100"),
        (
            r#"{"a":-9223372036854775808,"b":-9223372036854775809,"c":9223372036854775808}"#,
            "a=-9223372036854775808&b=-9.2233720368548E%2B18&c=9.2233720368548E%2B18",
        ),
        ("{}", ""),
        (" { \"a\" : \"x y\" } \n", "a=x+y"),
    ];
    for (json, php) in table {
        assert_eq!(enc(json).as_deref(), Ok(php), "{json}");
    }
}

#[test]
fn many_duplicates_use_hashed_fallback() {
    let mut json = String::from("{");
    for i in 0..100 {
        json.push_str(&format!("\"k{}\":{i},", i % 40));
    }
    json.push_str("\"end\":true}");
    let expected: Vec<String> = (0..40)
        .map(|k| format!("k{k}={}", (0..100).filter(|i| i % 40 == k).max().unwrap()))
        .chain(["end=1".to_owned()])
        .collect();
    assert_eq!(enc(&json).unwrap(), expected.join("&"));
}

#[test]
fn rejections() {
    let not_object = |json: &str| match enc(json) {
        Err(FormError::NotAnObject { found }) => found,
        other => panic!("{json}: {other:?}"),
    };
    assert_eq!(not_object("[1,2]"), JsonKind::Array);
    assert_eq!(not_object("\"s\""), JsonKind::String);
    assert_eq!(not_object("12"), JsonKind::Number);
    assert_eq!(not_object("true"), JsonKind::Bool);
    assert_eq!(not_object("null"), JsonKind::Null);
    let fault = |json: &str| match enc(json) {
        Err(FormError::InvalidJson { fault, .. }) => fault,
        other => panic!("{json}: {other:?}"),
    };
    assert_eq!(fault(""), JsonFault::Truncated);
    assert_eq!(fault("{\"a\":"), JsonFault::Truncated);
    assert_eq!(fault("{\"a\":1} x"), JsonFault::Syntax);
    assert_eq!(fault("[1] x"), JsonFault::Syntax);
    assert_eq!(fault("{\"a\":1e400}"), JsonFault::NumberOutOfRange);
    assert_eq!(fault("{\"a\":\"\\ud800\"}"), JsonFault::Syntax);
    assert_eq!(fault("{'a':1}"), JsonFault::Syntax);
}

#[test]
fn depth_limit() {
    let nested = |depth: usize| format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    assert!(enc(&nested(64)).is_ok());
    assert_eq!(enc(&nested(65)), Err(FormError::TooDeep { limit: 64 }));
    let limits = Limits {
        max_depth: 1000,
        ..Limits::default()
    };
    let mut out = Vec::new();
    assert!(encode_with_limits(nested(126).as_bytes(), &mut out, &limits).is_ok());
    assert_eq!(
        encode_with_limits(nested(127).as_bytes(), &mut Vec::new(), &limits),
        Err(FormError::TooDeep { limit: 126 })
    );
    // Too deep in the duplicate-key fallback too.
    let dup_then_deep = format!("{{\"a\":1,\"a\":2,\"b\":{}}}", nested(64));
    assert_eq!(enc(&dup_then_deep), Err(FormError::TooDeep { limit: 64 }));
}

#[test]
fn output_cap_and_untouched_buffer_on_error() {
    let limits = Limits {
        max_output_bytes: 10,
        ..Limits::default()
    };
    let mut out = b"keep".to_vec();
    assert_eq!(
        encode_with_limits(br#"{"a":"0123456789"}"#, &mut out, &limits),
        Err(FormError::TooLarge { limit: 10 })
    );
    assert_eq!(out, b"keep");
    let exact = Limits {
        max_output_bytes: 14,
        ..limits
    };
    let encoded = encode_with_limits(br#"{"a":"x","b":[1]}"#, &mut out, &exact).unwrap();
    assert_eq!(out, b"keepa=x&b%5B0%5D=1");
    assert_eq!(
        encoded,
        Encoded {
            variables: 2,
            bytes: 14
        }
    );
}

#[test]
fn quadratic_nesting_is_capped() {
    // 1 KiB key, 50 levels, 10k leaves: ~ 150 KiB in, ~ 1.5 GB out without the cap.
    let key = "k".repeat(1024);
    let mut json = String::new();
    for _ in 0..50 {
        json.push_str(&format!("{{\"{key}\":"));
    }
    json.push('[');
    json.push_str(&vec!["1"; 10_000].join(","));
    json.push(']');
    json.push_str(&"}".repeat(50));
    let mut out = Vec::new();
    assert_eq!(
        encode_json_object(json.as_bytes(), &mut out),
        Err(FormError::TooLarge {
            limit: DEFAULT_MAX_OUTPUT_BYTES
        })
    );
    assert!(out.is_empty());
}

#[test]
fn errors_display_a_reason() {
    let text = FormError::NotAnObject {
        found: JsonKind::Array,
    }
    .to_string();
    assert!(text.contains("not a JSON object"), "{text}");
}

#[test]
fn repeated_keys_in_a_huge_payload_are_refused_not_buffered() {
    let values = |n: usize| vec!["0"; n].join(",");
    // The root object and the array count as values too.
    let fits = format!(r#"{{"a":[{}],"a":1}}"#, values(FALLBACK_MAX_VALUES - 3));
    assert_eq!(enc(&fits).unwrap(), "a=1");
    let over = format!(r#"{{"a":[{}],"a":1}}"#, values(FALLBACK_MAX_VALUES));
    assert_eq!(
        enc(&over),
        Err(FormError::TooManyValues {
            limit: FALLBACK_MAX_VALUES
        })
    );
}
