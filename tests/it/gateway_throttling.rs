//! Throttle awareness: when the gateway throttles a tool (JSON-RPC `-32003` with
//! `data.retryAfter`) or a method (HTTP 429 with `Retry-After`), the route answers
//! further requests for the same thing itself until the window ends, in the gateway's
//! shape with the time left and the agent's own id, without sending them; other tools and
//! methods keep flowing. In `hold` mode a request waits out a short window and is sent.
//! Windows of 30 s keep the tests free of timing: they count requests, never time them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::common::http::Answer;
use crate::common::scripted_gateway::Rig;
use crate::common::scripted_upstream::{Scripted, ScriptedUpstream, Seen};

const SEARCH: &str = "Demo___search";

fn call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{}}})
}

fn list(id: u64) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/list","params":{}})
}

fn throttle(id: &Value, retry_after: u64) -> String {
    json!({"jsonrpc":"2.0","id":id,"error":{
        "code":-32003,"message":"Rate limit exceeded",
        "data":{"retryAfter":retry_after,"limitKey":"toolName=Demo___search"}}})
    .to_string()
}

fn ok(id: &Value) -> String {
    json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":"ok"}]}}).to_string()
}

fn tool_of(seen: &Seen) -> Option<String> {
    seen.json()["params"]["name"].as_str().map(str::to_string)
}

/// The gateway throttles the first call of the search tool for `window` seconds and
/// answers everything else.
fn gateway(window: u64) -> impl Fn(&Seen) -> Scripted + Send + Sync + 'static {
    let searches = Arc::new(AtomicUsize::new(0));
    move |seen| {
        let body = seen.json();
        let id = body["id"].clone();
        if tool_of(seen).as_deref() == Some(SEARCH) && searches.fetch_add(1, Ordering::SeqCst) == 0
        {
            return Scripted::json(throttle(&id, window));
        }
        if body["method"] == "tools/list" {
            return Scripted::json(
                json!({"jsonrpc":"2.0","id":id,"result":{"tools":[{"name":SEARCH}]}}).to_string(),
            );
        }
        Scripted::json(ok(&id))
    }
}

/// The answer the proxy gives in the gateway's place.
fn assert_answered_locally(answer: &Answer, id: u64, status: u16, reason: &str, within: u64) {
    assert_eq!(answer.status, status, "{}", answer.body);
    let v = answer.json();
    assert_eq!(v["id"], id, "{v}");
    assert_eq!(v["error"]["code"], -32003, "{v}");
    assert_eq!(v["error"]["message"], "Rate limit exceeded", "{v}");
    assert_eq!(v["error"]["data"]["source"], "proxy", "{v}");
    assert_eq!(v["error"]["data"]["reason"], reason, "{v}");
    let left = v["error"]["data"]["retryAfter"].as_u64().unwrap();
    assert!((1..=within).contains(&left), "{v}");
    let header: u64 = answer.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(header, left, "the header says what data.retryAfter says");
}

#[tokio::test]
async fn a_throttled_tool_is_not_sent_again_inside_its_window_while_other_tools_are() {
    let upstream = ScriptedUpstream::start(gateway(30)).await;
    let rig = Rig::start(upstream, "throttle-window", "").await;

    // The gateway's own throttle reaches the agent exactly as the gateway sent it.
    let first = rig.post(&call(1, SEARCH), &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.json(),
        serde_json::from_str::<Value>(&throttle(&json!(1), 30)).unwrap()
    );

    for id in 2..7 {
        let answer = rig.post(&call(id, SEARCH), &[]).await;
        assert_answered_locally(&answer, id, 200, "gateway_throttled", 30);
        assert_eq!(
            answer.json()["error"]["data"]["limitKey"],
            "toolName=Demo___search",
            "the gateway's limitKey, echoed"
        );
    }
    // Other tools and methods flow.
    let echo = rig.post(&call(7, "Demo___echo"), &[]).await;
    assert_eq!(echo.body, ok(&json!(7)));
    let tools = rig.post(&list(8), &[]).await;
    assert_eq!(tools.json()["result"]["tools"][0]["name"], SEARCH);

    let seen = rig.upstream.seen();
    let searches = seen
        .iter()
        .filter(|s| tool_of(s).as_deref() == Some(SEARCH))
        .count();
    assert_eq!(searches, 1, "the search tool reached the gateway once");
    assert_eq!(seen.len(), 3, "search once, echo, tools/list");
    assert_eq!(rig.metric("gateway_throttles_total", ""), 1.0);
    assert_eq!(
        rig.metric("throttled_locally_total", "reason=\"gateway_window\""),
        5.0
    );
}

#[tokio::test]
async fn a_method_throttled_with_http_429_is_answered_with_429_until_the_window_ends() {
    let lists = Arc::new(AtomicUsize::new(0));
    let upstream = ScriptedUpstream::start(move |seen| {
        let id = seen.json()["id"].clone();
        if seen.json()["method"] == "tools/list" && lists.fetch_add(1, Ordering::SeqCst) == 0 {
            let mut s = Scripted::json(throttle(&id, 30)).header("retry-after", "30");
            s.status = 429;
            return s;
        }
        Scripted::json(ok(&id))
    })
    .await;
    let rig = Rig::start(upstream, "throttle-http", "").await;
    let first = rig.post(&list(1), &[]).await;
    assert_eq!(first.status, 429, "the gateway's answer, as it came");
    let again = rig.post(&list(2), &[]).await;
    assert_answered_locally(&again, 2, 429, "gateway_throttled", 30);
    let call = rig.post(&call(3, "Demo___echo"), &[]).await;
    assert_eq!(call.body, ok(&json!(3)), "tools/call is another method");
    assert_eq!(rig.upstream.seen().len(), 2);
}

#[tokio::test]
async fn in_hold_mode_a_short_window_is_waited_out_and_a_long_one_answered() {
    let upstream = ScriptedUpstream::start(gateway(1)).await;
    let rig = Rig::start(
        upstream,
        "throttle-hold",
        "[route.traffic]\nthrottle = \"hold\"\nthrottle_hold_max = \"5s\"\n",
    )
    .await;
    let first = rig.post(&call(1, SEARCH), &[]).await;
    assert_eq!(first.json()["error"]["code"], -32003);
    // One second left, within the bound: held, then sent, and the gateway answers.
    let held = rig.post(&call(2, SEARCH), &[]).await;
    assert_eq!(held.body, ok(&json!(2)));
    assert_eq!(rig.upstream.seen().len(), 2);
    assert_eq!(rig.metric("throttle_holds_total", ""), 1.0);

    // A window longer than the bound is answered as in `answer` mode.
    let long = ScriptedUpstream::start(gateway(30)).await;
    let rig = Rig::start(
        long,
        "throttle-hold-long",
        "[route.traffic]\nthrottle = \"hold\"\nthrottle_hold_max = \"5s\"\n",
    )
    .await;
    rig.post(&call(1, SEARCH), &[]).await;
    let answered = rig.post(&call(2, SEARCH), &[]).await;
    assert_answered_locally(&answered, 2, 200, "gateway_throttled", 30);
    assert_eq!(rig.upstream.seen().len(), 1);
    assert_eq!(rig.metric("throttle_holds_total", ""), 0.0);
}

#[tokio::test]
async fn with_throttle_off_every_request_goes_to_the_gateway() {
    let upstream = ScriptedUpstream::start(gateway(30)).await;
    let rig = Rig::start(
        upstream,
        "throttle-off",
        "[route.traffic]\nthrottle = \"off\"\n",
    )
    .await;
    rig.post(&call(1, SEARCH), &[]).await;
    let second = rig.post(&call(2, SEARCH), &[]).await;
    assert_eq!(second.body, ok(&json!(2)));
    assert_eq!(rig.upstream.seen().len(), 2);
}

#[tokio::test]
async fn a_batch_element_for_a_throttled_tool_is_answered_and_the_rest_sent() {
    let upstream = ScriptedUpstream::start(move |seen| {
        let body = seen.json();
        match &body {
            Value::Array(items) => Scripted::json(
                Value::Array(
                    items
                        .iter()
                        .map(|m| serde_json::from_str(&ok(&m["id"])).unwrap())
                        .collect(),
                )
                .to_string(),
            ),
            one if tool_of(seen).as_deref() == Some(SEARCH) => {
                Scripted::json(throttle(&one["id"], 30))
            }
            one => Scripted::json(ok(&one["id"])),
        }
    })
    .await;
    let rig = Rig::start(upstream, "throttle-batch", "").await;
    rig.post(&call(1, SEARCH), &[]).await;
    let batch = json!([call(2, SEARCH), call(3, "Demo___echo")]);
    let answer = rig.post(&batch, &[]).await;
    assert_eq!(answer.status, 200);
    let items = answer.json();
    let by_id = |id: u64| {
        items
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_id(2)["error"]["data"]["reason"], "gateway_throttled");
    assert_eq!(by_id(3)["result"]["content"][0]["text"], "ok");
    let sent = rig.upstream.seen().last().unwrap().json();
    assert_eq!(
        sent.as_array().unwrap().len(),
        1,
        "only the echo went: {sent}"
    );
}

#[tokio::test]
async fn the_audit_trail_tells_the_gateways_throttle_from_the_proxys_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let upstream = ScriptedUpstream::start(gateway(30)).await;
    let rig = Rig::start(
        upstream,
        "throttle-audit",
        &format!("[audit]\nto = \"file\"\npath = \"{}\"\n", path.display()),
    )
    .await;
    rig.post(&call(1, SEARCH), &[]).await;
    rig.post(&call(2, SEARCH), &[]).await;
    let mut records: Vec<Value> = Vec::new();
    for _ in 0..500 {
        records = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if records.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let by_id = |id: u64| records.iter().find(|r| r["id"] == id).cloned().unwrap();
    let gateways = by_id(1);
    assert_eq!(gateways["outcome"], "rpc_error", "{gateways}");
    assert_eq!(gateways["error_code"], -32003);
    assert_eq!(gateways["reason"], "gateway_throttled");
    let ours = by_id(2);
    assert_eq!(ours["outcome"], "refused", "{ours}");
    assert_eq!(ours["error_code"], -32003);
    assert_eq!(ours["reason"], "gateway_throttled");
    assert_eq!(ours["tool"], SEARCH);
}
