//! POSTs are checked before they are forwarded (on by default, `validate = false` per
//! route turns it off): not JSON → 415 or -32700, not JSON-RPC → -32600, each with the
//! exact answer, and the gateway never sees them.

use crate::common::http::{assert_rpc_error, post_rpc, send};
use crate::common::proxy::{Mode, Setup};
use serde_json::json;

async fn post_as(url: &str, content_type: Option<&str>, body: &str) -> crate::common::http::Answer {
    let mut headers = vec![("accept", "application/json, text/event-stream")];
    if let Some(ct) = content_type {
        headers.push(("content-type", ct));
    }
    send("POST", url, &headers, body.to_string()).await
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_parse_error_with_id_null() {
    let s = Setup::start(Mode::PrivateDnsOff).await;
    let answer = post_rpc(&s.proxy.url(), "{not json").await;
    assert_rpc_error(
        &answer,
        400,
        -32700,
        json!(null),
        "mcp-vpce-proxy: route mcp: parse error: the body is not JSON: key must be a string at line 1 column 2",
    );
    assert_eq!(answer.json()["error"]["data"]["reason"], "parse_error");
    let truncated = post_rpc(&s.proxy.url(), r#"{"jsonrpc":"2.0","id":1,"#).await;
    assert_eq!(truncated.status, 400);
    assert_eq!(truncated.json()["error"]["code"], -32700);
    assert_eq!(truncated.json()["id"], json!(null));
    assert!(s.upstream.requests().is_empty());
}

#[tokio::test]
async fn json_that_is_not_json_rpc_is_an_invalid_request() {
    let s = Setup::start(Mode::PrivateDnsOff).await;
    let prefix = "mcp-vpce-proxy: route mcp: invalid request: the body is not a JSON-RPC 2.0 message or batch: ";
    let cases = [
        (
            r#"{"id":1,"method":"ping"}"#,
            json!(1),
            "\"jsonrpc\" must be \"2.0\"",
        ),
        ("[]", json!(null), "an empty batch"),
        ("42", json!(null), "not an object or an array of objects"),
        (
            r#"{"jsonrpc":"2.0","id":2}"#,
            json!(2),
            "neither a request (\"method\") nor a response (\"id\" with \"result\" or \"error\")",
        ),
        (
            r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#,
            json!(null),
            "\"id\" must be a string, a number or null",
        ),
    ];
    for (body, id, why) in cases {
        let answer = post_rpc(&s.proxy.url(), body).await;
        assert_rpc_error(&answer, 400, -32600, id, &format!("{prefix}{why}"));
    }
    assert!(s.upstream.requests().is_empty());
}

#[tokio::test]
async fn a_post_that_is_not_json_is_415() {
    let s = Setup::start(Mode::PrivateDnsOff).await;
    let body = r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#;
    let answer = post_as(&s.proxy.url(), Some("text/plain"), body).await;
    assert_rpc_error(
        &answer,
        415,
        -32600,
        json!(5),
        "mcp-vpce-proxy: route mcp: Content-Type \"text/plain\" is not supported; POST a JSON-RPC message as application/json",
    );
    let none = post_as(&s.proxy.url(), None, body).await;
    assert_rpc_error(
        &none,
        415,
        -32600,
        json!(5),
        "mcp-vpce-proxy: route mcp: Content-Type \"(none)\" is not supported; POST a JSON-RPC message as application/json",
    );
    assert!(s.upstream.requests().is_empty());
    // JSON with parameters is JSON.
    let ok = post_as(
        &s.proxy.url(),
        Some("Application/JSON; charset=utf-8"),
        body,
    )
    .await;
    assert_ne!(ok.status, 415, "{}", ok.body);
    assert_eq!(s.upstream.requests().len(), 1);
}

#[tokio::test]
async fn validation_can_be_switched_off_per_route() {
    let s = Setup::start_with(
        Mode::PrivateDnsOff,
        Default::default(),
        "[route.policy]\nvalidate = false\n",
    )
    .await;
    let answer = post_as(&s.proxy.url(), Some("text/plain"), "[]").await;
    assert!(!answer.body.contains("mcp-vpce-proxy"), "{}", answer.body);
    assert_eq!(s.upstream.requests().len(), 1, "the gateway judged it");
}

#[tokio::test]
async fn a_tool_policy_never_forwards_what_it_cannot_read() {
    let s = Setup::start_with(
        Mode::PrivateDnsOff,
        Default::default(),
        "[route.policy]\nvalidate = false\ndeny_tools = [\"OtherTarget___*\"]\n",
    )
    .await;
    let answer = post_rpc(&s.proxy.url(), "{not json").await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["error"]["code"], -32700);
    // tools/call params the policy cannot read are refused as invalid params.
    let answer = post_rpc(
        &s.proxy.url(),
        r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"DemoTarget___echo","name":"OtherTarget___delete_everything"}}"#,
    )
    .await;
    assert_rpc_error(
        &answer,
        200,
        -32602,
        json!(8),
        "mcp-vpce-proxy: route mcp: invalid params: tools/call params must name the tool: duplicate field `name` at line 1 column 34",
    );
    assert!(s.upstream.requests().is_empty());
}
