//! One request, one record: every request — forwarded, refused before routing, refused
//! or answered by the MCP layer, failed upstream, or abandoned by its agent — gets
//! exactly one access line, is counted once, and (when refused) leaves one audit record,
//! written from its one context (`exchange::context`).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::dns::DnsServer;
use crate::common::faulty_upstream::{Fault, FaultyUpstream};
use crate::common::http::send;
use crate::common::proxy::head;
use crate::common::proxy_process::ProxyProcess;
use crate::common::upstream::ENDPOINT_HOST;

const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"Demo___echo","arguments":{}}}"#;

async fn start(audit: &Path) -> (FaultyUpstream, DnsServer, ProxyProcess) {
    let upstream = FaultyUpstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let toml = format!(
        "{}[audit]\nto = \"file\"\npath = \"{}\"\n{}[route.policy]\ndeny_tools = [\"Secret___*\"]\n",
        head(&dns),
        audit.display(),
        upstream.route("name = \"life\"")
    );
    let proxy =
        ProxyProcess::start_with_args(&toml, &["--log-level", "info", "--log-format", "json"])
            .await;
    (upstream, dns, proxy)
}

/// The access lines of the proxy's log, as JSON.
fn access_lines(proxy: &ProxyProcess) -> Vec<Value> {
    proxy
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "mcp_vpce_proxy::access")
        .collect()
}

/// Waits until the proxy has written `n` access lines; returns them.
async fn wait_for_lines(proxy: &ProxyProcess, n: usize) -> Vec<Value> {
    for _ in 0..400 {
        let lines = access_lines(proxy);
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} access lines:\n{}", proxy.log());
}

fn audit_records(path: &Path, n: usize) -> Vec<Value> {
    for _ in 0..400 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let records: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if records.len() >= n {
            return records;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("fewer than {n} audit records in {}", path.display());
}

fn post_headers() -> [(&'static str, &'static str); 2] {
    [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ]
}

#[tokio::test]
async fn every_outcome_writes_exactly_one_access_line_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let (upstream, _dns, proxy) = start(&audit).await;
    let url = proxy.url();

    // Forwarded and read to its last byte: `ok` — never "client went away".
    upstream.script(&[Fault::Answer]);
    let answer = send("POST", &url, &post_headers(), CALL).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // Refused by the policy, answered by the MCP layer.
    let denied = CALL.replace("Demo___echo", "Secret___read");
    let answer = send("POST", &url, &post_headers(), denied).await;
    assert_eq!(answer.json()["error"]["data"]["reason"], "tool_refused");
    // Refused before routing: an unknown path, and by the inbound guard (a foreign Origin).
    let unknown = url.replace("/mcp", "/nowhere");
    assert_eq!(
        send("POST", &unknown, &post_headers(), CALL).await.status,
        404
    );
    let mut foreign = post_headers().to_vec();
    foreign.push(("origin", "http://evil.example"));
    assert_eq!(send("POST", &url, &foreign, CALL).await.status, 403);
    // Not JSON: refused by the MCP layer's validation as a whole.
    let answer = send("POST", &url, &post_headers(), "{not json").await;
    assert_eq!(answer.status, 400, "{}", answer.body);

    let lines = wait_for_lines(&proxy, 5).await;
    // Give a late duplicate the chance to show.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines_after = access_lines(&proxy);
    assert_eq!(
        lines_after.len(),
        5,
        "one line per request: {lines_after:#?}"
    );
    let outcomes: Vec<(&str, &str, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["route"].as_str().unwrap(),
                l["outcome"].as_str().unwrap(),
                l["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("life", "ok", 200),
            ("life", "answered", 200),
            ("-", "refused", 404),
            ("-", "refused", 403),
            ("life", "refused", 400),
        ]
    );
    assert_eq!(lines[0]["rpc_method"], "tools/call");
    assert_eq!(lines[2]["reason"], "unknown_route");
    assert_eq!(lines[3]["reason"], "origin_refused");
    assert_eq!(lines[4]["reason"], "parse_error");
    // The first request opened the connection: its line says where that time went; the
    // next forwarded one would reuse it.
    for field in [
        "credential_ms",
        "dns_ms",
        "connect_ms",
        "tls_ms",
        "upstream_ms",
    ] {
        assert!(
            lines[0][field].as_f64().is_some(),
            "{field}: {:#}",
            lines[0]
        );
    }
    assert!(lines[2]["upstream_ms"].is_null(), "{:#}", lines[2]);

    // Every refusal is in the audit trail, the inbound guard's and the router's too,
    // after the forwarded call's own record.
    let records = audit_records(&audit, 5);
    let reasons: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["route"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
                r["reason"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("life", "ok", "-"),
            ("life", "refused", "tool_refused"),
            ("-", "refused", "unknown_route"),
            ("-", "refused", "origin_refused"),
            ("life", "refused", "parse_error")
        ]
    );
    assert_eq!(records[3]["status"], 403);
    assert_eq!(records[3]["method"], "POST");
}

#[tokio::test]
async fn an_agent_that_goes_away_before_the_answer_is_logged_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let (upstream, _dns, proxy) = start(&audit).await;
    upstream.script(&[Fault::AnswerWhenReleased]);
    let mut agent = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n{CALL}",
        CALL.len()
    );
    tokio::io::AsyncWriteExt::write_all(&mut agent, request.as_bytes())
        .await
        .unwrap();
    for _ in 0..400 {
        if !upstream.requests().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(upstream.requests().len(), 1);
    // The agent gives up while the gateway is still working on it.
    drop(agent);
    let lines = wait_for_lines(&proxy, 1).await;
    assert_eq!(lines[0]["outcome"], "client_gone", "{:#}", lines[0]);
    assert_eq!(lines[0]["status"], 499);
    assert_eq!(lines[0]["bytes_out"], 0);
    // The gateway answers later: nothing more is written for that request.
    upstream.release(1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(access_lines(&proxy).len(), 1, "{}", proxy.log());
}
