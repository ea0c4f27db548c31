//! The JSON-RPC peek of a POST body, which reads whatever an agent sends: it never
//! panics, and what it calls a message or a batch is JSON of that shape. (Only for
//! UTF-8 bodies: serde skips the fields it ignores without checking their UTF-8, and the
//! peek only labels logs and errors; `message` is the target that judges bodies.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_vpce_proxy::mcp::peek::{peek, RpcPeek};
use serde_json::Value;

fuzz_target!(|body: &[u8]| {
    let peeked = peek(body);
    let _ = peeked.method_label();
    if std::str::from_utf8(body).is_err() {
        return;
    }
    let parsed = serde_json::from_slice::<Value>(body);
    match peeked {
        RpcPeek::Single(_) => assert!(parsed.is_ok_and(|v| v.is_object())),
        RpcPeek::Batch(_) => assert!(parsed.is_ok_and(|v| v.is_array())),
        RpcPeek::Unreadable => {}
    }
});
