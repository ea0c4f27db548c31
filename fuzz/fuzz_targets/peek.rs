//! The JSON-RPC peek of a POST body, which reads whatever an agent sends: it never
//! panics, and what it calls a message or a batch is JSON of that shape. (Only for
//! UTF-8 bodies: serde skips the fields it ignores without checking their UTF-8, and the
//! peek only labels logs and errors; `message` is the target that judges bodies.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_vpce_proxy::exchange::peek::{peek, RpcPeek};
use serde::de::IgnoredAny;

fuzz_target!(|body: &[u8]| {
    let peeked = peek(body);
    let _ = peeked.method_label();
    if std::str::from_utf8(body).is_err() {
        return;
    }
    // JSON by the grammar (IgnoredAny has no range limit on numbers, like the peek:
    // `1.6E6666` is valid JSON that `Value` refuses as out of range), and of the shape the
    // peek says.
    let json = serde_json::from_slice::<IgnoredAny>(body).is_ok();
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match peeked {
        RpcPeek::Single(_) => assert!(json && first == Some(&b'{')),
        RpcPeek::Batch(_) => assert!(json && first == Some(&b'[')),
        RpcPeek::Unreadable => {}
    }
});
