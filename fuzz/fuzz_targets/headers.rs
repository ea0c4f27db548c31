//! The rewrite of the agent's headers for the gateway (`proxy::rewrite_request_headers`):
//! whatever the agent sends, no hop-by-hop header, no header its `Connection` names, no
//! `Host`, no `Content-Length` and (unless passed through) no `Authorization` reaches
//! the gateway, and every other header arrives unchanged.
//!
//! Input: one byte of flags, then `name: value` lines.
#![no_main]

use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mcp_vpce_proxy::proxy::forward::rewrite_request_headers;

const ALWAYS_REMOVED: [&str; 11] = [
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
    "content-length",
];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, lines)) = data.split_first() else {
        return;
    };
    let keep_authorization = flags & 1 == 1;
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

    // The names every Connection header lists are hop-by-hop too (RFC 9110 7.6.1).
    let named: Vec<String> = original
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    for name in original.keys() {
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
    assert!(headers.keys().all(|k| original.contains_key(k)));
});
