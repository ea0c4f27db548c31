//! The gateway connection is reset: before the answer, in the middle of a JSON body, in
//! the middle of an SSE stream. Before the head the agent gets a JSON-RPC error naming
//! the cause; after it, the body visibly ends short (never a truncated body that looks
//! whole). Either way the proxy keeps serving and never uses the broken connection again.

use crate::common::agents::{rpc, Ending, Open};
use crate::common::dns::DnsServer;
use crate::common::faulty_upstream::{self, Fault, FaultyUpstream, PROGRESS_EVENT};
use crate::common::http::{assert_rpc_error, post_rpc};
use crate::common::proxy::{head, Proxy};
use crate::common::upstream::ENDPOINT_HOST;
use serde_json::json;

struct Rig {
    upstream: FaultyUpstream,
    proxy: Proxy,
    _dns: DnsServer,
}

async fn rig() -> Rig {
    let upstream = FaultyUpstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = Proxy::start(&format!("{}{}", head(&dns), upstream.route(""))).await;
    Rig {
        upstream,
        proxy,
        _dns: dns,
    }
}

fn answer(id: u64) -> String {
    faulty_upstream::answer(&json!(id), "127.0.0.1")
}

/// The proxy still serves: a call succeeds, over a new upstream connection.
async fn assert_next_call_uses_a_new_connection(rig: &Rig, id: u64) {
    let next = post_rpc(&rig.proxy.url(), &rpc(id)).await;
    assert_eq!(next.status, 200, "{}", next.body);
    assert_eq!(next.body, answer(id));
    let seen = rig.upstream.requests();
    let (broken, last) = (&seen[seen.len() - 2], &seen[seen.len() - 1]);
    assert_ne!(
        broken.connection, last.connection,
        "the broken connection was used again"
    );
}

#[tokio::test]
async fn a_reset_before_the_answer_is_a_502_upstream_error() {
    let rig = rig().await;
    rig.upstream.script(&[Fault::ResetBeforeAnswer]);
    let refused = post_rpc(&rig.proxy.url(), &rpc(1)).await;
    assert_rpc_error(
        &refused,
        502,
        -31007,
        json!(1),
        "mcp-vpce-proxy: route mcp: gateway connection failed: connection error: Connection reset by peer (os error 104)",
    );
    assert_eq!(refused.json()["error"]["data"]["reason"], "upstream");
    assert_next_call_uses_a_new_connection(&rig, 2).await;
    assert_eq!(rig.upstream.connections(), 2);
    // Sent once: a request the gateway may have acted on is never replayed.
    assert_eq!(rig.upstream.requests().len(), 2);
}

#[tokio::test]
async fn a_reset_of_a_pooled_connection_is_not_replayed_and_the_pool_moves_on() {
    let rig = rig().await;
    rig.upstream
        .script(&[Fault::Answer, Fault::ResetBeforeAnswer]);
    let first = post_rpc(&rig.proxy.url(), &rpc(1)).await;
    assert_eq!(first.body, answer(1));
    let refused = post_rpc(&rig.proxy.url(), &rpc(2)).await;
    assert_eq!(refused.status, 502, "{}", refused.body);
    assert_eq!(refused.json()["error"]["code"], -31007);
    assert_eq!(refused.json()["id"], 2);
    let seen = rig.upstream.requests();
    assert_eq!(
        seen[0].connection, seen[1].connection,
        "the pooled connection carried the second call"
    );
    assert_next_call_uses_a_new_connection(&rig, 3).await;
    assert_eq!(rig.upstream.requests().len(), 3);
    assert_eq!(rig.upstream.connections(), 2);
}

#[tokio::test]
async fn a_reset_in_the_middle_of_a_json_body_ends_the_body_short() {
    let rig = rig().await;
    rig.upstream.script(&[Fault::ResetMidJson]);
    let whole = answer(7);
    let half = &whole[..whole.len() / 2];

    let mut open = Open::post(&rig.proxy.url(), &rpc(7)).await;
    assert_eq!(open.status, 200);
    assert_eq!(open.headers["content-type"], "application/json");
    assert_eq!(open.headers["content-length"], whole.len().to_string());
    open.read_until(half).await;
    rig.upstream.release(1);
    let ending = open.finish().await;
    assert!(
        matches!(ending, Ending::Broken(_)),
        "a truncated JSON body must not end like a whole one: {ending:?}"
    );
    assert_eq!(open.text(), half, "nothing but what the gateway sent");

    assert_next_call_uses_a_new_connection(&rig, 8).await;
}

#[tokio::test]
async fn a_reset_in_the_middle_of_an_sse_stream_ends_the_stream_after_the_last_whole_event() {
    let rig = rig().await;
    rig.upstream.script(&[Fault::ResetMidSse]);

    let mut open = Open::post(&rig.proxy.url(), &rpc(9)).await;
    assert_eq!(open.status, 200);
    assert_eq!(open.headers["content-type"], "text/event-stream");
    open.read_until(PROGRESS_EVENT).await;
    rig.upstream.release(1);
    let ending = open.finish().await;
    assert!(
        matches!(ending, Ending::Broken(_)),
        "the agent's client must see the stream cut, not a finished answer: {ending:?}"
    );
    assert_eq!(open.text(), PROGRESS_EVENT);

    assert_next_call_uses_a_new_connection(&rig, 10).await;
}

#[tokio::test]
async fn resets_leave_concurrent_calls_on_other_connections_untouched() {
    let rig = rig().await;
    // One call holds a connection while another is reset on a second one.
    rig.upstream
        .script(&[Fault::AnswerWhenReleased, Fault::ResetBeforeAnswer]);
    let url = rig.proxy.url();
    let held = tokio::spawn({
        let url = url.clone();
        async move { post_rpc(&url, &rpc(1)).await }
    });
    for _ in 0..600 {
        if !rig.upstream.requests().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let refused = post_rpc(&url, &rpc(2)).await;
    assert_eq!(refused.status, 502, "{}", refused.body);
    rig.upstream.release(1);
    let held = held.await.unwrap();
    assert_eq!(held.status, 200);
    assert_eq!(held.body, answer(1));
}
