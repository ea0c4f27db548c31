//! The demo gateway's MCP 2026-07-28 side: stateless requests that carry their protocol
//! version in `params._meta` and mirror it, the method and the tool name in headers
//! (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`). It validates them as the
//! specification's "Server Validation" asks of a server that reads the body (400 with
//! `-32020` HeaderMismatch, `-32022` UnsupportedProtocolVersion listing what it speaks),
//! implements `server/discover`, marks every result `resultType: "complete"` with the
//! server's identity in `_meta`, and puts `ttlMs`/`cacheScope` on the cacheable ones. It
//! neither mints nor reads sessions; an unknown method is 404 with `-32601`.
//!
//! Its own small implementation of the rules (not the proxy's `mcp::mirrored`), so that
//! the tests through the proxy check the proxy against an independent reading of them.

use std::borrow::Cow;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use super::gateway::{call, plain, rpc, tools, PROTOCOL_VERSIONS};

/// The stateless protocol version the demo gateway speaks.
pub const MODERN_VERSION: &str = "2026-07-28";
const VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";
const SERVER_INFO_META: &str = "io.modelcontextprotocol/serverInfo";
/// Freshness hints: the server's identity and versions change only with a deployment;
/// a tool list may change when a target is added.
const DISCOVER_TTL_MS: u64 = 3_600_000;
const LIST_TTL_MS: u64 = 300_000;

const HEADER_MISMATCH: i64 = -32020;
const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
const METHOD_NOT_FOUND: i64 = -32601;

/// Whether a request speaks the stateless protocol: its body names a protocol version in
/// `_meta`, or (outside `initialize`) its `MCP-Protocol-Version` header names one that
/// `initialize` does not offer, which the stateless rules then answer (HeaderMismatch, or
/// UnsupportedProtocolVersion).
pub fn is_modern(message: &Value, header: Option<&HeaderValue>) -> bool {
    if body_version(message).is_some() {
        return true;
    }
    let initialize = message.get("method").and_then(Value::as_str) == Some("initialize");
    match header.and_then(|h| h.to_str().ok()) {
        Some(version) => !initialize && !PROTOCOL_VERSIONS.contains(&version),
        None => false,
    }
}

/// The answer to a stateless request.
pub fn answer(message: &Value, headers: &HeaderMap) -> Response<Full<Bytes>> {
    let Some(id) = message.get("id").cloned() else {
        // This revision defines no header rules for notifications; accept them.
        return plain(StatusCode::ACCEPTED, "");
    };
    if let Err(error) = validate(message, headers) {
        return with_status(
            StatusCode::BAD_REQUEST,
            json!({"jsonrpc":"2.0","id":id,"error":error}),
        );
    }
    let method = message.get("method").and_then(Value::as_str).unwrap_or("");
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    let result = match method {
        "server/discover" => cacheable(
            json!({
                "supportedVersions": supported_versions(),
                "capabilities": {"tools": {}},
                "instructions": "A demo AgentCore Gateway with one target, DemoTarget.",
            }),
            DISCOVER_TTL_MS,
            "public",
        ),
        // A gateway's list can depend on who asks (its policies see the caller), so it is
        // not for sharing between credentials.
        "tools/list" => cacheable(json!({"tools": tools()}), LIST_TTL_MS, "private"),
        "tools/call" => match call(&params) {
            Ok(result) => complete(result),
            Err(error) => return rpc(json!({"jsonrpc":"2.0","id":id,"error":error}), None),
        },
        // Among them `initialize` and `ping`, which this revision removed.
        _ => {
            return with_status(
                StatusCode::NOT_FOUND,
                json!({"jsonrpc":"2.0","id":id,"error":{
                    "code": METHOD_NOT_FOUND,
                    "message": format!("Method not found: {method}"),
                }}),
            )
        }
    };
    rpc(json!({"jsonrpc":"2.0","id":id,"result":result}), None)
}

/// The specification's server validation: the mirrored headers are present, single,
/// and agree with the body; the version is one this server speaks.
fn validate(message: &Value, headers: &HeaderMap) -> Result<(), Value> {
    let mismatch = |why: String| json!({"code": HEADER_MISMATCH, "message": format!("Header mismatch: {why}")});
    let header = |name: &str| -> Result<Option<&str>, Value> {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(mismatch(format!("more than one {name} header")));
        }
        value
            .to_str()
            .map(Some)
            .map_err(|_| mismatch(format!("the {name} header is not visible ASCII")))
    };
    let Some(version) = header("mcp-protocol-version")? else {
        return Err(mismatch(
            "the MCP-Protocol-Version header is missing".into(),
        ));
    };
    if body_version(message) != Some(version) {
        return Err(mismatch(format!(
            "MCP-Protocol-Version header value '{version}' does not match the body's {VERSION_META} {}",
            body_version(message).map_or("(absent)".to_string(), |v| format!("'{v}'"))
        )));
    }
    if version != MODERN_VERSION {
        return Err(json!({
            "code": UNSUPPORTED_PROTOCOL_VERSION,
            "message": "Unsupported protocol version",
            "data": {"supported": supported_versions(), "requested": version},
        }));
    }
    let method = message.get("method").and_then(Value::as_str).unwrap_or("");
    match header("mcp-method")? {
        None => return Err(mismatch("the Mcp-Method header is missing".into())),
        Some(h) if h != method => {
            return Err(mismatch(format!(
                "Mcp-Method header value '{h}' does not match body value '{method}'"
            )))
        }
        Some(_) => {}
    }
    let field = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        _ => return Ok(()),
    };
    let body = message
        .get("params")
        .and_then(|p| p.get(field))
        .and_then(Value::as_str);
    let Some(raw) = header("mcp-name")? else {
        return Err(mismatch("the Mcp-Name header is missing".into()));
    };
    let Some(name) = decode(raw) else {
        return Err(mismatch(
            "the Mcp-Name header is not valid =?base64?...?=".into(),
        ));
    };
    if Some(name.as_ref()) != body {
        return Err(mismatch(format!(
            "Mcp-Name header value '{name}' does not match body value '{}'",
            body.unwrap_or("")
        )));
    }
    Ok(())
}

fn body_version(message: &Value) -> Option<&str> {
    message
        .get("params")?
        .get("_meta")?
        .get(VERSION_META)?
        .as_str()
}

/// Every version the gateway answers: the stateless one, then those of `initialize`.
fn supported_versions() -> Vec<&'static str> {
    std::iter::once(MODERN_VERSION)
        .chain(PROTOCOL_VERSIONS)
        .collect()
}

/// A final result: `resultType` and the server's identity.
fn complete(mut result: Value) -> Value {
    result["resultType"] = json!("complete");
    result["_meta"] = json!({
        SERVER_INFO_META: {"name": "demo-agentcore-gateway", "version": env!("CARGO_PKG_VERSION")}
    });
    result
}

/// A final result that may be cached for `ttl_ms` by whom `scope` allows.
fn cacheable(result: Value, ttl_ms: u64, scope: &str) -> Value {
    let mut result = complete(result);
    result["ttlMs"] = json!(ttl_ms);
    result["cacheScope"] = json!(scope);
    result
}

/// `Mcp-Name` as sent: plain, or `=?base64?<base64 of UTF-8>?=`.
fn decode(value: &str) -> Option<Cow<'_, str>> {
    let Some(encoded) = value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    else {
        return Some(Cow::Borrowed(value));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok().map(Cow::Owned)
}

fn with_status(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = rpc(body, None);
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn call_of(name: &str) -> Value {
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
            "name": name, "arguments": {},
            "_meta": {VERSION_META: MODERN_VERSION}}})
    }

    const GOOD: [(&str, &str); 2] = [
        ("mcp-protocol-version", MODERN_VERSION),
        ("mcp-method", "tools/call"),
    ];

    #[test]
    fn requests_are_told_apart_by_their_version() {
        let legacy = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
        assert!(!is_modern(&legacy, None));
        assert!(!is_modern(
            &legacy,
            Some(&HeaderValue::from_static("2025-06-18"))
        ));
        assert!(is_modern(
            &legacy,
            Some(&HeaderValue::from_static(MODERN_VERSION))
        ));
        assert!(is_modern(&call_of("x"), None));
        let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}});
        assert!(!is_modern(
            &init,
            Some(&HeaderValue::from_static("2099-01-01"))
        ));
    }

    #[test]
    fn the_headers_must_mirror_the_body() {
        let encoded = format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode("Zürich")
        );
        let ok = headers(&[GOOD[0], GOOD[1], ("mcp-name", &encoded)]);
        assert_eq!(validate(&call_of("Zürich"), &ok), Ok(()));
        for (pairs, why) in [
            (
                vec![GOOD[1], ("mcp-name", "x")],
                "MCP-Protocol-Version header is missing",
            ),
            (
                vec![GOOD[0], ("mcp-name", "x")],
                "Mcp-Method header is missing",
            ),
            (vec![GOOD[0], GOOD[1]], "Mcp-Name header is missing"),
            (
                vec![GOOD[0], GOOD[1], ("mcp-name", "y")],
                "'y' does not match body value 'x'",
            ),
            (
                vec![GOOD[0], ("mcp-method", "tools/list"), ("mcp-name", "x")],
                "'tools/list' does not match body value 'tools/call'",
            ),
        ] {
            let error = validate(&call_of("x"), &headers(&pairs)).unwrap_err();
            assert_eq!(error["code"], HEADER_MISMATCH);
            assert!(error["message"].as_str().unwrap().contains(why), "{error}");
        }
    }

    #[test]
    fn an_unknown_version_is_answered_with_the_supported_ones() {
        let mut message = call_of("x");
        message["params"]["_meta"][VERSION_META] = json!("2099-01-01");
        let h = headers(&[
            ("mcp-protocol-version", "2099-01-01"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "x"),
        ]);
        let error = validate(&message, &h).unwrap_err();
        assert_eq!(error["code"], UNSUPPORTED_PROTOCOL_VERSION);
        assert_eq!(error["data"]["requested"], "2099-01-01");
        assert_eq!(error["data"]["supported"][0], MODERN_VERSION);
    }
}
