//! The rewrite of the agent's headers for the gateway (`proxy::rewrite_request_headers`,
//! then `upstream::content_length::declare`): whatever the agent sends, no hop-by-hop
//! header, no header its `Connection` names, no `Host` and (unless passed through) no
//! `Authorization` reaches the gateway; the `Content-Length` is exactly the length of the
//! body sent, whatever the agent declared; every other header arrives unchanged.
//!
//! Input: one byte of flags (bit 0: pass `Authorization` through; the other bits: the
//! length of the body sent, 0 to 127), then `name: value` lines.
#![no_main]

use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mcp_vpce_proxy::proxy::forward::rewrite_request_headers;
use mcp_vpce_proxy::upstream::content_length;

const ALWAYS_REMOVED: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, lines)) = data.split_first() else {
        return;
    };
    let keep_authorization = flags & 1 == 1;
    let sent = usize::from(flags >> 1);
    let mut headers = HeaderMap::new();
    for line in lines.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    let original = headers.clone();
    rewrite_request_headers(&mut headers, keep_authorization);
    content_length::declare(&mut headers, &http::Method::POST, sent);
    let declared: Vec<_> = headers.get_all("content-length").iter().collect();
    assert_eq!(declared, [sent.to_string().as_str()], "the length sent is declared");

    // The names every Connection header lists are hop-by-hop too (RFC 9110 7.6.1).
    let named: Vec<String> = original
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    for name in original.keys().filter(|name| *name != "content-length") {
        let removed = ALWAYS_REMOVED.contains(&name.as_str())
            || named.iter().any(|n| n == name.as_str())
            || (name == "authorization" && !keep_authorization);
        if removed {
            assert!(!headers.contains_key(name), "{name} reached the gateway");
        } else {
            let before: Vec<_> = original.get_all(name).iter().collect();
            let after: Vec<_> = headers.get_all(name).iter().collect();
            assert_eq!(before, after, "{name} was changed");
        }
    }
    assert!(headers
        .keys()
        .all(|k| original.contains_key(k) || k == "content-length"));
});
