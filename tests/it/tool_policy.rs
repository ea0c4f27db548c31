//! Least privilege per route: refused tools are invisible in tools/list (JSON and SSE
//! answers, across pages) and in the gateway's search results, and calling one is answered
//! by the proxy without the gateway ever seeing it; batches are judged element by element.

use crate::common::client;
use crate::common::http::{assert_rpc_error, post_rpc};
use crate::common::proxy::{Mode, Setup};
use crate::common::upstream::{BatchAnswers, UpstreamOptions};
use rmcp::ServiceError;
use serde_json::{json, Value};

const POLICY: &str = r#"
[route.policy]
allow_tools = ["DemoTarget___*", "x_amz_bedrock_agentcore_search"]
deny_tools = ["*___delete_*", "DemoTarget___slow_progress"]
"#;

/// What the policy leaves of the fixture's six tools.
const VISIBLE: [&str; 4] = [
    "DemoTarget___echo",
    "DemoTarget___fail",
    "DemoTarget___get_weather",
    "x_amz_bedrock_agentcore_search",
];

const REFUSED_MESSAGE: &str = "mcp-vpce-proxy: route mcp: tool \"OtherTarget___delete_everything\" is not allowed by this route's tool policy";

fn options(json: bool, page_size: Option<usize>) -> UpstreamOptions {
    UpstreamOptions {
        json_response: json,
        page_size,
        record_bodies: true,
        ..UpstreamOptions::default()
    }
}

/// The bodies of the requests the gateway saw that mention `needle`.
fn seen_with(s: &Setup, needle: &str) -> usize {
    s.upstream
        .requests()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains(needle))
        .count()
}

async fn listed_names(s: &Setup) -> Vec<String> {
    let agent = client::connect(&s.proxy.url()).await;
    let tools = agent.list_all_tools().await.expect("tools/list");
    agent.cancel().await.unwrap();
    tools.iter().map(|t| t.name.to_string()).collect()
}

#[tokio::test]
async fn refused_tools_are_invisible_in_sse_tools_list_across_pages() {
    let s = Setup::start_with(Mode::PrivateDnsOff, options(false, Some(2)), POLICY).await;
    assert_eq!(listed_names(&s).await, VISIBLE);
    // Three pages of two: the cursor of each filtered page reached the agent.
    assert_eq!(seen_with(&s, "\"tools/list\""), 3);
}

#[tokio::test]
async fn refused_tools_are_invisible_in_json_tools_list_across_pages() {
    // Pages of one: two of the six pages are left empty, and still carry their cursor.
    let s = Setup::start_with(Mode::PrivateDnsOff, options(true, Some(1)), POLICY).await;
    assert_eq!(listed_names(&s).await, VISIBLE);
    assert_eq!(seen_with(&s, "\"tools/list\""), 6);
}

#[tokio::test]
async fn without_a_policy_every_tool_is_listed() {
    let s = Setup::start_with(Mode::PrivateDnsOff, options(false, None), "").await;
    assert_eq!(listed_names(&s).await.len(), 6);
}

#[tokio::test]
async fn a_refused_call_is_answered_by_the_proxy_and_never_reaches_the_gateway() {
    for json in [false, true] {
        let s = Setup::start_with(Mode::PrivateDnsOff, options(json, None), POLICY).await;
        let agent = client::connect(&s.proxy.url()).await;
        for tool in [
            "OtherTarget___delete_everything",
            "DemoTarget___slow_progress",
        ] {
            let err = client::try_call_tool(&agent, tool, json!({}))
                .await
                .expect_err("refused");
            let ServiceError::McpError(e) = err else {
                panic!("a JSON-RPC error for the call, got {err:?}")
            };
            assert_eq!(e.code.0, -31010);
            assert_eq!(
                e.message,
                format!("mcp-vpce-proxy: route mcp: tool \"{tool}\" is not allowed by this route's tool policy")
            );
            assert_eq!(
                e.data,
                Some(json!({"source": "proxy", "reason": "tool_refused", "route": "mcp"}))
            );
            assert_eq!(seen_with(&s, tool), 0, "{tool} reached the gateway");
        }
        // The session goes on: allowed tools still work.
        let ok =
            client::call_tool(&agent, "DemoTarget___echo", json!({"text": "still here"})).await;
        assert_eq!(client::first_text(&ok), Some("still here"));
        agent.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn the_refusal_is_a_json_rpc_error_with_the_request_id() {
    let s = Setup::start_with(Mode::PrivateDnsOff, options(false, None), POLICY).await;
    let answer = post_rpc(
        &s.proxy.url(),
        r#"{"jsonrpc":"2.0","id":"call-9","method":"tools/call","params":{"name":"OtherTarget___delete_everything","arguments":{}}}"#,
    )
    .await;
    assert_rpc_error(&answer, 200, -31010, json!("call-9"), REFUSED_MESSAGE);
    assert!(s.upstream.requests().is_empty());
    assert_eq!(s.upstream.connections(), 0);
}

#[tokio::test]
async fn search_results_are_filtered() {
    for json in [false, true] {
        let s = Setup::start_with(Mode::PrivateDnsOff, options(json, None), POLICY).await;
        let agent = client::connect(&s.proxy.url()).await;
        let result = client::call_tool(
            &agent,
            "x_amz_bedrock_agentcore_search",
            json!({"query": "delete things"}),
        )
        .await;
        let names = |tools: &Value| -> Vec<String> {
            tools
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_string())
                .collect()
        };
        let structured = result
            .structured_content
            .clone()
            .expect("structuredContent");
        assert_eq!(names(&structured["tools"]), VISIBLE, "json: {json}");
        let text: Value = serde_json::from_str(client::first_text(&result).unwrap()).unwrap();
        assert_eq!(names(&text["tools"]), VISIBLE, "json: {json}");
        agent.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn batches_are_judged_element_by_element_json() {
    let s = Setup::start_with(
        Mode::PrivateDnsOff,
        UpstreamOptions {
            batches: Some(BatchAnswers::Json),
            ..UpstreamOptions::default()
        },
        POLICY,
    )
    .await;
    let refused = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"OtherTarget___delete_everything"}}"#;
    let allowed = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"DemoTarget___echo","arguments":{"text":"x"}}}"#;
    let list = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#;
    let refused_note = r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"OtherTarget___delete_everything"}}"#;
    let answer = post_rpc(
        &s.proxy.url(),
        &format!("[{refused}, {allowed}, {list}, {refused_note}]"),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-type"], "application/json");
    let mut all = answer.json().as_array().unwrap().clone();
    all.sort_by_key(|m| m["id"].as_i64());
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(all[0]["error"]["code"], -31010);
    assert_eq!(all[0]["error"]["message"], REFUSED_MESSAGE);
    assert_eq!(
        all[1]["result"]["content"][0]["text"],
        "called DemoTarget___echo"
    );
    let listed: Vec<&str> = all[2]["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, VISIBLE);
    // The gateway got exactly the elements that were allowed.
    let seen = s.upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        String::from_utf8_lossy(&seen[0].body),
        format!("[{allowed},{list}]")
    );
}

#[tokio::test]
async fn batch_refusals_come_first_as_events_of_their_own_in_sse_answers() {
    let s = Setup::start_with(
        Mode::PrivateDnsOff,
        UpstreamOptions {
            batches: Some(BatchAnswers::Sse),
            ..UpstreamOptions::default()
        },
        POLICY,
    )
    .await;
    let answer = post_rpc(
        &s.proxy.url(),
        r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"OtherTarget___delete_everything"}},
            {"jsonrpc":"2.0","id":3,"method":"tools/list"}]"#,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-type"], "text/event-stream");
    let events: Vec<Value> = answer
        .body
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{}", answer.body);
    assert_eq!(events[0]["id"], 1);
    assert_eq!(events[0]["error"]["code"], -31010);
    assert_eq!(events[1]["id"], 3);
    assert_eq!(
        events[1]["result"]["tools"].as_array().unwrap().len(),
        VISIBLE.len()
    );
}

#[tokio::test]
async fn a_batch_with_nothing_left_is_answered_without_the_gateway() {
    let s = Setup::start_with(
        Mode::PrivateDnsOff,
        UpstreamOptions {
            batches: Some(BatchAnswers::Json),
            ..UpstreamOptions::default()
        },
        POLICY,
    )
    .await;
    let answer = post_rpc(
        &s.proxy.url(),
        r#"[{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"OtherTarget___delete_everything"}},
            {"jsonrpc":"2.0","id":"b","method":"tools/call","params":{"name":"DemoTarget___slow_progress"}}]"#,
    )
    .await;
    assert_eq!(answer.status, 200);
    let all = answer.json();
    assert_eq!(all[0]["id"], "a");
    assert_eq!(all[0]["error"]["message"], REFUSED_MESSAGE);
    assert_eq!(all[1]["id"], "b");
    assert_eq!(all[1]["error"]["code"], -31010);
    assert!(s.upstream.requests().is_empty());
}

#[tokio::test]
async fn refused_calls_beside_notifications_still_get_their_answer() {
    // The gateway answers the notification left over with 202 and no body; the proxy
    // turns that into a 200 carrying the refusal.
    let s = Setup::start_with(
        Mode::PrivateDnsOff,
        UpstreamOptions {
            batches: Some(BatchAnswers::Json),
            ..UpstreamOptions::default()
        },
        POLICY,
    )
    .await;
    let answer = post_rpc(
        &s.proxy.url(),
        r#"[{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"OtherTarget___delete_everything"}},
            {"jsonrpc":"2.0","method":"notifications/progress","params":{}}]"#,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-type"], "application/json");
    let all = answer.json();
    assert_eq!(
        all,
        json!([{
            "jsonrpc": "2.0", "id": 7,
            "error": {"code": -31010, "message": REFUSED_MESSAGE, "data": {"source": "proxy", "reason": "tool_refused", "route": "mcp"}}
        }])
    );
    assert_eq!(s.upstream.requests().len(), 1);
}

#[tokio::test]
async fn methods_outside_allow_methods_are_refused() {
    let s = Setup::start_with(
        Mode::PrivateDnsOff,
        options(false, None),
        "[route.policy]\nallow_methods = [\"initialize\", \"notifications/*\", \"tools/*\", \"ping\"]\n",
    )
    .await;
    let answer = post_rpc(
        &s.proxy.url(),
        r#"{"jsonrpc":"2.0","id":4,"method":"resources/list"}"#,
    )
    .await;
    assert_rpc_error(
        &answer,
        200,
        -31011,
        json!(4),
        "mcp-vpce-proxy: route mcp: method \"resources/list\" is not allowed by this route's policy",
    );
    assert!(s.upstream.requests().is_empty());
    // Allowed methods work as before.
    let agent = client::connect(&s.proxy.url()).await;
    assert_eq!(agent.list_all_tools().await.unwrap().len(), 6);
    agent.cancel().await.unwrap();
}

#[tokio::test]
async fn a_tools_list_too_large_to_filter_is_withheld() {
    let too_small = format!("{POLICY}max_filter_bytes = 200\n");
    for json in [false, true] {
        let s = Setup::start_with(Mode::PrivateDnsOff, options(json, None), &too_small).await;
        let agent = client::connect(&s.proxy.url()).await;
        let err = agent.list_all_tools().await.expect_err("withheld");
        let ServiceError::McpError(e) = err else {
            panic!("a JSON-RPC error, got {err:?}")
        };
        assert_eq!(e.code.0, -31014);
        assert_eq!(
            e.message,
            "mcp-vpce-proxy: route mcp: the gateway's answer listing tools is larger than \
             policy.max_filter_bytes (200 bytes), the most the tool policy filters; it is \
             withheld rather than shown unfiltered"
        );
        agent.cancel().await.unwrap();
    }
}
