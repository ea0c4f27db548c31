//! MCP 2026-07-28 mirrors parts of the body in headers (`Mcp-Method`, `Mcp-Name`) so that
//! gateways and load balancers can route without reading the body. The policy judges the
//! body; a gateway that routes on the header would run what the header names. So when a
//! policy is on, headers that disagree with the body are refused with the spec's own
//! error (-32020, HTTP 400). Absent headers are fine (older protocol versions have none).

use std::borrow::Cow;

use base64::Engine;
use http::request;
use serde::Deserialize;

use crate::exchange::error::ProxyError;
use crate::exchange::message::Body;

/// What `Mcp-Name` mirrors: the tool, prompt or resource the request names.
#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    uri: Option<Cow<'a, str>>,
}

/// The mismatch between the mirrored headers and the body, if any.
pub fn header_mismatch(head: &request::Parts, body: &Body<'_>) -> Option<ProxyError> {
    let method = single(head, "mcp-method");
    let name = single(head, "mcp-name");
    let (method, name) = match (method, name) {
        (Ok(None), Ok(None)) => return None,
        (Err(e), _) | (_, Err(e)) => return Some(e),
        (Ok(method), Ok(name)) => (method, name),
    };
    let mismatch = |why: String| Some(ProxyError::HeaderMismatch(why));
    let (false, [message]) = (body.batch, body.messages.as_slice()) else {
        return mismatch("Mcp-Method/Mcp-Name headers on a batch of messages".into());
    };
    let body_method = message.method.as_deref().unwrap_or("");
    if let Some(header) = method {
        if header != body_method {
            return mismatch(format!(
                "the Mcp-Method header says {header:?} but the body's method is {body_method:?}"
            ));
        }
    }
    let header = name?;
    let Some(header) = decode(header) else {
        return mismatch("the Mcp-Name header is not valid base64 after =?base64?".into());
    };
    let named = message
        .params
        .and_then(|p| serde_json::from_str::<Named<'_>>(p.get()).ok());
    let body_name = named.as_ref().and_then(|n| match body_method {
        "resources/read" => n.uri.as_deref(),
        _ => n.name.as_deref(),
    });
    if body_name != Some(header.as_ref()) {
        return mismatch(format!(
            "the Mcp-Name header says {header:?} but the body names {}",
            body_name.map_or("nothing".to_string(), |n| format!("{n:?}"))
        ));
    }
    None
}

/// The one value of a header; two of them are a mismatch in themselves.
fn single<'h>(head: &'h request::Parts, name: &str) -> Result<Option<&'h str>, ProxyError> {
    let mut values = head.headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ProxyError::HeaderMismatch(format!(
            "more than one {name} header"
        )));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| ProxyError::HeaderMismatch(format!("the {name} header is not ASCII")))
}

/// A header value as sent: plain ASCII, or `=?base64?<base64 of UTF-8>?=`.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::message::parse;

    fn check(headers: &[(&str, &str)], body: &str) -> Option<ProxyError> {
        let mut req = http::Request::post("/mcp");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let (head, ()) = req.body(()).unwrap().into_parts();
        header_mismatch(&head, &parse(body.as_bytes()).unwrap())
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"Demo___echo","arguments":{}}}"#;

    #[test]
    fn agreeing_or_absent_headers_pass() {
        assert_eq!(check(&[], CALL), None);
        assert_eq!(
            check(
                &[("mcp-method", "tools/call"), ("mcp-name", "Demo___echo")],
                CALL
            ),
            None
        );
        assert_eq!(
            check(&[("mcp-name", "=?base64?RGVtb19fX2VjaG8=?=")], CALL),
            None
        );
        let read =
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}"#;
        assert_eq!(check(&[("mcp-name", "file:///a")], read), None);
    }

    #[test]
    fn disagreeing_headers_are_refused() {
        for headers in [
            &[("mcp-method", "tools/list")][..],
            &[("mcp-method", "Tools/Call")][..],
            &[("mcp-name", "Secret___read")][..],
            &[("mcp-name", "demo___echo")][..],
            &[("mcp-name", "=?base64?U2VjcmV0X19fcmVhZA==?=")][..],
            &[("mcp-name", "=?base64?not base64?=")][..],
            &[("mcp-name", "Demo___echo"), ("mcp-name", "Demo___echo")][..],
        ] {
            let err = check(headers, CALL);
            assert!(
                matches!(err, Some(ProxyError::HeaderMismatch(_))),
                "{headers:?}: {err:?}"
            );
        }
        let batch = format!("[{CALL}]");
        assert!(check(&[("mcp-method", "tools/call")], &batch).is_some());
        assert_eq!(
            check(&[("mcp-method", "tools/call")], CALL).map(|e| e.rpc_code()),
            None
        );
        assert_eq!(
            check(&[("mcp-method", "ping")], CALL).map(|e| e.rpc_code()),
            Some(-32020)
        );
    }
}
