//! The audit trail: one JSON line per tools/call and per refused request, every field
//! checked; the `tool_calls` metric; and an audit output that stalls never holds up a
//! request (what does not fit the queue is dropped and counted in the trail itself).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::client;
use crate::common::dns::DnsServer;
use crate::common::http::post_rpc;
use crate::common::proxy::{head, Mode, Proxy, Setup};
use crate::common::upstream::{ENDPOINT_HOST, GATEWAY_HOST};
use rmcp::ServiceError;
use serde_json::{json, Value};

fn audit_table(path: &Path, extra: &str) -> String {
    format!(
        "[audit]\nto = \"file\"\npath = \"{}\"\n{extra}",
        path.display()
    )
}

/// Waits (bounded) until the file holds `n` lines, and returns them parsed.
fn lines(path: &Path, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    for _ in 0..500 {
        got = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if got.len() >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(got.len(), n, "{got:#?}");
    got
}

fn check_common(r: &Value) {
    let time = r["time"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(time).is_ok(), "{time}");
    assert!(time.ends_with('Z'));
    assert_eq!(r["route"], "mcp");
    assert!(r["duration_ms"].as_f64().unwrap() >= 0.0);
}

#[tokio::test]
async fn every_tool_call_outcome_is_recorded_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let policy = "[route.policy]\ndeny_tools = [\"OtherTarget___*\"]\n";
    let s = Setup::start_with(
        Mode::PrivateDnsOff,
        Default::default(),
        &format!("{policy}{}", audit_table(&path, "")),
    )
    .await;
    let agent = client::connect(&s.proxy.url()).await;
    // The gateway lists its tools (the denied ones too, to the proxy): their names may then
    // label the metric, refused or not. A name no gateway listed would count as `other`.
    agent.list_all_tools().await.unwrap();
    client::call_tool(&agent, "DemoTarget___echo", json!({"text": "secret data"})).await;
    client::call_tool(&agent, "DemoTarget___fail", json!({})).await;
    let ServiceError::McpError(unknown) =
        client::try_call_tool(&agent, "DemoTarget___nope", json!({}))
            .await
            .unwrap_err()
    else {
        panic!("a JSON-RPC error")
    };
    client::try_call_tool(
        &agent,
        "OtherTarget___delete_everything",
        json!({"all": true}),
    )
    .await
    .unwrap_err();
    agent.cancel().await.unwrap();

    let records = lines(&path, 4);
    let session = records[0]["session"]
        .as_str()
        .expect("the session id")
        .to_string();
    for r in &records {
        check_common(r);
        assert_eq!(r["method"], "tools/call");
        assert_eq!(r["session"], session.as_str());
        assert!(r["id"].is_number(), "{r}");
        assert!(r["request_bytes"].as_u64().unwrap() > 50, "{r}");
        assert!(
            r.get("arguments").is_none(),
            "arguments are not logged by default"
        );
        assert!(!r.to_string().contains("secret data"));
    }
    let by_tool = |tool: &str| records.iter().find(|r| r["tool"] == tool).unwrap();

    let ok = by_tool("DemoTarget___echo");
    assert_eq!(ok["outcome"], "ok");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["error_code"], Value::Null);
    assert_eq!(ok["reason"], Value::Null);
    assert!(ok["response_bytes"].as_u64().unwrap() > 0);

    let failed = by_tool("DemoTarget___fail");
    assert_eq!(failed["outcome"], "tool_error");
    assert_eq!(failed["status"], 200);

    let unknown_record = by_tool("DemoTarget___nope");
    assert_eq!(unknown_record["outcome"], "rpc_error");
    assert_eq!(unknown_record["error_code"], unknown.code.0);

    let refused = by_tool("OtherTarget___delete_everything");
    assert_eq!(refused["outcome"], "refused");
    assert_eq!(refused["reason"], "tool_refused");
    assert_eq!(refused["error_code"], -31010);
    assert_eq!(refused["status"], 200);
    assert_eq!(refused["response_bytes"], 0);

    let metrics = mcp_vpce_proxy::ops::metrics::metrics().encode();
    for line in [
        "mcp_vpce_proxy_tool_calls_total{route=\"mcp\",tool=\"DemoTarget___echo\",outcome=\"ok\"}",
        "mcp_vpce_proxy_tool_calls_total{route=\"mcp\",tool=\"DemoTarget___fail\",outcome=\"tool_error\"}",
        "mcp_vpce_proxy_tool_calls_total{route=\"mcp\",tool=\"OtherTarget___delete_everything\",outcome=\"refused\"}",
        "mcp_vpce_proxy_refused_total{route=\"mcp\",reason=\"tool_refused\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

#[tokio::test]
async fn arguments_are_logged_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let s = Setup::start_with(
        Mode::PrivateDnsOff,
        Default::default(),
        &format!(
            "[route.policy]\nlog_arguments = true\n{}",
            audit_table(&path, "")
        ),
    )
    .await;
    let agent = client::connect(&s.proxy.url()).await;
    client::call_tool(&agent, "DemoTarget___echo", json!({"text": "logged"})).await;
    agent.cancel().await.unwrap();
    let records = lines(&path, 1);
    assert_eq!(records[0]["arguments"], json!({"text": "logged"}));
}

#[tokio::test]
async fn refusals_and_upstream_failures_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    // Nothing listens on the gateway's port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = Proxy::start(&format!(
        "{}\n{}\n[[route]]\ngateway = \"https://{GATEWAY_HOST}:{port}/mcp\"\nendpoint = \"{ENDPOINT_HOST}\"\nmax_body_bytes = 4096\n",
        head(&dns),
        audit_table(&path, ""),
    ))
    .await;
    let call = r#"{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"DemoTarget___echo","arguments":{"text":"x"}}}"#;
    let answer = post_rpc(&proxy.url(), call).await;
    assert_eq!(answer.status, 502);
    let garbage = post_rpc(&proxy.url(), "{not json").await;
    assert_eq!(garbage.status, 400);
    let too_big = post_rpc(&proxy.url(), &format!("[{}]", "1,".repeat(3000))).await;
    assert_eq!(too_big.status, 413);

    let records = lines(&path, 3);
    let failure = &records[0];
    check_common(failure);
    assert_eq!(failure["id"], "c1");
    assert_eq!(failure["tool"], "DemoTarget___echo");
    assert_eq!(failure["session"], Value::Null);
    assert_eq!(failure["outcome"], "upstream_failure");
    assert_eq!(failure["reason"], "unreachable");
    assert_eq!(failure["error_code"], -31000);
    assert_eq!(failure["status"], 502);
    assert_eq!(failure["request_bytes"], call.len());
    assert_eq!(failure["response_bytes"], 0);

    let refused = &records[1];
    check_common(refused);
    assert_eq!(refused["method"], "-");
    assert_eq!(refused["id"], Value::Null);
    assert_eq!(refused["tool"], Value::Null);
    assert_eq!(refused["outcome"], "refused");
    assert_eq!(refused["reason"], "parse_error");
    assert_eq!(refused["error_code"], -32700);
    assert_eq!(refused["status"], 400);
    assert_eq!(refused["request_bytes"], 9);

    // Refused before the body was read: the layer never saw it, the trail still does.
    let over = &records[2];
    check_common(over);
    assert_eq!(over["method"], "POST");
    assert_eq!(over["outcome"], "refused");
    assert_eq!(over["reason"], "body_too_large");
    assert_eq!(over["error_code"], -31006);
    assert_eq!(over["status"], 413);
}

fn mkfifo(path: &PathBuf) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_stalled_audit_output_never_holds_up_requests() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.fifo");
    // Nobody reads the FIFO yet: the writer blocks opening it, as on a stuck disk.
    mkfifo(&path);
    let s = Setup::start_with(
        Mode::PrivateDnsOff,
        Default::default(),
        &audit_table(&path, "queue = 4\n"),
    )
    .await;
    let agent = client::connect(&s.proxy.url()).await;
    const CALLS: u64 = 12;
    for i in 0..CALLS {
        let text = format!("call {i}");
        let result = client::call_tool(&agent, "DemoTarget___echo", json!({"text": text})).await;
        assert_eq!(client::first_text(&result), Some(text.as_str()));
    }
    agent.cancel().await.unwrap();

    // Now read the trail: what was queued, and a line saying how much was dropped.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let reader = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        for line in reader.lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let (mut records, mut dropped) = (0, 0);
    while records + dropped < CALLS {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the writer resumes once the output is readable");
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "audit_records_dropped" {
            dropped += v["dropped"].as_u64().unwrap();
        } else {
            assert_eq!(v["outcome"], "ok");
            records += 1;
        }
    }
    assert_eq!(records + dropped, CALLS);
    assert!(
        dropped >= CALLS - 5,
        "a queue of 4 (+1 being written) cannot hold more"
    );
}
