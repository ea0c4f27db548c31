//! The JSON-RPC message(s) of a POST body, read for validation and policy: the `id`,
//! `method` and raw `params` of each element, borrowed from the body (nothing copied).
//!
//! A body is valid when it is one JSON-RPC 2.0 message or a non-empty array of them:
//! `"jsonrpc": "2.0"`, and either a `method` string (request or notification, with an `id`
//! that is a string, a number or null when present) or an `id` with exactly one of
//! `result`/`error` (the agent answering a gateway request).

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use smallvec::{smallvec, SmallVec};

use super::peek::{peek, RpcPeek};

/// One element of the body.
#[derive(Debug)]
pub struct Message<'a> {
    /// The element's own JSON text (the whole body for a single message).
    pub raw: &'a str,
    /// Absent for notifications; `Some(Value::Null)` for an explicit `"id": null`.
    pub id: Option<Value>,
    pub method: Option<Cow<'a, str>>,
    pub params: Option<&'a RawValue>,
}

/// The parameters of a `tools/call`.
#[derive(Debug, Deserialize)]
pub struct CallParams<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub arguments: Option<&'a RawValue>,
}

impl<'a> Message<'a> {
    pub fn is_request(&self) -> bool {
        self.method.is_some() && self.id.is_some()
    }

    /// The tool a `tools/call` names, or why it cannot be read.
    pub fn call_params(&self) -> Result<CallParams<'a>, String> {
        let params = self
            .params
            .ok_or("tools/call without params; a tool name is required")?;
        serde_json::from_str::<CallParams<'a>>(params.get())
            .map_err(|e| format!("tools/call params must name the tool: {e}"))
    }
}

/// What the body held.
#[derive(Debug)]
pub struct Body<'a> {
    pub batch: bool,
    /// One message inline: a single message (nearly every request) is not allocated.
    pub messages: SmallVec<[Message<'a>; 1]>,
}

/// A POST body read once: the verdict of [`parse`] for validation and policy, and the
/// view of it (`id`s, `method`) that error answers, logs and metrics use.
pub struct Post<'a> {
    pub body: Result<Body<'a>, Invalid>,
    pub rpc: RpcPeek,
}

/// Parses a POST body once. Only a body the parse refuses is looked at again, leniently
/// (see [`peek`]), so that the error it gets still carries what id it had.
pub fn read(bytes: &[u8]) -> Post<'_> {
    let body = parse(bytes);
    let rpc = match &body {
        Ok(body) => RpcPeek::of(body),
        // Text that is not JSON is not JSON to the lenient reading either (same grammar,
        // same limits); only bytes that are not UTF-8 may still hold a readable id.
        Err(Invalid::NotJson(_)) if std::str::from_utf8(bytes).is_ok() => RpcPeek::Unreadable,
        Err(_) => peek(bytes),
    };
    Post { body, rpc }
}

/// Why the body is not JSON-RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// Not JSON at all (JSON-RPC -32700).
    NotJson(String),
    /// JSON, but not a JSON-RPC message or batch (-32600).
    NotJsonRpc(String),
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<Text<'a>>,
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    #[serde(borrow, default)]
    method: Option<Text<'a>>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present_any")]
    result: Option<()>,
    #[serde(default, deserialize_with = "present_any")]
    error: Option<()>,
}

/// A string borrowed from the body unless it has escapes. serde borrows a `Cow<str>`
/// only when it is the field itself: inside an `Option` it always made a `String` (two
/// allocations per request for `jsonrpc` and `method`).
#[derive(Deserialize)]
#[serde(transparent)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn present_any<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<()>, D::Error> {
    IgnoredAny::deserialize(d).map(|_| Some(()))
}

pub fn parse(body: &[u8]) -> Result<Body<'_>, Invalid> {
    let text =
        std::str::from_utf8(body).map_err(|e| Invalid::NotJson(format!("not UTF-8 text ({e})")))?;
    match text.trim_start().as_bytes().first() {
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(classify)?;
            if items.is_empty() {
                return Err(Invalid::NotJsonRpc("an empty batch".into()));
            }
            let messages = items
                .into_iter()
                .enumerate()
                .map(|(i, raw)| {
                    element(raw.get()).map_err(|e| match e {
                        Invalid::NotJsonRpc(why) => {
                            Invalid::NotJsonRpc(format!("batch element {i}: {why}"))
                        }
                        other => other,
                    })
                })
                .collect::<Result<SmallVec<_>, _>>()?;
            Ok(Body {
                batch: true,
                messages,
            })
        }
        Some(b'{') => Ok(Body {
            batch: false,
            messages: smallvec![element(text)?],
        }),
        _ => Err(match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => Invalid::NotJsonRpc("not an object or an array of objects".into()),
            Err(e) => classify(e),
        }),
    }
}

fn element(raw: &str) -> Result<Message<'_>, Invalid> {
    if !raw.trim_start().starts_with('{') {
        return Err(Invalid::NotJsonRpc("not an object".into()));
    }
    let wire: Wire<'_> = serde_json::from_str(raw).map_err(classify)?;
    if wire.jsonrpc.as_ref().map(|v| &*v.0) != Some("2.0") {
        return Err(Invalid::NotJsonRpc("\"jsonrpc\" must be \"2.0\"".into()));
    }
    if let Some(id) = &wire.id {
        if !(id.is_string() || id.is_number() || id.is_null()) {
            return Err(Invalid::NotJsonRpc(
                "\"id\" must be a string, a number or null".into(),
            ));
        }
    }
    match (&wire.method, wire.result.is_some(), wire.error.is_some()) {
        (Some(_), false, false) => {}
        (None, true, false) | (None, false, true) if wire.id.is_some() => {}
        (Some(_), _, _) => {
            return Err(Invalid::NotJsonRpc(
                "a request must not carry \"result\" or \"error\"".into(),
            ))
        }
        _ => return Err(Invalid::NotJsonRpc(
            "neither a request (\"method\") nor a response (\"id\" with \"result\" or \"error\")"
                .into(),
        )),
    }
    Ok(Message {
        raw,
        id: wire.id,
        method: wire.method.map(|m| m.0),
        params: wire.params,
    })
}

fn classify(e: serde_json::Error) -> Invalid {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => Invalid::NotJsonRpc(e.to_string()),
        Category::Syntax | Category::Eof | Category::Io => Invalid::NotJson(e.to_string()),
    }
}

/// The body that forwards only `kept` (elements of a batch), as a batch.
pub fn rebatch(kept: &[&Message<'_>]) -> String {
    let len = kept.iter().map(|m| m.raw.len() + 1).sum::<usize>() + 1;
    let mut out = String::with_capacity(len);
    out.push('[');
    for (i, m) in kept.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(m.raw);
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn invalid(body: &str) -> Invalid {
        parse(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn the_method_is_borrowed_from_the_body_unless_escaped() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let parsed = parse(body).unwrap();
        assert!(matches!(
            parsed.messages[0].method,
            Some(Cow::Borrowed("tools/list"))
        ));
        let body = br#"{"jsonrpc":"2\u002e0","id":1,"method":"tools\/call"}"#;
        let parsed = parse(body).unwrap();
        assert!(matches!(
            &parsed.messages[0].method,
            Some(Cow::Owned(m)) if m == "tools/call"
        ));
        assert!(matches!(
            invalid(r#"{"jsonrpc":"2.1","id":1,"method":"ping"}"#),
            Invalid::NotJsonRpc(_)
        ));
        assert!(matches!(
            invalid(r#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#),
            Invalid::NotJsonRpc(_)
        ));
    }

    #[test]
    fn reads_requests_notifications_and_responses() {
        let b = parse(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"DemoTarget___echo","arguments":{"text":"hi"}}}"#).unwrap();
        assert!(!b.batch);
        let m = &b.messages[0];
        assert_eq!(m.id, Some(json!(7)));
        assert_eq!(m.method.as_deref(), Some("tools/call"));
        let call = m.call_params().unwrap();
        assert_eq!(call.name, "DemoTarget___echo");
        assert_eq!(call.arguments.unwrap().get(), r#"{"text":"hi"}"#);
        let n = parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(n.messages[0].id, None);
        assert!(!n.messages[0].is_request());
        let r = parse(br#"{"jsonrpc":"2.0","id":"s1","result":{}}"#).unwrap();
        assert_eq!(r.messages[0].method, None);
        parse(br#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"x"}}"#).unwrap();
    }

    #[test]
    fn batches_keep_each_element_text() {
        let b = parse(
            br#" [ {"jsonrpc":"2.0","id":1,"method":"ping"} , {"jsonrpc":"2.0","method":"n"} ] "#,
        )
        .unwrap();
        assert!(b.batch);
        assert_eq!(
            b.messages[0].raw,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#
        );
        assert_eq!(
            rebatch(&[&b.messages[1], &b.messages[0]]),
            r#"[{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":1,"method":"ping"}]"#
        );
    }

    #[test]
    fn tells_not_json_from_not_json_rpc() {
        assert!(matches!(invalid("{not json"), Invalid::NotJson(_)));
        assert!(matches!(invalid(""), Invalid::NotJson(_)));
        assert!(matches!(invalid("[1,"), Invalid::NotJson(_)));
        assert!(matches!(invalid("\u{0}"), Invalid::NotJson(_)));
        assert!(matches!(
            parse(&[0xff, 0xfe]).unwrap_err(),
            Invalid::NotJson(_)
        ));
        for body in [
            "42",
            "\"text\"",
            "[]",
            "[1]",
            r#"{"id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#,
            r#"{"jsonrpc":"2.0","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}"#,
        ] {
            assert!(
                matches!(invalid(body), Invalid::NotJsonRpc(_)),
                "{body}: {:?}",
                parse(body.as_bytes())
            );
        }
        let Invalid::NotJsonRpc(why) =
            invalid(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0"}]"#)
        else {
            panic!()
        };
        assert!(why.starts_with("batch element 1: "), "{why}");
    }

    #[test]
    fn call_params_must_name_the_tool() {
        let b =
            parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#)
                .unwrap();
        assert!(b.messages[0].call_params().is_err());
        let b = parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
        )
        .unwrap();
        assert!(
            b.messages[0].call_params().is_err(),
            "duplicate names are not guessed at"
        );
        let b =
            parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\u0062"}}"#)
                .unwrap();
        assert_eq!(b.messages[0].call_params().unwrap().name, "ab");
    }
}
