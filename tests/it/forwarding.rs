//! An MCP session through the proxy with a real MCP client (rmcp) and a real MCP server
//! (rmcp over TLS), in both PrivateLink modes: initialize, tools/list, tools/call, a
//! tool streaming progress over SSE, the GET event stream and DELETE.

use std::time::Duration;

use crate::common::client;
use crate::common::proxy::{Mode, Setup};
use http::Method;
use serde_json::json;

async fn full_session(mode: Mode) {
    let s = Setup::start(mode).await;
    let agent = client::connect(&s.proxy.url()).await;

    let tools = agent.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(names.contains(&"DemoTarget___get_weather"), "{names:?}");

    let result = client::call_tool(
        &agent,
        "DemoTarget___get_weather",
        json!({"city": "Seattle"}),
    )
    .await;
    assert_eq!(
        client::first_text(&result),
        Some("Weather in Seattle: 22°C, sunny")
    );

    // The tool sends its first progress event, then waits until the test releases it:
    // the event can only arrive here if the proxy streams SSE events as they come.
    let mut progress = agent.service().take_progress();
    let call = client::start_tool_call(&agent, "DemoTarget___slow_progress", json!({})).await;
    let first = tokio::time::timeout(Duration::from_secs(10), progress.recv())
        .await
        .expect("the first progress event reaches the agent while the tool still runs")
        .expect("progress channel open");
    assert_eq!(first.progress_token, call.progress_token);
    assert_eq!(first.progress, 1.0);
    s.upstream.release_progress();
    let done = call.result().await.expect("slow_progress result");
    assert_eq!(client::first_text(&done), Some("done"));

    agent.cancel().await.expect("client closes the session");

    let seen = s.upstream.requests();
    let get = seen
        .iter()
        .find(|r| r.method == Method::GET)
        .expect("the GET event stream reached the gateway");
    assert_eq!(get.status, 200);
    assert_eq!(get.path, "/mcp");
    let delete = seen
        .iter()
        .find(|r| r.method == Method::DELETE)
        .expect("DELETE reached the gateway");
    assert!(delete.status < 300, "DELETE answered {}", delete.status);
    assert!(delete.headers.contains_key("mcp-session-id"));
    for r in &seen {
        assert!(
            r.status < 300,
            "{} {} answered {}",
            r.method,
            r.path,
            r.status
        );
    }
}

#[tokio::test]
async fn mcp_session_with_private_dns_on() {
    full_session(Mode::PrivateDnsOn).await;
}

#[tokio::test]
async fn mcp_session_with_private_dns_off() {
    full_session(Mode::PrivateDnsOff).await;
}

#[tokio::test]
async fn mcp_headers_reach_the_gateway_untouched() {
    let s = Setup::start(Mode::PrivateDnsOff).await;
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let agent = client::connect_with_headers(&s.proxy.url(), &[("traceparent", traceparent)]).await;
    agent.list_all_tools().await.unwrap();
    let seen = s.upstream.requests();
    let list = seen.last().unwrap();
    assert_eq!(list.headers["traceparent"], traceparent);
    assert!(list.headers.contains_key("mcp-session-id"));
    assert!(list.headers.contains_key("mcp-protocol-version"));
    assert_eq!(list.headers["content-type"], "application/json");
    assert!(list.headers["accept"]
        .to_str()
        .unwrap()
        .contains("text/event-stream"));
    agent.cancel().await.unwrap();
}
