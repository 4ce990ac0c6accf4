//! Tests for the minimal JSON reader.

use super::{Value, parse};

fn check(text: &str, expected: Value) {
    assert_eq!(parse(text).unwrap(), expected, "parsing {text:?}");
}

fn check_err(text: &str) {
    assert!(parse(text).is_err(), "{text:?} should not parse");
}

#[test]
fn scalars() {
    check("null", Value::Null);
    check(" true ", Value::Bool(true));
    check("false", Value::Bool(false));
    check("-12.5e2", Value::Number(-1250.0));
    check("0", Value::Number(0.0));
    check(
        r#""a\"b\\c\/d\n\u00e9\ud83d\ude00""#,
        Value::String("a\"b\\c/d\né😀".to_owned()),
    );
    check(r#""naïve""#, Value::String("naïve".to_owned()));
}

#[test]
fn containers_and_lookup() {
    let value = parse(r#"{"a": [1, {"b": "x"}], "c": {}, "d": []}"#).unwrap();
    let a = value.get("a").and_then(Value::as_array).unwrap();
    assert_eq!(a[0].as_f64(), Some(1.0));
    assert_eq!(a[1].get("b").and_then(Value::as_str), Some("x"));
    assert_eq!(value.get("c"), Some(&Value::Object(Vec::new())));
    assert_eq!(value.get("d"), Some(&Value::Array(Vec::new())));
    assert_eq!(value.get("missing"), None);
    assert_eq!(a[0].get("a"), None);
}

#[test]
fn rejects_malformed_input() {
    check_err("");
    check_err("{");
    check_err(r#"{"a" 1}"#);
    check_err("[1,]");
    check_err("[1 2]");
    check_err(r#""unterminated"#);
    check_err(r#""\q""#);
    check_err(r#""\ud800""#);
    check_err("nul");
    check_err("1 2");
    check_err("--1");
    check_err(&"[".repeat(1000));
}
