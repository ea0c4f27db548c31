//! A gateway that goes silent: it accepts TCP but never answers TLS, reads a request but
//! never sends headers, or stops in the middle of a stream. Each configured timeout
//! fires, the answer names it, and the proxy goes on serving.

use crate::common::agents::{rpc, Ending, Open};
use crate::common::dns::DnsServer;
use crate::common::faulty_upstream::{self, Fault, FaultyUpstream, Handshake, PROGRESS_EVENT};
use crate::common::http::{assert_rpc_error, post_rpc};
use crate::common::proxy::{head, Proxy};
use crate::common::upstream::{ENDPOINT_HOST, GATEWAY_HOST};
use serde_json::json;

async fn rig(route_extra: &str) -> (FaultyUpstream, Proxy, DnsServer) {
    let upstream = FaultyUpstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = Proxy::start(&format!("{}{}", head(&dns), upstream.route(route_extra))).await;
    (upstream, proxy, dns)
}

async fn assert_call_succeeds(proxy: &Proxy, id: u64) {
    let answer = post_rpc(&proxy.url(), &rpc(id)).await;
    assert_eq!(answer.status, 200, "call {id}: {}", answer.body);
    assert_eq!(
        answer.body,
        faulty_upstream::answer(&json!(id), "127.0.0.1")
    );
}

#[tokio::test]
async fn a_gateway_that_never_answers_tls_is_a_502_naming_the_tls_timeout() {
    let (upstream, proxy, _dns) = rig(r#"tls_timeout = "300ms""#).await;
    upstream.set_handshake(Handshake::Never);
    let refused = post_rpc(&proxy.url(), &rpc(1)).await;
    assert_rpc_error(
        &refused,
        502,
        -31004,
        json!(1),
        &format!(
            "mcp-vpce-proxy: route mcp: TLS handshake with {ENDPOINT_HOST} (127.0.0.1:{}) failed \
             for server name {GATEWAY_HOST}: no handshake within 300ms",
            upstream.port
        ),
    );
    assert_eq!(refused.json()["error"]["data"]["reason"], "tls");
    assert!(upstream.requests().is_empty());
    // Once the gateway answers TLS again, so does the proxy.
    upstream.set_handshake(Handshake::Tls);
    assert_call_succeeds(&proxy, 2).await;
}

#[tokio::test]
async fn a_gateway_that_never_sends_headers_is_a_504_naming_the_response_timeout() {
    let (upstream, proxy, _dns) = rig(r#"response_timeout = "500ms""#).await;
    upstream.script(&[Fault::NoHeaders]);
    let refused = post_rpc(&proxy.url(), &rpc(1)).await;
    assert_rpc_error(
        &refused,
        504,
        -31001,
        json!(1),
        "mcp-vpce-proxy: route mcp: gateway did not answer within 500ms",
    );
    assert_eq!(
        refused.json()["error"]["data"]["reason"],
        "response_timeout"
    );
    assert_call_succeeds(&proxy, 2).await;
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2);
    assert_ne!(
        seen[0].connection, seen[1].connection,
        "the connection with a request stuck on it went back to the pool"
    );
}

#[tokio::test]
async fn a_stream_that_stalls_is_ended_after_the_idle_timeout() {
    let (upstream, proxy, _dns) = rig(r#"idle_timeout = "500ms""#).await;
    upstream.script(&[Fault::StallMidStream]);
    let mut open = Open::post(&proxy.url(), &rpc(1)).await;
    assert_eq!(open.status, 200);
    assert_eq!(open.headers["content-type"], "text/event-stream");
    open.read_until(PROGRESS_EVENT).await;
    let ending = open.finish().await;
    assert!(
        matches!(ending, Ending::Broken(_)),
        "a stalled stream ends as cut, so that the agent's client reconnects: {ending:?}"
    );
    assert_eq!(open.text(), PROGRESS_EVENT);
    assert_call_succeeds(&proxy, 2).await;
    let seen = upstream.requests();
    assert_ne!(seen[0].connection, seen[1].connection);
}

#[tokio::test]
async fn a_quiet_stream_within_the_idle_timeout_is_left_alone() {
    // The same stream, released after a pause shorter than the idle timeout.
    let (upstream, proxy, _dns) = rig(r#"idle_timeout = "5s""#).await;
    upstream.script(&[Fault::SseWhenReleased]);
    let mut open = Open::post(&proxy.url(), &rpc(1)).await;
    open.read_until(PROGRESS_EVENT).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    upstream.release(1);
    assert_eq!(open.finish().await, Ending::Complete);
    assert_eq!(
        open.text(),
        format!(
            "{PROGRESS_EVENT}event: message\ndata: {}\n\n",
            faulty_upstream::answer(&json!(1), "127.0.0.1")
        )
    );
}
