//! One upstream request for identical list calls: a burst of agents asking for the same
//! tools/list at once reaches the gateway once, each agent getting the answer with its
//! own id and the tool policy's filtering; sessions never share. Under MCP 2026-07-28
//! answers are kept for their `ttlMs` (served with the time left), and dropped when a
//! `list_changed` notification passes or the configuration is reloaded.
//!
//! The gateway holds its answers until the test releases them, so that requests are
//! known to be in flight together: no test depends on timing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::common::scripted_gateway::Rig;
use crate::common::scripted_upstream::{Scripted, ScriptedUpstream, Seen};

const AGENTS: usize = 64;
const MODERN: (&str, &str) = ("mcp-protocol-version", "2026-07-28");

fn list(id: &Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/list","params":{}})
}

fn modern_list(id: &Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/list","params":{
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}})
}

/// A tools/list answer naming how many lists the gateway answered so far (`version`).
fn listing(id: &Value, version: usize, hints: Option<(u64, &str)>) -> String {
    let mut result = json!({"tools":[
        {"name":"Demo___echo"},{"name":"Other___delete"},{"name":format!("Demo___v{version}")}
    ]});
    if let Some((ttl, scope)) = hints {
        result["ttlMs"] = json!(ttl);
        result["cacheScope"] = json!(scope);
        result["resultType"] = json!("complete");
    }
    json!({"jsonrpc":"2.0","id":id,"result":result}).to_string()
}

/// A gateway answering tools/list (with `hints`) and, for `subscriptions/listen`, a
/// stream carrying a tools list_changed notification.
fn gateway(hints: Option<(u64, &'static str)>) -> impl Fn(&Seen) -> Scripted + Send + Sync {
    let lists = Arc::new(AtomicUsize::new(0));
    move |seen| {
        let body = seen.json();
        let id = body["id"].clone();
        match body["method"].as_str() {
            Some("subscriptions/listen") => Scripted::sse(&[
                json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"}).to_string(),
                json!({"jsonrpc":"2.0","id":id,"result":{}}).to_string(),
            ]),
            _ => Scripted::json(listing(
                &id,
                lists.fetch_add(1, Ordering::SeqCst) + 1,
                hints,
            )),
        }
    }
}

fn names(answer: &Value) -> Vec<String> {
    answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {answer}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_burst_of_identical_lists_reaches_the_gateway_once() {
    let upstream = ScriptedUpstream::start_held(gateway(None)).await;
    let rig = Arc::new(
        Rig::start(
            upstream,
            "share-burst",
            "[route.policy]\ndeny_tools = [\"Other___*\"]\n",
        )
        .await,
    );
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let rig = rig.clone();
        agents.push(tokio::spawn(async move {
            let id = json!(format!("agent-{i}"));
            (id.clone(), rig.post(&list(&id), &[]).await)
        }));
    }
    // Everyone is in flight: one request at the gateway, the others waiting for it.
    rig.wait_for_requests(1).await;
    rig.wait_for_metric("coalesce_waiting", "", (AGENTS - 1) as f64)
        .await;
    rig.upstream.release(1);
    for agent in agents {
        let (id, answer) = agent.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        let v = answer.json();
        assert_eq!(v["id"], id, "each agent gets its own id");
        assert_eq!(
            names(&v),
            ["Demo___echo", "Demo___v1"],
            "filtered by the tool policy"
        );
    }
    assert_eq!(
        rig.upstream.seen().len(),
        1,
        "the gateway saw one tools/list"
    );
    assert_eq!(rig.metric("coalesced_total", ""), (AGENTS - 1) as f64);
    assert_eq!(rig.metric("coalesce_waiting", ""), 0.0);
}

#[tokio::test]
async fn sessions_never_share_an_answer() {
    let upstream = ScriptedUpstream::start_held(gateway(None)).await;
    let rig = Arc::new(Rig::start(upstream, "share-sessions", "").await);
    let ask = |session: &'static str, id: u64| {
        let rig = rig.clone();
        tokio::spawn(async move {
            rig.post(&list(&json!(id)), &[("mcp-session-id", session)])
                .await
        })
    };
    let a = ask("session-a", 1);
    let b = ask("session-b", 2);
    // Both reach the gateway (if they were coalesced, this would never happen).
    rig.wait_for_requests(2).await;
    let a2 = ask("session-a", 3);
    rig.wait_for_metric("coalesce_waiting", "", 1.0).await;
    rig.upstream.release(2);
    let (a, b, a2) = (a.await.unwrap(), b.await.unwrap(), a2.await.unwrap());
    assert_eq!(a.json()["id"], 1);
    assert_eq!(b.json()["id"], 2);
    assert_eq!(a2.json()["id"], 3);
    assert_eq!(
        names(&a.json()),
        names(&a2.json()),
        "one session's requests share"
    );
    let sessions: Vec<String> = rig
        .upstream
        .seen()
        .iter()
        .map(|s| s.headers["mcp-session-id"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(sessions.len(), 2);
    assert!(
        sessions.contains(&"session-a".to_string()) && sessions.contains(&"session-b".to_string())
    );
}

#[tokio::test]
async fn modern_answers_are_kept_for_their_ttl_with_the_time_left() {
    let upstream = ScriptedUpstream::start(gateway(Some((60_000, "private")))).await;
    let rig = Rig::start(upstream, "share-cache", "").await;
    let first = rig.post(&modern_list(&json!(1)), &[MODERN]).await;
    assert_eq!(
        names(&first.json()),
        ["Demo___echo", "Other___delete", "Demo___v1"]
    );
    for id in 2..5 {
        let kept = rig.post(&modern_list(&json!(id)), &[MODERN]).await;
        assert_eq!(kept.status, 200);
        let v = kept.json();
        assert_eq!(v["id"], id);
        assert_eq!(names(&v), ["Demo___echo", "Other___delete", "Demo___v1"]);
        let left = v["result"]["ttlMs"].as_u64().unwrap();
        assert!(
            left <= 60_000 && left > 0,
            "the time left, not the whole ttl: {left}"
        );
        assert_eq!(v["result"]["cacheScope"], "private");
    }
    assert_eq!(rig.upstream.seen().len(), 1);
    assert_eq!(rig.metric("cache_hits_total", ""), 3.0);

    // Another cursor is another answer.
    let paged = json!({"jsonrpc":"2.0","id":9,"method":"tools/list","params":{"cursor":"2",
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}});
    rig.post(&paged, &[MODERN]).await;
    assert_eq!(rig.upstream.seen().len(), 2);
}

#[tokio::test]
async fn a_list_changed_notification_and_a_reload_drop_kept_answers() {
    let upstream = ScriptedUpstream::start(gateway(Some((60_000, "public")))).await;
    let rig = Rig::start(upstream, "share-invalidate", "").await;
    let version = |answer: &crate::common::http::Answer| names(&answer.json())[2].clone();
    let a = rig.post(&modern_list(&json!(1)), &[MODERN]).await;
    assert_eq!(version(&a), "Demo___v1");
    assert_eq!(
        version(&rig.post(&modern_list(&json!(2)), &[MODERN]).await),
        "Demo___v1"
    );

    // The gateway says the list changed (on a 2026-07-28 subscription stream).
    let listen = json!({"jsonrpc":"2.0","id":3,"method":"subscriptions/listen","params":{
        "notifications":{"toolsListChanged":true}}});
    let stream = rig.post(&listen, &[MODERN]).await;
    assert!(stream.body.contains("list_changed"), "{}", stream.body);
    assert_eq!(
        version(&rig.post(&modern_list(&json!(4)), &[MODERN]).await),
        "Demo___v2"
    );
    assert_eq!(
        version(&rig.post(&modern_list(&json!(5)), &[MODERN]).await),
        "Demo___v2"
    );

    // A reload builds the route anew, with an empty cache.
    rig.reload("max_body_bytes = 100000");
    assert_eq!(
        version(&rig.post(&modern_list(&json!(6)), &[MODERN]).await),
        "Demo___v3"
    );
    assert_eq!(rig.upstream.seen().len(), 4, "v1, listen, v2, v3");
}

#[tokio::test]
async fn only_what_may_be_shared_is_kept() {
    // Session-based protocol versions: never kept (coalescing only).
    let upstream = ScriptedUpstream::start(gateway(Some((60_000, "public")))).await;
    let rig = Rig::start(upstream, "share-legacy", "").await;
    let legacy = ("mcp-protocol-version", "2025-11-25");
    rig.post(&list(&json!(1)), &[legacy]).await;
    rig.post(&list(&json!(2)), &[legacy]).await;
    assert_eq!(rig.upstream.seen().len(), 2);

    // No caching hints: not kept.
    let upstream = ScriptedUpstream::start(gateway(None)).await;
    let rig = Rig::start(upstream, "share-no-hints", "").await;
    rig.post(&modern_list(&json!(1)), &[MODERN]).await;
    rig.post(&modern_list(&json!(2)), &[MODERN]).await;
    assert_eq!(rig.upstream.seen().len(), 2);

    // The cache turned off.
    let upstream = ScriptedUpstream::start(gateway(Some((60_000, "public")))).await;
    let rig = Rig::start(
        upstream,
        "share-cache-off",
        "[route.traffic]\ncache = false\n",
    )
    .await;
    rig.post(&modern_list(&json!(1)), &[MODERN]).await;
    rig.post(&modern_list(&json!(2)), &[MODERN]).await;
    assert_eq!(rig.upstream.seen().len(), 2);
}

#[tokio::test]
async fn passthrough_callers_each_have_their_own_answers() {
    let upstream = ScriptedUpstream::start(gateway(Some((60_000, "private")))).await;
    let rig = Rig::start_with(
        upstream,
        "share-passthrough",
        Some("{ type = \"passthrough\" }"),
        "",
    )
    .await;
    let alice = ("authorization", "Bearer alice-token");
    let bob = ("authorization", "Bearer bob-token");
    let a1 = rig.post(&modern_list(&json!(1)), &[MODERN, alice]).await;
    let b1 = rig.post(&modern_list(&json!(2)), &[MODERN, bob]).await;
    assert_eq!(names(&a1.json())[2], "Demo___v1");
    assert_eq!(
        names(&b1.json())[2],
        "Demo___v2",
        "bob never gets alice's answer"
    );
    let a2 = rig.post(&modern_list(&json!(3)), &[MODERN, alice]).await;
    assert_eq!(names(&a2.json())[2], "Demo___v1", "alice's own kept answer");
    assert_eq!(rig.upstream.seen().len(), 2);
}

#[tokio::test]
async fn shaping_pays_only_for_what_reaches_the_gateway() {
    let upstream = ScriptedUpstream::start_held(gateway(None)).await;
    let rig = Arc::new(
        Rig::start(
            upstream,
            "share-shaping",
            "[route.shaping]\nrequests_per_second = 0.01\nburst = 1\n",
        )
        .await,
    );
    let mut agents = Vec::new();
    for i in 0..10u64 {
        let rig = rig.clone();
        agents.push(tokio::spawn(async move {
            rig.post(&list(&json!(i)), &[]).await
        }));
    }
    rig.wait_for_requests(1).await;
    rig.wait_for_metric("coalesce_waiting", "", 9.0).await;
    rig.upstream.release(1);
    for agent in agents {
        let answer = agent.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(answer.json()["result"].is_object(), "{}", answer.body);
    }
    // The budget of one was spent by the one request sent.
    let next = rig.post(&list(&json!(99)), &[]).await;
    let v = next.json();
    assert_eq!(v["error"]["code"], -32003, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "shaped");
    assert_eq!(
        v["error"]["data"]["limitKey"],
        "shaping.requests_per_second"
    );
    assert_eq!(rig.upstream.seen().len(), 1);
}
