//! Local shaping (`[route.shaping]`): the route's own quota for the whole route and per
//! tool glob, so a fleet stays under the gateway's quota (the search tool at 25 per
//! minute) before the gateway has to throttle. What goes over is answered like the
//! gateway's throttle — `-32003` "Rate limit exceeded", `data.retryAfter`, `Retry-After`
//! — so agents' retry policies treat both the same; `data` says the proxy answered.
//! Budgets are tiny per minute or per hundred seconds: nothing here depends on timing.

use serde_json::{json, Value};

use crate::common::scripted_gateway::Rig;
use crate::common::scripted_upstream::{Scripted, ScriptedUpstream};

const SEARCH: &str = "x_amz_bedrock_agentcore_search";

fn call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{}}})
}

async fn gateway() -> ScriptedUpstream {
    ScriptedUpstream::start(|seen| {
        let id = seen.json()["id"].clone();
        Scripted::json(
            json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":"ok"}]}})
                .to_string(),
        )
    })
    .await
}

#[tokio::test]
async fn a_tools_budget_is_answered_like_the_gateways_throttle() {
    let rig = Rig::start(
        gateway().await,
        "shaping-tools",
        &format!("[route.shaping]\ntools = {{ \"{SEARCH}\" = \"2/min\" }}\n"),
    )
    .await;
    for id in 1..=2 {
        let ok = rig.post(&call(id, SEARCH), &[]).await;
        assert_eq!(ok.json()["result"]["content"][0]["text"], "ok");
    }
    let over = rig.post(&call(3, SEARCH), &[]).await;
    assert_eq!(over.status, 200, "{}", over.body);
    let v = over.json();
    assert_eq!(v["id"], 3);
    assert_eq!(v["error"]["code"], -32003);
    assert_eq!(v["error"]["message"], "Rate limit exceeded");
    assert_eq!(
        v["error"]["data"],
        json!({
            "retryAfter": 30,
            "limitKey": format!("shaping.tools.{SEARCH}"),
            "source": "proxy",
            "reason": "shaped",
            "route": "shaping-tools",
        })
    );
    assert_eq!(over.headers["retry-after"], "30");
    // Other tools are not in the budget.
    let other = rig.post(&call(4, "Demo___echo"), &[]).await;
    assert_eq!(other.json()["result"]["content"][0]["text"], "ok");
    assert_eq!(rig.upstream.seen().len(), 3);
    assert_eq!(
        rig.metric("throttled_locally_total", "reason=\"shaping\""),
        1.0
    );
}

#[tokio::test]
async fn the_routes_budget_counts_every_call_sent() {
    let rig = Rig::start(
        gateway().await,
        "shaping-route",
        "[route.shaping]\nrequests_per_second = 0.01\nburst = 2\n",
    )
    .await;
    rig.post(&call(1, "Demo___a"), &[]).await;
    rig.post(&call(2, "Demo___b"), &[]).await;
    let over = rig.post(&call(3, "Demo___c"), &[]).await;
    let v = over.json();
    assert_eq!(v["error"]["code"], -32003, "{v}");
    assert_eq!(
        v["error"]["data"]["limitKey"],
        "shaping.requests_per_second"
    );
    assert_eq!(over.headers["retry-after"], "100");
    assert_eq!(rig.upstream.seen().len(), 2);
}

#[tokio::test]
async fn bad_values_are_refused_each_with_its_key() {
    let text = "[[route]]\ngateway = \"https://gw.example/mcp\"\n\
        [route.shaping]\ntools = { \"search*\" = \"25/fortnight\" }\n\
        [route.traffic]\nthrottle_hold_max = \"2m\"\n";
    let err = mcp_vpce_proxy::config::Config::parse(
        text,
        "bad.toml",
        &mcp_vpce_proxy::config::Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    for line in [
        "bad.toml: route \"mcp\" (route[0]).traffic.throttle_hold_max: at most 1m, got 2m",
        "bad.toml: route \"mcp\" (route[0]).shaping.tools.\"search*\": \"25/fortnight\" is not a rate like \"25/min\" (a whole count per s, min or h)",
    ] {
        assert!(err.lines().any(|l| l == line), "{line}\nmissing from\n{err}");
    }
}
