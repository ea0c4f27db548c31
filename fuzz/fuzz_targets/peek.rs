//! The JSON-RPC peek of a POST body, which reads whatever an agent sends: it never
//! panics, and what it calls a message or a batch is JSON of that shape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_vpce_proxy::mcp::peek::{peek, RpcPeek};
use serde_json::Value;

fuzz_target!(|body: &[u8]| {
    let peeked = peek(body);
    let _ = peeked.method_label();
    let parsed = serde_json::from_slice::<Value>(body);
    match peeked {
        RpcPeek::Single(_) => assert!(parsed.is_ok_and(|v| v.is_object())),
        RpcPeek::Batch(_) => assert!(parsed.is_ok_and(|v| v.is_array())),
        RpcPeek::Unreadable => {}
    }
});
