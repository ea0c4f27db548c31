//! Slowloris: clients that send their request head a byte at a time, or nothing at all,
//! to hold connections. `limits.header_read_timeout` closes them (without an answer:
//! hyper's behaviour), while well-behaved agents keep being served and memory stays
//! bounded.

use std::time::Duration;

use crate::common::agents::Bystanders;
use crate::common::dns::DnsServer;
use crate::common::faulty_upstream::FaultyUpstream;
use crate::common::proxy::head;
use crate::common::proxy_process::ProxyProcess;
use crate::common::upstream::ENDPOINT_HOST;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn rig(limits: &str) -> (FaultyUpstream, DnsServer, ProxyProcess) {
    let upstream = FaultyUpstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = ProxyProcess::start(&format!(
        "{}\n[limits]\n{limits}\n{}",
        head(&dns),
        upstream.route("")
    ))
    .await;
    (upstream, dns, proxy)
}

const SLOW_HEAD: &[u8] = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";

/// Sends `SLOW_HEAD` a byte every `pause` and never finishes it; returns what came back
/// once the proxy closed the connection, or None if it was still open when the head ran
/// out.
async fn slowloris(addr: std::net::SocketAddr, pause: Duration) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for byte in SLOW_HEAD {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    let mut answer = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await {
        Ok(_) => Some(answer),
        Err(_) => None,
    }
}

#[tokio::test]
async fn heads_sent_a_byte_at_a_time_are_cut_off_and_agents_carry_on() {
    let (upstream, _dns, proxy) = rig("header_read_timeout = \"1s\"").await;
    let bystanders = Bystanders::start(&proxy.url(), 4, Duration::from_millis(50));
    bystanders.wait_for_more(5).await;

    // 200 connections, each taking longer than the timeout to send its head.
    let attackers: Vec<_> = (0..200)
        .map(|_| tokio::spawn(slowloris(proxy.addr(), Duration::from_millis(50))))
        .collect();
    bystanders.wait_for_more(20).await;
    proxy.assert_rss_below(64, "with 200 slowloris connections open");
    for attacker in attackers {
        let answer = attacker
            .await
            .unwrap()
            .expect("the connection was closed by the proxy");
        // Closed without a word: hyper answers a header timeout with nothing.
        assert_eq!(String::from_utf8_lossy(&answer), "");
    }
    bystanders.wait_for_more(5).await;
    bystanders.assert_all_succeeded(30).await;
    // Only the bystanders' requests reached the gateway.
    assert!(upstream
        .requests()
        .iter()
        .all(|r| r.header("x-padding").is_none()));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    let (_upstream, _dns, proxy) = rig("header_read_timeout = \"1s\"").await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    stream
        .write_all(
            format!(
                "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the idle connection is closed")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(!answer.contains("connection: close"), "{answer}");
}

/// Connections that send nothing (or a few bytes of the h2 preface) before the HTTP
/// version is known are closed after `header_read_timeout` too: hyper-util's
/// HTTP/1-or-h2 detection has no timeout of its own, and without this, enough silent
/// connections would take every `max_connections` slot and lock agents out.
#[tokio::test]
async fn silent_connections_do_not_lock_agents_out() {
    let (_upstream, _dns, proxy) = rig("header_read_timeout = \"1s\"\nmax_connections = 10").await;
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(TcpStream::connect(proxy.addr()).await.unwrap());
    }
    // A slow h2 preface is the same: under 24 bytes, the detection waits.
    let mut preface = TcpStream::connect(proxy.addr()).await.unwrap();
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let bystanders = Bystanders::start(&proxy.url(), 1, Duration::from_millis(50));
    bystanders.wait_for_more(3).await;
    bystanders.assert_all_succeeded(3).await;
    for mut stream in silent {
        let mut answer = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        assert!(closed.is_ok(), "a silent connection is closed");
    }
}
