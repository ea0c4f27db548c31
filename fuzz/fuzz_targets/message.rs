//! The JSON-RPC validation of a POST body (`exchange::message::parse`) and the batch the
//! policy rebuilds from the elements it keeps: never a panic, and a rebuilt batch parses
//! back to the same messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_vpce_proxy::exchange::message::{parse, rebatch};
use serde::de::IgnoredAny;

fuzz_target!(|body: &[u8]| {
    let Ok(parsed) = parse(body) else {
        return;
    };
    for message in &parsed.messages {
        // JSON by the grammar (IgnoredAny, like the parser, has no range limit on
        // numbers: `2E779` is valid JSON that `Value` refuses as out of range).
        assert!(serde_json::from_str::<IgnoredAny>(message.raw).is_ok());
        assert!(message.raw.trim_start().starts_with('{'));
        let _ = message.is_request();
        let _ = message.call_params();
    }
    let kept: Vec<_> = parsed.messages.iter().collect();
    let rebuilt = rebatch(&kept);
    let again = parse(rebuilt.as_bytes()).expect("a rebuilt batch is valid JSON-RPC");
    assert!(again.batch);
    assert_eq!(again.messages.len(), parsed.messages.len());
    for (a, b) in again.messages.iter().zip(&parsed.messages) {
        assert_eq!(a.id, b.id);
        assert_eq!(a.method, b.method);
    }
});
