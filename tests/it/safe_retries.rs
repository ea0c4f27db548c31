//! Safe retries: a read-only request (the list methods, `resources/read`, `ping`) whose
//! gateway connection fails before any byte of the answer arrived (reset, or a reused
//! connection closed under it) is sent once more, on a new connection; a `tools/call`
//! never is, since the gateway may have acted on it.

use serde_json::json;

use crate::common::agents::{list, rpc};
use crate::common::dns::DnsServer;
use crate::common::faulty_upstream::{self, Fault, FaultyUpstream};
use crate::common::http::post_rpc;
use crate::common::proxy::{head, upstream_retries, Proxy};
use crate::common::upstream::ENDPOINT_HOST;

async fn rig(route: &str, extra: &str) -> (FaultyUpstream, Proxy, DnsServer) {
    let upstream = FaultyUpstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let table = upstream.route(&format!("name = \"{route}\"\n{extra}"));
    let proxy = Proxy::start(&format!("{}{table}", head(&dns))).await;
    (upstream, proxy, dns)
}

#[tokio::test]
async fn a_read_is_sent_once_more_after_a_reset_before_the_answer() {
    let (upstream, proxy, _dns) = rig("retry-reset", "").await;
    upstream.script(&[Fault::ResetBeforeAnswer, Fault::Answer]);
    let answer = post_rpc(&proxy.url(), &list(1)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, faulty_upstream::answer(&json!(1), "127.0.0.1"));
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2, "sent twice");
    assert_ne!(
        seen[0].connection, seen[1].connection,
        "on a new connection"
    );
    assert_eq!(upstream_retries("retry-reset"), 1);
}

#[tokio::test]
async fn a_read_crossing_the_close_of_a_reused_connection_is_sent_once_more() {
    let (upstream, proxy, _dns) = rig("retry-close", "").await;
    upstream.script(&[Fault::Answer, Fault::CloseBeforeAnswer, Fault::Answer]);
    assert_eq!(post_rpc(&proxy.url(), &rpc(1)).await.status, 200);
    let ping = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
    let answer = post_rpc(&proxy.url(), ping).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let seen = upstream.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen[1].connection, seen[0].connection,
        "the pooled connection"
    );
    assert_ne!(seen[2].connection, seen[1].connection);
    assert_eq!(upstream_retries("retry-close"), 1);
}

#[tokio::test]
async fn a_read_is_retried_once_only() {
    let (upstream, proxy, _dns) = rig("retry-once", "").await;
    upstream.script(&[
        Fault::ResetBeforeAnswer,
        Fault::ResetBeforeAnswer,
        Fault::Answer,
    ]);
    let answer = post_rpc(&proxy.url(), &list(1)).await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(answer.json()["error"]["data"]["reason"], "upstream");
    assert_eq!(upstream.requests().len(), 2);
    assert_eq!(upstream_retries("retry-once"), 1);
}

#[tokio::test]
async fn a_tool_call_is_never_sent_twice() {
    let (upstream, proxy, _dns) = rig("retry-call", "").await;
    upstream.script(&[Fault::ResetBeforeAnswer, Fault::Answer]);
    let answer = post_rpc(&proxy.url(), &rpc(1)).await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(answer.json()["id"], 1);
    assert_eq!(upstream.requests().len(), 1, "sent once");
    assert_eq!(upstream_retries("retry-call"), 0);
}

#[tokio::test]
async fn retries_can_be_turned_off() {
    let (upstream, proxy, _dns) = rig("retry-off", "[route.traffic]\nretry_reads = false\n").await;
    upstream.script(&[Fault::ResetBeforeAnswer, Fault::Answer]);
    let answer = post_rpc(&proxy.url(), &list(1)).await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(upstream.requests().len(), 1);
}
