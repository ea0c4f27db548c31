//! JSON-RPC ids as a gateway may write them back. A server written in JavaScript or Python
//! reads `1`, `1.0`, `1e0` and `-0` as the same number and answers with its own spelling;
//! integers beyond 2^53 come back rounded. So ids are compared by value: numbers as the
//! f64 a JavaScript server would hold (which makes neighbours beyond 2^53 one id), strings
//! as text. The proxy never relies on an id to decide what to filter; it relies on ids
//! only to tell the agent which request an error answers, and to refuse a batch whose ids
//! would be ambiguous.

use std::collections::HashSet;

use serde_json::Value;

/// The longest id (as JSON text) the MCP layer accepts when it watches answers. Ids are
/// short in practice (a counter or a UUID); a longer one could not be matched to its
/// answer in the bounded space the response probe keeps.
pub const MAX_ID_BYTES: usize = 128;

/// An id by value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdKey {
    Number(u64),
    String(String),
    Null,
}

impl IdKey {
    pub fn of(id: &Value) -> Option<IdKey> {
        match id {
            Value::Number(n) => {
                let f = n.as_f64()?;
                // -0 and 0 are one number.
                let f = if f == 0.0 { 0.0 } else { f };
                Some(IdKey::Number(f.to_bits()))
            }
            Value::String(s) => Some(IdKey::String(s.clone())),
            Value::Null => Some(IdKey::Null),
            _ => None,
        }
    }
}

/// Whether two ids name the same request, however the gateway spelled them.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => IdKey::of(a) == IdKey::of(b),
        _ => a == b,
    }
}

/// The first id that occurs twice (by value), if any.
pub fn first_duplicate<'a>(mut ids: impl Iterator<Item = &'a Value>) -> Option<&'a Value> {
    // One id cannot repeat: a single call (the usual case) costs no set.
    let first = ids.next()?;
    let second = ids.next()?;
    let mut seen = HashSet::new();
    [first, second]
        .into_iter()
        .chain(ids)
        .find(|id| IdKey::of(id).is_some_and(|key| !seen.insert(key)))
}

/// The length of an id as JSON text.
pub fn text_len(id: &Value) -> usize {
    match id {
        // Escapes aside, a string's text is its length plus the quotes.
        Value::String(s) => s.len() + 2,
        // Integers, the usual numeric ids, without writing them out (this runs per call).
        Value::Number(n) if n.is_u64() => decimal_digits(n.as_u64().unwrap_or(0)),
        Value::Number(n) if n.is_i64() => {
            1 + decimal_digits(n.as_i64().unwrap_or(0).unsigned_abs())
        }
        other => other.to_string().len(),
    }
}

fn decimal_digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn an_ids_text_length_is_its_json_texts() {
        for text in [
            "0",
            "7",
            "9",
            "10",
            "99",
            "100",
            "-1",
            "-10",
            "-9223372036854775808",
            "18446744073709551615",
            "9223372036854775807",
            "1.5",
            "-0.25",
            "1e300",
            "\"abc\"",
            "\"\"",
            "null",
            "true",
        ] {
            let id = parse(text);
            assert_eq!(text_len(&id), id.to_string().len(), "{text}");
        }
    }

    #[test]
    fn numbers_compare_by_value_as_a_javascript_server_reads_them() {
        for (a, b) in [
            ("1", "1.0"),
            ("1", "1e0"),
            ("0", "-0"),
            ("-0", "0.0"),
            ("9007199254740993", "9007199254740992"),
        ] {
            assert!(same(&parse(a), &parse(b)), "{a} vs {b}");
        }
        assert!(!same(&json!(1), &json!(2)));
        assert!(!same(&json!(1), &json!("1")), "a string is not a number");
        assert!(same(&json!("a"), &json!("a")));
        assert!(!same(&json!("a"), &json!("A")));
    }

    #[test]
    fn duplicates_are_found_by_value() {
        let ids = [parse("1"), parse("\"x\""), parse("1.0")];
        assert_eq!(first_duplicate(ids.iter()), Some(&ids[2]));
        let ids = [json!(1), json!("1"), json!(null)];
        assert_eq!(first_duplicate(ids.iter()), None);
        let ids = [json!(null), json!(null)];
        assert!(first_duplicate(ids.iter()).is_some());
        let ids = [json!(2), json!(1), json!(2)];
        assert_eq!(
            first_duplicate(ids.iter()),
            Some(&ids[2]),
            "the first two ids count"
        );
        assert_eq!(first_duplicate([json!(7)].iter()), None);
        assert_eq!(first_duplicate([].iter()), None);
    }
}
