//! Per-route limits: a request rate with a burst, and POSTs in flight. Over either the
//! agent gets 429 with Retry-After (a JSON-RPC error for POSTs), and the gateway sees
//! nothing of it.

use std::time::Duration;

use crate::common::client;
use crate::common::http::{post_rpc, send};
use crate::common::proxy::{Mode, Setup};
use serde_json::json;

const PING: &str = r#"{"jsonrpc":"2.0","id":"p1","method":"ping"}"#;

#[tokio::test]
async fn over_the_rate_is_429_with_retry_after() {
    // One request per 10 000 s: the burst of 2 is all there is during the test.
    let s = Setup::start_with(
        Mode::PrivateDnsOff,
        Default::default(),
        "[route.policy]\nrequests_per_second = 0.0001\nburst = 2\n",
    )
    .await;
    for _ in 0..2 {
        let ok = post_rpc(&s.proxy.url(), PING).await;
        assert_ne!(ok.status, 429, "{}", ok.body);
    }
    let answer = post_rpc(&s.proxy.url(), PING).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.headers["content-type"], "application/json");
    let retry_after: u64 = answer.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((9_990..=10_000).contains(&retry_after), "{retry_after}");
    let v = answer.json();
    assert_eq!(v["id"], "p1");
    assert_eq!(v["error"]["code"], -31012);
    assert_eq!(
        v["error"]["data"],
        json!({"source": "proxy", "reason": "rate_limited", "route": "mcp"})
    );
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("mcp-vpce-proxy: route mcp: rate limit exceeded; retry after 2h 46m"),
        "{message}"
    );
    // GET and DELETE count too, and get the same refusal as text.
    let get = send(
        "GET",
        &s.proxy.url(),
        &[("accept", "text/event-stream")],
        "",
    )
    .await;
    assert_eq!(get.status, 429);
    assert!(get.headers.contains_key("retry-after"));
    assert_eq!(get.headers["content-type"], "text/plain; charset=utf-8");
    assert!(
        get.body
            .starts_with("mcp-vpce-proxy: route mcp: rate limit exceeded; retry after "),
        "{}",
        get.body
    );
    assert_eq!(s.upstream.requests().len(), 2);
}

#[tokio::test]
async fn over_the_in_flight_limit_is_429_until_a_request_finishes() {
    let s = Setup::start_with(
        Mode::PrivateDnsOff,
        Default::default(),
        "[route.policy]\nmax_in_flight = 1\n",
    )
    .await;
    let agent = client::connect(&s.proxy.url()).await;
    let mut progress = agent.service().take_progress();
    // The tool holds its POST open until the test releases it.
    let call = client::start_tool_call(&agent, "DemoTarget___slow_progress", json!({})).await;
    tokio::time::timeout(Duration::from_secs(10), progress.recv())
        .await
        .expect("the call is running")
        .unwrap();
    let seen_before = s.upstream.requests().len();
    let answer = post_rpc(&s.proxy.url(), PING).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.headers["retry-after"], "1");
    let v = answer.json();
    assert_eq!(v["id"], "p1");
    assert_eq!(v["error"]["code"], -31013);
    assert_eq!(
        v["error"]["message"],
        "mcp-vpce-proxy: route mcp: too many requests in flight (the limit is 1); retry when one has finished"
    );
    assert_eq!(s.upstream.requests().len(), seen_before);

    s.upstream.release_progress();
    call.result().await.expect("the slow call finishes");
    // The slot frees when its answer has been sent; the agent may be a moment ahead.
    let mut freed = false;
    for _ in 0..100 {
        if post_rpc(&s.proxy.url(), PING).await.status != 429 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "the in-flight slot came back");
    agent.cancel().await.unwrap();
}
