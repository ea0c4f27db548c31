//! The OAuth discovery rewrite of passthrough routes (`discovery`), which reads what the
//! gateway answers: well-known paths, URLs, metadata documents and `WWW-Authenticate`
//! challenges. Never a panic; a rewritten URL is the sidecar's; a rewritten document is
//! JSON; challenges stay as many as they were.
//!
//! Input: one byte that splits the rest into a path-or-URL and a document, which also
//! serves as a challenge.
#![no_main]

use http::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use libfuzzer_sys::fuzz_target;
use mcp_vpce_proxy::proxy::discovery::{parse, UrlMap};

const GATEWAY: &str = "gw-1.gateway.bedrock-agentcore.us-east-1.amazonaws.com";
const LOCAL: &str = "http://127.0.0.1:8080";

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(rest.len());
    let (first, document) = rest.split_at(at);
    let text = String::from_utf8_lossy(first);

    if let Some(known) = parse(&text) {
        assert_eq!(format!("{}{}", known.prefix, known.resource), text);
    }
    let map = UrlMap::new(GATEWAY, 443, "/mcp", "/agent/mcp");
    for bare in [false, true] {
        let rewriter = map.at(LOCAL, bare);
        if let Some(url) = rewriter.rewrite(&text) {
            assert!(url.starts_with(&format!("{LOCAL}/")), "{url}");
        }
        if let Some(new) = rewriter.rewrite_document(document) {
            assert!(serde_json::from_slice::<serde_json::Value>(&new).is_ok());
        }
        let mut headers = HeaderMap::new();
        for value in document.split(|b| *b == b'\n') {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.append(WWW_AUTHENTICATE, value);
            }
        }
        let count = headers.get_all(WWW_AUTHENTICATE).iter().count();
        rewriter.rewrite_challenges(&mut headers);
        assert_eq!(headers.get_all(WWW_AUTHENTICATE).iter().count(), count);
    }
});
