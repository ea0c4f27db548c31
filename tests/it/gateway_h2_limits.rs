//! How the proxy lives within what an HTTP/2 gateway allows on one connection:
//!
//! - the gateway's `SETTINGS_MAX_CONCURRENT_STREAMS` (and the route's
//!   `max_streams_per_connection`, whichever is lower) bounds the requests one connection
//!   carries at once; when every connection is full, a new one is opened;
//! - after the gateway's GOAWAY, requests already on the connection finish and new ones
//!   go over a new connection;
//! - a stream the gateway refuses (REFUSED_STREAM) was not processed: a read is sent once
//!   more, a `tools/call` is answered with a 502 and never replayed.
//!
//! The gateway is a real TLS HTTP/2 server on loopback (`common::h2_gateway`).

use std::time::Duration;

use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::common::agents::rpc;
use crate::common::dns::DnsServer;
use crate::common::h2_gateway::{answer, H2Gateway, Reply};
use crate::common::http::{assert_rpc_error, post_rpc, Answer};
use crate::common::proxy::{head, upstream_retries, Proxy};
use crate::common::upstream::ENDPOINT_HOST;

struct Rig {
    gateway: H2Gateway,
    proxy: Proxy,
    _dns: DnsServer,
}

/// The proxy with one route named `route` (metrics are per route name: each test uses its
/// own) to a gateway allowing `max_concurrent_streams`, with `extra` in the route table.
async fn rig(route: &str, max_concurrent_streams: Option<u32>, extra: &str) -> Rig {
    let gateway = H2Gateway::start(max_concurrent_streams).await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let table = gateway.route(&format!("name = \"{route}\"\n{extra}"));
    let proxy = Proxy::start(&format!("{}{table}", head(&dns))).await;
    Rig {
        gateway,
        proxy,
        _dns: dns,
    }
}

/// A `resources/read` with this id: a read, which the proxy never shares with another
/// request (unlike the list methods) and sends once more when it was not processed.
fn read(id: u64) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "resources/read",
        "params": { "uri": "file:///notes.txt" }
    })
    .to_string()
}

/// Sends `message` through the proxy in a task of its own (the answer is awaited later).
fn spawn_post(rig: &Rig, message: String) -> JoinHandle<Answer> {
    let url = rig.proxy.url();
    tokio::spawn(async move { post_rpc(&url, &message).await })
}

/// The answer of a spawned request, at most 30 s after it is awaited.
async fn answered(call: JoinHandle<Answer>) -> Answer {
    tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the proxy answers within 30 s")
        .expect("the request task ends")
}

/// Asserts the agent got the gateway's own answer to request `id`, sent on `connection`.
fn assert_answered_on(answer: &Answer, id: u64, connection: usize) {
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, self::answer(&json!(id), connection));
}

/// The connection that carried the request with JSON-RPC id `id` (the first time).
fn connection_of(gateway: &H2Gateway, id: u64) -> usize {
    gateway
        .requests()
        .iter()
        .find(|r| r.body["id"] == id)
        .unwrap_or_else(|| panic!("the gateway never saw id {id}"))
        .connection
}

/// Sends five `tools/call`s that the gateway holds, and checks that they were spread two
/// per connection, then answered once released.
async fn five_held_calls_take_three_connections(rig: &Rig, calls: Vec<JoinHandle<Answer>>) {
    let gateway = &rig.gateway;
    gateway.wait_for_requests(5).await;
    // All five are open at once: nothing is answered before the release.
    assert_eq!(gateway.connections(), 3, "{:?}", gateway.requests());
    let mut per_connection = [0; 3];
    for request in gateway.requests() {
        per_connection[request.connection] += 1;
    }
    per_connection.sort_unstable();
    assert_eq!(per_connection, [1, 2, 2], "{:?}", gateway.requests());

    gateway.release(5);
    for (call, id) in calls.into_iter().zip(1..) {
        let answer = answered(call).await;
        assert_answered_on(&answer, id, connection_of(gateway, id));
    }
    for connection in 0..3 {
        let record = gateway.connection(connection);
        assert!(
            record.max_open <= 2,
            "connection {connection} had {} streams open at once",
            record.max_open
        );
    }
    assert_eq!(gateway.requests().len(), 5, "each sent once");
}

#[tokio::test]
async fn a_gateway_that_allows_two_streams_gets_a_new_connection_for_every_two_open_requests() {
    let rig = rig("h2-two-streams", Some(2), "").await;
    rig.gateway.script(&[Reply::AnswerWhenReleased; 5]);
    // One request at a time, each known to have reached the gateway before the next: the
    // gateway's SETTINGS have arrived by then.
    let mut calls = Vec::new();
    for id in 1..=5 {
        calls.push(spawn_post(&rig, rpc(id)));
        rig.gateway.wait_for_requests(id as usize).await;
    }
    let seen: Vec<usize> = rig
        .gateway
        .requests()
        .iter()
        .map(|r| r.connection)
        .collect();
    assert_eq!(
        seen,
        [0, 0, 1, 1, 2],
        "a new connection once the open ones are full"
    );
    five_held_calls_take_three_connections(&rig, calls).await;
}

#[tokio::test]
async fn a_cold_burst_to_a_gateway_that_allows_two_streams_is_spread_two_per_connection() {
    let rig = rig("h2-two-streams-burst", Some(2), "").await;
    rig.gateway.script(&[Reply::AnswerWhenReleased; 5]);
    let calls = (1..=5).map(|id| spawn_post(&rig, rpc(id))).collect();
    five_held_calls_take_three_connections(&rig, calls).await;
}

#[tokio::test]
async fn the_routes_max_streams_per_connection_bounds_a_connection_below_what_the_gateway_allows() {
    // The gateway sends no limit (unlimited); the route allows two.
    let rig = rig(
        "h2-route-two-streams",
        None,
        "max_streams_per_connection = 2",
    )
    .await;
    rig.gateway.script(&[Reply::AnswerWhenReleased; 5]);
    let calls = (1..=5).map(|id| spawn_post(&rig, rpc(id))).collect();
    five_held_calls_take_three_connections(&rig, calls).await;
}

/// Two `tools/call`s held open on connection 0, then the gateway's GOAWAY on it, which the
/// proxy has processed when this returns.
async fn two_open_calls_then_a_go_away(rig: &Rig) -> Vec<JoinHandle<Answer>> {
    rig.gateway.script(&[Reply::AnswerWhenReleased; 2]);
    let calls = vec![spawn_post(rig, rpc(1)), spawn_post(rig, rpc(2))];
    rig.gateway.wait_for_requests(2).await;
    assert_eq!(rig.gateway.connections(), 1);
    rig.gateway.go_away(0).await;
    calls
}

/// The two held calls finish on connection 0 once released; the gateway then closes it.
async fn the_open_calls_finish_on_the_old_connection(rig: &Rig, calls: Vec<JoinHandle<Answer>>) {
    rig.gateway.release(2);
    for (call, id) in calls.into_iter().zip(1..) {
        assert_answered_on(&answered(call).await, id, 0);
    }
    rig.gateway
        .wait_until("connection 0 closed", |g| g.connection(0).closed)
        .await;
}

#[tokio::test]
async fn after_a_goaway_open_requests_finish_and_new_ones_take_a_new_connection() {
    let rig = rig("h2-goaway-read", None, "").await;
    let calls = two_open_calls_then_a_go_away(&rig).await;

    // A read sent after the GOAWAY goes over a new connection.
    let after = post_rpc(&rig.proxy.url(), &read(3)).await;
    assert_answered_on(&after, 3, 1);

    the_open_calls_finish_on_the_old_connection(&rig, calls).await;
    let next = post_rpc(&rig.proxy.url(), &rpc(4)).await;
    assert_answered_on(&next, 4, 1);
    assert_eq!(rig.gateway.connections(), 2);
    let ids: Vec<(Value, usize)> = rig
        .gateway
        .requests()
        .iter()
        .map(|r| (r.body["id"].clone(), r.connection))
        .collect();
    assert_eq!(
        ids,
        [(json!(1), 0), (json!(2), 0), (json!(3), 1), (json!(4), 1)],
        "each request reached the gateway once"
    );
}

#[tokio::test]
async fn a_tool_call_sent_after_a_goaway_takes_a_new_connection() {
    let rig = rig("h2-goaway-call", None, "").await;
    let calls = two_open_calls_then_a_go_away(&rig).await;

    // The connection refuses a new stream before anything is sent: the call never left
    // the proxy, so sending it over a new connection cannot run the tool twice.
    let after = post_rpc(&rig.proxy.url(), &rpc(3)).await;
    assert_answered_on(&after, 3, 1);

    the_open_calls_finish_on_the_old_connection(&rig, calls).await;
    assert_eq!(rig.gateway.connections(), 2);
    assert_eq!(rig.gateway.requests().len(), 3, "each sent once");
}

#[tokio::test]
async fn a_refused_stream_is_sent_once_more_for_a_read() {
    let rig = rig("h2-refused-read", None, "").await;
    rig.gateway.script(&[Reply::Refuse]);
    let answer = post_rpc(&rig.proxy.url(), &read(1)).await;
    let seen = rig.gateway.requests();
    assert_eq!(seen.len(), 2, "sent twice: {seen:?}");
    assert!(seen
        .iter()
        .all(|r| r.method() == "resources/read" && r.body["id"] == 1));
    // The refusal is the stream's, not the connection's (RFC 9113 8.7): the connection
    // stays in use, and the second attempt may go over it.
    assert_answered_on(&answer, 1, 0);
    assert_eq!(seen[1].connection, 0);
    assert_eq!(rig.gateway.connections(), 1);
    assert_eq!(upstream_retries("h2-refused-read"), 1);
}

#[tokio::test]
async fn a_refused_stream_is_answered_502_for_a_tool_call_and_not_replayed() {
    let rig = rig("h2-refused-call", None, "").await;
    rig.gateway.script(&[Reply::Refuse]);
    let refused = post_rpc(&rig.proxy.url(), &rpc(1)).await;
    assert_rpc_error(
        &refused,
        502,
        -31007,
        json!(1),
        "mcp-vpce-proxy: route h2-refused-call: gateway connection failed: http2 error: stream error received: refused stream before processing any application logic",
    );
    assert_eq!(refused.json()["error"]["data"]["reason"], "upstream");
    assert_eq!(rig.gateway.requests().len(), 1, "sent once");
    assert_eq!(upstream_retries("h2-refused-call"), 0);

    // The connection itself is fine: the next call goes through.
    let next = post_rpc(&rig.proxy.url(), &rpc(2)).await;
    assert_answered_on(&next, 2, rig.gateway.requests()[1].connection);
}

#[tokio::test]
async fn a_tool_call_whose_connection_breaks_before_the_answer_is_answered_502_and_not_replayed() {
    let rig = rig("h2-broken-call", None, "").await;
    rig.gateway.script(&[Reply::Break]);
    let refused = post_rpc(&rig.proxy.url(), &rpc(1)).await;
    assert_rpc_error(&refused, 502, -31007, json!(1), "mcp-vpce-proxy: route h2-broken-call: gateway connection failed: http2 error: the gateway closed the connection before answering");
    assert_eq!(refused.json()["error"]["data"]["reason"], "upstream");
    assert_eq!(rig.gateway.requests().len(), 1, "sent once");
    assert_eq!(upstream_retries("h2-broken-call"), 0);

    // The broken connection is never lent again: the next call opens a new one.
    let next = post_rpc(&rig.proxy.url(), &rpc(2)).await;
    assert_answered_on(&next, 2, 1);
    assert_eq!(rig.gateway.connections(), 2);
}

#[tokio::test]
async fn a_read_whose_connection_breaks_before_the_answer_is_sent_once_more_over_a_new_one() {
    let rig = rig("h2-broken-read", None, "").await;
    rig.gateway.script(&[Reply::Break]);
    let answer = post_rpc(&rig.proxy.url(), &read(1)).await;
    let seen = rig.gateway.requests();
    assert_eq!(seen.len(), 2, "sent twice: {seen:?}");
    assert_answered_on(&answer, 1, 1);
    assert_eq!(rig.gateway.connections(), 2);
    assert_eq!(upstream_retries("h2-broken-read"), 1);
}

#[tokio::test]
async fn a_call_larger_than_the_gateways_flow_control_window_arrives_whole() {
    // 3 MiB of arguments: 48 times the initial HTTP/2 stream window (64 KiB), so the body
    // goes out as the gateway gives the window back, not in one write.
    let rig = rig("h2-large-call", None, "").await;
    let text = "x".repeat(3 * 1024 * 1024);
    let call = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "DemoTarget___echo", "arguments": {"text": text}},
    });
    let answer = post_rpc(&rig.proxy.url(), &call.to_string()).await;
    assert_answered_on(&answer, 1, 0);
    let seen = rig.gateway.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].body, call,
        "the body the gateway read is the agent's"
    );
}

/// The proxy's own idle timeout on an h2 gateway connection: while calls keep coming
/// (every 100 ms here, ten times within `pool_idle_timeout`) the connection stays; once
/// nothing has been open on it for `pool_idle_timeout`, the proxy closes it, and the next
/// call opens a new one.
#[tokio::test]
async fn a_connection_idle_for_pool_idle_timeout_is_closed_by_the_proxy() {
    let rig = rig("h2_idle", None, r#"pool_idle_timeout = "1s""#).await;
    for id in 0..10u64 {
        let answer = post_rpc(&rig.proxy.url(), &rpc(id)).await;
        assert_answered_on(&answer, id, 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !rig.gateway.connection(0).closed,
        "a connection in use is kept"
    );
    rig.gateway
        .wait_until("the proxy closed its idle connection", |g| {
            g.connection(0).closed
        })
        .await;
    let answer = post_rpc(&rig.proxy.url(), &rpc(10)).await;
    assert_answered_on(&answer, 10, 1);
    assert_eq!(rig.gateway.connections(), 2);
}
