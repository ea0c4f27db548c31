//! A look at the JSON-RPC message(s) of a POST body: the `id` and `method` of each, so
//! that errors can carry the request's own id and logs can name the MCP method. A body
//! that is not JSON-RPC is not an error here: the gateway judges MCP.

use serde::Deserialize;
use serde_json::Value;

/// One message as far as we care.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RpcMessage {
    /// Absent for notifications. `Some(Value::Null)` is an explicit `"id": null`.
    #[serde(default, deserialize_with = "present")]
    pub id: Option<Value>,
    #[serde(default)]
    pub method: Option<String>,
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
    /// The method for logs: the message's method, `batch` for a batch, `-` otherwise.
    pub fn method_label(&self) -> &str {
        match self {
            RpcPeek::Single(m) => m.method.as_deref().unwrap_or("-"),
            RpcPeek::Batch(_) => "batch",
            RpcPeek::Unreadable => "-",
        }
    }
}

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
