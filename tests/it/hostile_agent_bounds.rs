//! What a hostile agent can grow stays bounded, and what it writes cannot forge the
//! proxy's own records: metric series per made-up tool name, the audit trail (flooded by
//! refused batches, broken by arguments with line breaks), the text log (line breaks and
//! terminal escapes in a method name).

use crate::common::dns::DnsServer;
use crate::common::http::{send, Answer};
use crate::common::proxy::{head, Proxy};
use crate::common::proxy_process::ProxyProcess;
use crate::common::scripted_upstream::{Scripted, ScriptedUpstream, Seen};
use crate::common::upstream::GATEWAY_HOST;
use serde_json::{json, Value};

fn echo_calls(seen: &Seen) -> Scripted {
    let answer =
        |m: &Value| json!({"jsonrpc":"2.0","id":m["id"],"result":{"content":[],"isError":false}});
    let body = seen.json();
    Scripted::json(match body.as_array() {
        Some(batch) => Value::Array(batch.iter().map(answer).collect()).to_string(),
        None => answer(&body).to_string(),
    })
}

async fn route_toml(dns: &DnsServer, upstream: &ScriptedUpstream, extra: &str) -> String {
    format!(
        r#"{head}
[[route]]
{extra_route}
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
ca_file = "{ca}"
credential = {{ type = "passthrough" }}
"#,
        head = head(dns),
        port = upstream.port(),
        ca = upstream.ca_file().display(),
        extra_route = extra,
    )
}

async fn post(url: &str, body: &str) -> Answer {
    send(
        "POST",
        url,
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ],
        body.to_string(),
    )
    .await
}

fn call(id: usize, tool: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{}}})
}

#[tokio::test]
async fn made_up_tool_names_add_no_metric_series() {
    let upstream = ScriptedUpstream::start(echo_calls).await;
    let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
    let toml = route_toml(&dns, &upstream, "name = \"bounds-metrics\"").await
        + "[route.policy]\nallow_tools = [\"Real___*\"]\n";
    let proxy = Proxy::start(&toml).await;
    // 20 batches of 50 refused made-up names, and a real tool the gateway runs.
    for b in 0..20 {
        let batch: Vec<Value> = (0..50)
            .map(|i| call(b * 50 + i, &format!("Fake___name_{b}_{i}")))
            .collect();
        let answer = post(&proxy.url(), &Value::Array(batch).to_string()).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let answer = post(&proxy.url(), &call(5000, "Real___tool").to_string()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    let metrics = mcp_vpce_proxy::ops::metrics::metrics().encode();
    let ours: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("mcp_vpce_proxy_tool_calls_total{route=\"bounds-metrics\""))
        .collect();
    let mut ours = ours;
    ours.sort();
    assert_eq!(
        ours,
        [
            "mcp_vpce_proxy_tool_calls_total{route=\"bounds-metrics\",tool=\"Real___tool\",outcome=\"ok\"} 1",
            "mcp_vpce_proxy_tool_calls_total{route=\"bounds-metrics\",tool=\"other\",outcome=\"refused\"} 1000",
        ],
        "one series for every made-up name"
    );
    assert!(!metrics.contains("Fake___name"));
}

#[tokio::test]
async fn audit_lines_cannot_be_forged_and_refused_batches_cannot_flood_it() {
    let upstream = ScriptedUpstream::start(echo_calls).await;
    let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let toml = route_toml(&dns, &upstream, "").await
        + &format!(
            "[route.policy]\ndeny_tools = [\"Secret___*\"]\nlog_arguments = true\n\n[audit]\nto = \"file\"\npath = \"{}\"\n",
            audit.display()
        );
    let proxy = Proxy::start(&toml).await;
    // Arguments with raw line breaks between tokens, and a second "record" after them.
    let forged = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"Demo___echo\",\"arguments\":{\"a\":\n1,\"b\":\n{\"time\":\"2026-01-01T00:00:00Z\",\"outcome\":\"ok\",\"tool\":\"Secret___read\"}}}}";
    let answer = post(&proxy.url(), forged).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // A batch larger than the cap writes no record per element.
    let flood: Vec<Value> = (0..1000).map(|i| call(i, "Secret___read")).collect();
    let answer = post(&proxy.url(), &Value::Array(flood).to_string()).await;
    assert_eq!(answer.status, 400);
    // Records reach the file as the writer drains its queue; the proxy stays up.

    let mut lines = Vec::new();
    for _ in 0..200 {
        lines = std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if lines.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let records: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: a broken line {l:?}")))
        .collect();
    assert_eq!(
        records.len(),
        2,
        "the call and the refused batch: {records:#?}"
    );
    assert_eq!(records[0]["tool"], "Demo___echo");
    assert_eq!(
        records[0]["arguments"],
        json!({"a":1,"b":{"time":"2026-01-01T00:00:00Z","outcome":"ok","tool":"Secret___read"}})
    );
    assert_eq!(records[1]["method"], "batch");
    assert_eq!(records[1]["reason"], "invalid_request");
}

#[tokio::test]
async fn a_method_name_cannot_forge_log_lines_or_carry_terminal_escapes() {
    let upstream = ScriptedUpstream::start(echo_calls).await;
    let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
    let toml =
        route_toml(&dns, &upstream, "").await + "[route.policy]\ndeny_tools = [\"Secret___*\"]\n";
    let proxy = ProxyProcess::start(&toml).await;
    let forged = "x\n2026-11-30T00:00:00.000000Z  WARN mcp_vpce_proxy::access: FORGED \u{1b}[2J";
    for body in [
        json!({"jsonrpc":"2.0","id":1,"method":forged}),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":forged,"arguments":{}}}),
    ] {
        let answer = post(&proxy.url(), &body.to_string()).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(answer.json()["error"].is_object(), "{}", answer.body);
    }
    let log = proxy.log();
    assert!(
        log.matches("answered by the MCP layer").count() >= 2,
        "the refusals were logged: {log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "a raw escape reached the log: {log:?}"
    );
    assert!(
        !log.lines()
            .any(|l| l.starts_with("2026-11-30T00:00:00.000000Z")),
        "a forged line: {log}"
    );
}
