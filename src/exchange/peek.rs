//! A look at the JSON-RPC message(s) of a POST body: the `id` and `method` of each, so
//! that errors can carry the request's own id and logs can name the MCP method. A body
//! that is not JSON-RPC is not an error here: the gateway judges MCP.
//!
//! The body is parsed once, by [`message::read`](super::message::read): the view of a
//! valid body is taken from that parse ([`RpcPeek::of`]); only a body the parse refuses
//! gets the lenient reading of [`peek`], so that its error answer can still echo the id.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::message::{Body, Message};
use crate::ops::metrics::rpc_method_label;

/// One message as far as we care.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RpcMessage {
    /// Absent for notifications. `Some(Value::Null)` is an explicit `"id": null`.
    #[serde(default, deserialize_with = "present")]
    pub id: Option<Value>,
    /// An MCP method's name is the static one (no allocation per request); any other
    /// name is owned.
    #[serde(default)]
    pub method: Option<Cow<'static, str>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// What the body held.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum RpcPeek {
    /// Not JSON, or JSON that is not a message object or an array of them.
    #[default]
    Unreadable,
    Single(RpcMessage),
    Batch(Vec<RpcMessage>),
}

impl RpcPeek {
    /// The view of a body `message::parse` accepted: what [`peek`] reads from it, taken
    /// from that parse instead of a second one.
    pub fn of(body: &Body<'_>) -> RpcPeek {
        let view = |m: &Message<'_>| RpcMessage {
            id: m.id.clone(),
            method: m
                .method
                .as_deref()
                .map(|name| match rpc_method_label(name) {
                    known if known == name => Cow::Borrowed(known),
                    _ => Cow::Owned(name.to_string()),
                }),
        };
        if body.batch {
            RpcPeek::Batch(body.messages.iter().map(view).collect())
        } else {
            body.messages
                .first()
                .map(view)
                .map_or(RpcPeek::Unreadable, RpcPeek::Single)
        }
    }

    /// The method for logs: the message's method, `batch` for a batch, `-` otherwise.
    pub fn method_label(&self) -> &str {
        match self {
            RpcPeek::Single(m) => m.method.as_deref().unwrap_or("-"),
            RpcPeek::Batch(_) => "batch",
            RpcPeek::Unreadable => "-",
        }
    }
}

/// The lenient reading, for a body `message::parse` refused.
pub fn peek(body: &[u8]) -> RpcPeek {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'{') => serde_json::from_slice::<RpcMessage>(body)
            .map(RpcPeek::Single)
            .unwrap_or_default(),
        Some(b'[') => serde_json::from_slice::<Vec<RpcMessage>>(body)
            .map(RpcPeek::Batch)
            .unwrap_or_default(),
        _ => RpcPeek::Unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_id_and_method_of_a_request() {
        let p = peek(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","arguments":{"a":[1,2]}}}"#);
        assert_eq!(
            p,
            RpcPeek::Single(RpcMessage {
                id: Some(json!(7)),
                method: Some("tools/call".into())
            })
        );
        assert_eq!(p.method_label(), "tools/call");
    }

    #[test]
    fn tells_notifications_and_null_ids_apart() {
        let RpcPeek::Single(n) = peek(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        else {
            panic!()
        };
        assert_eq!(n.id, None);
        let RpcPeek::Single(m) = peek(br#"{"jsonrpc":"2.0","id":null,"method":"x"}"#) else {
            panic!()
        };
        assert_eq!(m.id, Some(Value::Null));
    }

    #[test]
    fn the_view_of_a_parse_is_what_peek_reads() {
        for body in [
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":"s1","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"a\u0062"}"#,
            r#" [{"jsonrpc":"2.0","id":"a","method":"ping"},{"jsonrpc":"2.0","method":"n"}]"#,
        ] {
            let parsed = crate::exchange::message::parse(body.as_bytes()).unwrap();
            assert_eq!(RpcPeek::of(&parsed), peek(body.as_bytes()), "{body}");
        }
    }

    #[test]
    fn an_mcp_method_is_the_static_name_and_any_other_is_owned() {
        for (body, borrowed) in [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#,
                true,
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                true,
            ),
            (r#"{"jsonrpc":"2.0","id":1,"method":"vendor/thing"}"#, false),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/cal\u006c"}"#,
                true,
            ),
        ] {
            let parsed = crate::exchange::message::parse(body.as_bytes()).unwrap();
            assert!(!parsed.messages.spilled(), "one message is kept inline");
            let RpcPeek::Single(m) = RpcPeek::of(&parsed) else {
                panic!("{body}")
            };
            let method = m.method.unwrap();
            assert_eq!(matches!(method, Cow::Borrowed(_)), borrowed, "{body}");
            assert_eq!(Some(&*method), parsed.messages[0].method.as_deref());
        }
    }

    #[test]
    fn reads_batches_and_tolerates_garbage() {
        let p = peek(
            br#" [{"jsonrpc":"2.0","id":"a","method":"ping"},{"jsonrpc":"2.0","method":"n"}]"#,
        );
        let RpcPeek::Batch(items) = p else { panic!() };
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].id, Some(json!("a")));
        assert_eq!(peek(b"{not json"), RpcPeek::Unreadable);
        assert_eq!(peek(b""), RpcPeek::Unreadable);
        assert_eq!(peek(b"42"), RpcPeek::Unreadable);
        assert_eq!(
            peek(br#"{"id":{"deep":[1]},"method":5}"#),
            RpcPeek::Unreadable
        );
    }
}
