//! The adversarial review's tool-policy bypasses, each replayed against a gateway that
//! answers as the attack needs (ids written back in another spelling, compressed bodies,
//! answers listing tools where none was asked for): a denied tool never reaches the agent,
//! and what cannot be filtered is refused or withheld.

use crate::common::dns::DnsServer;
use crate::common::http::{send, Answer};
use crate::common::proxy::{head, Proxy};
use crate::common::scripted_upstream::{Scripted, ScriptedUpstream, Seen};
use crate::common::upstream::GATEWAY_HOST;
use serde_json::{json, Value};

const DENIED: &str = "Secret___read";

const POLICY: &str = r#"
[route.policy]
deny_tools = ["Secret___*"]
"#;

/// A gateway listing one allowed and one denied tool (answering with the request's id
/// unless `id` says how to write it), as JSON or SSE.
fn listing(id: Option<&str>, sse: bool) -> impl Fn(&Seen) -> Scripted + Send + Sync + 'static {
    let id = id.map(str::to_string);
    move |seen: &Seen| {
        let request = seen.json();
        let id = id.clone().unwrap_or_else(|| request["id"].to_string());
        let answer = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":[{{"name":"Demo___echo","inputSchema":{{"type":"object"}}}},{{"name":"{DENIED}","inputSchema":{{"type":"object"}}}}]}}}}"#
        );
        if sse {
            Scripted::sse(&[answer])
        } else {
            Scripted::json(answer)
        }
    }
}

struct Rig {
    upstream: ScriptedUpstream,
    _dns: DnsServer,
    proxy: Proxy,
}

async fn rig(route_extra: &str, script: impl Fn(&Seen) -> Scripted + Send + Sync + 'static) -> Rig {
    let upstream = ScriptedUpstream::start(script).await;
    let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
    let toml = format!(
        r#"{head}
[[route]]
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
ca_file = "{ca}"
credential = {{ type = "passthrough" }}
{route_extra}
"#,
        head = head(&dns),
        port = upstream.port(),
        ca = upstream.ca_file().display(),
    );
    let proxy = Proxy::start(&toml).await;
    Rig {
        upstream,
        _dns: dns,
        proxy,
    }
}

async fn post(rig: &Rig, body: &str, extra: &[(&str, &str)]) -> Answer {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    headers.extend_from_slice(extra);
    send("POST", &rig.proxy.url(), &headers, body.to_string()).await
}

fn assert_hidden(answer: &Answer, what: &str) {
    assert!(
        !answer.body.contains(DENIED),
        "{what}: the denied tool reached the agent: {}",
        answer.body
    );
}

/// The one JSON-RPC message of a JSON answer or a one-event SSE answer.
fn message(answer: &Answer) -> Value {
    let data = answer
        .body
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or(&answer.body);
    serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {}", answer.body))
}

#[tokio::test]
async fn a_batch_with_duplicate_ids_is_refused_before_the_gateway() {
    for sse in [false, true] {
        let rig = rig(POLICY, listing(None, sse)).await;
        for batch in [
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":1.0,"method":"tools/list"}]"#,
            r#"[{"jsonrpc":"2.0","id":"a","method":"ping"},{"jsonrpc":"2.0","id":"a","method":"tools/list"}]"#,
        ] {
            let answer = post(&rig, batch, &[]).await;
            assert_eq!(answer.status, 400, "{batch}: {}", answer.body);
            assert_hidden(&answer, batch);
            let errors = answer.json();
            assert_eq!(errors[0]["error"]["code"], -32600, "{errors}");
            assert!(
                errors[0]["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("used twice in one batch"),
                "{errors}"
            );
        }
        assert!(
            rig.upstream.seen().is_empty(),
            "nothing reached the gateway"
        );
    }
}

#[tokio::test]
async fn ids_the_gateway_writes_back_differently_do_not_unlock_the_list() {
    for (sent, written) in [
        ("0", "-0"),
        ("1", "1.0"),
        ("1", "1e0"),
        ("9007199254740993", "9007199254740992"),
        ("7", "\"7\""),
        ("8", "null"),
    ] {
        for sse in [false, true] {
            let rig = rig(POLICY, listing(Some(written), sse)).await;
            let request = format!(r#"{{"jsonrpc":"2.0","id":{sent},"method":"tools/list"}}"#);
            let answer = post(&rig, &request, &[]).await;
            let what = format!("id {sent} written back as {written}, sse {sse}");
            assert_eq!(answer.status, 200, "{what}: {}", answer.body);
            assert_hidden(&answer, &what);
            let m = message(&answer);
            assert!(m.is_object(), "{what}: one answer, nothing appended: {m}");
            assert_eq!(
                m["result"]["tools"],
                json!([{"name":"Demo___echo","inputSchema":{"type":"object"}}]),
                "{what}"
            );
        }
    }
}

#[tokio::test]
async fn long_ids_are_refused_rather_than_lost_track_of() {
    let rig = rig(POLICY, listing(None, true)).await;
    let id = "A".repeat(300);
    let answer = post(
        &rig,
        &format!(r#"{{"jsonrpc":"2.0","id":"{id}","method":"tools/list"}}"#),
        &[],
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_hidden(&answer, "300-byte id");
    let m = answer.json();
    assert_eq!(m["error"]["code"], -32600);
    assert_eq!(
        m["error"]["message"],
        "mcp-vpce-proxy: route mcp: invalid request: the body is not a JSON-RPC 2.0 message or batch: a request id of 302 bytes; ids may be at most 128 bytes"
    );
    assert!(rig.upstream.seen().is_empty());
}

#[tokio::test]
async fn search_results_are_filtered_whatever_their_id() {
    let script = |_: &Seen| {
        let tools = json!([{"name":"Demo___echo"},{"name":DENIED}]);
        let result = json!({
            "structuredContent": {"tools": tools},
            "content": [{"type":"text","text": json!({"tools": tools}).to_string()}],
            "isError": false
        });
        Scripted::sse(&[json!({"jsonrpc":"2.0","id":"rewritten","result":result}).to_string()])
    };
    let rig = rig(POLICY, script).await;
    let call = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"x_amz_bedrock_agentcore_search","arguments":{"query":"secrets"}}}"#;
    let answer = post(&rig, call, &[]).await;
    assert_eq!(answer.status, 200);
    assert_hidden(&answer, "search result");
    assert!(answer.body.contains("Demo___echo"), "{}", answer.body);
}

#[tokio::test]
async fn an_answer_listing_tools_is_filtered_even_where_none_was_asked_for() {
    // A gateway (or a resumed stream) that sends a tools list on the GET stream.
    let script = |seen: &Seen| {
        if seen.method == http::Method::GET {
            let list = json!({"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"Demo___echo"},{"name":DENIED}]}});
            return Scripted::sse(&[list.to_string()]);
        }
        Scripted::json(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)
    };
    let rig = rig(POLICY, script).await;
    let answer = send(
        "GET",
        &rig.proxy.url(),
        &[("accept", "text/event-stream"), ("mcp-session-id", "s1")],
        "",
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_hidden(&answer, "GET stream without Last-Event-ID");
    assert!(answer.body.contains("Demo___echo"), "{}", answer.body);
}

#[tokio::test]
async fn compressed_answers_are_never_asked_for_and_withheld_when_they_come() {
    // A gateway that compresses whatever it is asked: the bytes stand for gzip the
    // policy cannot read (their content does not matter; the proxy must not pass them).
    // Request id 1 gets a JSON answer, id 2 an SSE one.
    let script = |seen: &Seen| {
        let sse = seen.json()["id"] == 2;
        listing(None, sse)(seen).header("content-encoding", "gzip")
    };
    let rig = rig(POLICY, script).await;
    for id in [1, 2] {
        let answer = post(
            &rig,
            &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#),
            &[("accept-encoding", "gzip, br")],
        )
        .await;
        assert_eq!(answer.status, 200);
        assert_hidden(&answer, "gzip answer");
        assert!(answer.headers.get("content-encoding").is_none());
        assert_eq!(answer.headers["content-type"], "application/json");
        let m = answer.json();
        assert_eq!(m["id"], id);
        assert_eq!(m["error"]["code"], -31014, "{m}");
    }
    for seen in rig.upstream.seen() {
        assert_eq!(seen.headers["accept-encoding"], "identity");
    }
}

#[tokio::test]
async fn names_and_methods_that_differ_only_in_spelling_are_judged_as_what_they_imitate() {
    let rig = rig(POLICY, listing(None, false)).await;
    let call = |method: &str, name: &str| {
        json!({"jsonrpc":"2.0","id":9,"method":method,"params":{"name":name,"arguments":{}}})
            .to_string()
    };
    for (body, status, code) in [
        (call("Tools/Call", DENIED), 200, -31011),
        (call(" tools/call", DENIED), 200, -31011),
        (call("tools/call", "secret___read"), 200, -31010),
        (call("tools/call", "SECRET___READ"), 200, -31010),
        (call("tools/call", " Secret___read"), 200, -32602),
        (call("tools/call", "Secret___read\t"), 200, -32602),
        (
            r#"{"jsonrpc":"2.0","id":9,"method":"TOOLS/LIST"}"#.to_string(),
            200,
            -31011,
        ),
    ] {
        let answer = post(&rig, &body, &[]).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.body);
        assert_eq!(
            answer.json()["error"]["code"],
            code,
            "{body}: {}",
            answer.body
        );
        assert_eq!(answer.json()["id"], 9);
    }
    assert!(rig.upstream.seen().is_empty(), "none reached the gateway");
}

#[tokio::test]
async fn mirrored_headers_that_disagree_with_the_body_are_refused() {
    let script = |_: &Seen| Scripted::json(r#"{"jsonrpc":"2.0","id":4,"result":{"content":[]}}"#);
    let rig = rig(POLICY, script).await;
    let call = r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"Demo___echo","arguments":{}}}"#;
    for headers in [
        &[("mcp-method", "tools/call"), ("mcp-name", DENIED)][..],
        &[("mcp-method", "tools/list")][..],
        &[("mcp-name", "=?base64?U2VjcmV0X19fcmVhZA==?=")][..],
    ] {
        let answer = post(&rig, call, headers).await;
        assert_eq!(answer.status, 400, "{headers:?}: {}", answer.body);
        let m = answer.json();
        assert_eq!(m["error"]["code"], -32020, "{m}");
        assert_eq!(m["id"], 4);
    }
    assert!(rig.upstream.seen().is_empty());
    let agreeing = post(
        &rig,
        call,
        &[("mcp-method", "tools/call"), ("mcp-name", "Demo___echo")],
    )
    .await;
    assert_eq!(agreeing.status, 200, "{}", agreeing.body);
    assert_eq!(rig.upstream.seen().len(), 1);
}

#[tokio::test]
async fn batches_are_capped_and_each_call_takes_a_rate_token() {
    let script = |seen: &Seen| {
        let answers: Vec<Value> = seen
            .json()
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| json!({"jsonrpc":"2.0","id":m["id"],"result":{"content":[]}}))
            .collect();
        Scripted::json(Value::Array(answers).to_string())
    };
    // One token per ten seconds: the bucket cannot refill between the requests below,
    // however slow the machine.
    let rig = rig(
        "[route.policy]\nrequests_per_second = 0.1\nburst = 3\nmax_batch = 8\n",
        script,
    )
    .await;
    let batch = |n: usize, from: usize| {
        let calls: Vec<Value> = (from..from + n)
            .map(|i| json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{"name":"Demo___echo","arguments":{}}}))
            .collect();
        Value::Array(calls).to_string()
    };
    let too_big = post(&rig, &batch(9, 0), &[]).await;
    assert_eq!(too_big.status, 400);
    assert!(
        too_big.body.contains("at most 8 (policy.max_batch)"),
        "{}",
        too_big.body
    );
    let over_burst = post(&rig, &batch(5, 0), &[]).await;
    assert_eq!(over_burst.status, 400);
    assert!(
        over_burst.body.contains("policy.burst = 3"),
        "{}",
        over_burst.body
    );
    let within = post(&rig, &batch(3, 0), &[]).await;
    assert_eq!(within.status, 200, "{}", within.body);
    assert_eq!(within.json().as_array().unwrap().len(), 3);
    let next = post(&rig, &batch(2, 3), &[]).await;
    assert_eq!(
        next.status, 429,
        "the three tokens are spent: {}",
        next.body
    );
    assert!(next.headers.contains_key("retry-after"));
    assert_eq!(
        rig.upstream.seen().len(),
        1,
        "only the batch within the rate went on"
    );
}

#[tokio::test]
async fn a_filtered_batch_reaches_the_gateway_declared_by_the_length_of_what_is_left() {
    // The agent's own Content-Length is kept only while it is true: a refused element
    // shortens the body, and the gateway must not be told the agent's length.
    let rig = rig(POLICY, |seen: &Seen| {
        let answers: Vec<Value> = seen
            .json()
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| json!({"jsonrpc": "2.0", "id": m["id"], "result": {"content": []}}))
            .collect();
        Scripted::json(Value::Array(answers).to_string())
    })
    .await;
    let call = |id: u32, tool: &str| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {}}});
    let batch = json!([call(1, "Demo___echo"), call(2, DENIED)]).to_string();
    let answer = post(&rig, &batch, &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let single = call(3, "Demo___echo").to_string();
    let answer = post(&rig, &single, &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    let seen = rig.upstream.seen();
    assert_eq!(seen.len(), 2);
    let declared = |s: &Seen| {
        let values: Vec<&str> = s
            .headers
            .get_all("content-length")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        values.join(",")
    };
    assert!(
        seen[0].body.len() < batch.len(),
        "the denied call was dropped"
    );
    assert_eq!(seen[0].json().as_array().map(Vec::len), Some(1));
    assert_eq!(declared(&seen[0]), seen[0].body.len().to_string());
    assert_eq!(
        &seen[1].body[..],
        single.as_bytes(),
        "a kept body goes as it came"
    );
    assert_eq!(declared(&seen[1]), single.len().to_string());
}
