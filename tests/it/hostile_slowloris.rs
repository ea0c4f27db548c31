//! Slowloris: clients that send their request head a byte at a time, or nothing at all,
//! to hold connections. `limits.header_read_timeout` closes them (without an answer, as
//! hyper's own header timeout does; each connection's watchdog keeps that deadline, see
//! `listener::watchdog`), while well-behaved agents keep being served and memory stays
//! bounded.

use std::time::Duration;

use crate::common::agents::Bystanders;
use crate::common::dns::DnsServer;
use crate::common::faulty_upstream::FaultyUpstream;
use crate::common::http::post_keep_alive;
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
    let mut stream = post_keep_alive(proxy.addr(), body).await;
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
    let mut answer = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(10), preface.read_to_end(&mut answer)).await;
    assert!(
        closed.is_ok(),
        "a connection stuck in its h2 preface is closed"
    );
}

/// The head deadline counts from the previous answer too: an agent that was served once
/// and then sends its next head a byte at a time is cut off like one that never was.
#[tokio::test]
async fn a_slow_second_head_on_a_keep_alive_connection_is_cut_off() {
    let (upstream, _dns, proxy) = rig("header_read_timeout = \"1s\"").await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let mut stream = post_keep_alive(proxy.addr(), body).await;
    let first = read_one_answer(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");

    // The next head, a byte every 50 ms: 7.7 s of it, against a 1 s deadline.
    for byte in SLOW_HEAD {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
        .await
        .expect("the connection was closed by the proxy")
        .ok();
    assert_eq!(String::from_utf8_lossy(&rest), "");
    assert_eq!(upstream.requests().len(), 1);
}

/// An h2c connection that sends its preface and SETTINGS and then no request is held to
/// the head deadline too, not only to the (longer) idle one: otherwise such connections
/// would hold their `max_connections` slots for `idle_connection_timeout`.
#[tokio::test]
async fn an_h2c_connection_with_no_request_is_closed_at_the_header_read_timeout() {
    let (_upstream, _dns, proxy) =
        rig("header_read_timeout = \"1s\"\nidle_connection_timeout = \"1h\"").await;
    let tcp = TcpStream::connect(proxy.addr()).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), connection).await;
    assert!(ended.is_ok(), "the connection was closed by the proxy");
    drop(client);
}

/// Reads one HTTP/1.1 answer with a `content-length` from `stream`, and nothing more.
async fn read_one_answer(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before the whole answer");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .expect("a content-length");
            if got.len() >= end + 4 + length {
                return text;
            }
        }
    }
}
