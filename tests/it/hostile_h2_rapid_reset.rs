//! HTTP/2 rapid reset (CVE-2023-44487): an h2c client opens streams and resets them at
//! once, as fast as it can. The h2 server behind the proxy counts the resets and ends the
//! connection with `GOAWAY ENHANCE_YOUR_CALM` ("too_many_resets"); the reset streams
//! never reach the gateway, agents over HTTP/1.1 and over other h2c connections are
//! served meanwhile, and memory stays bounded.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use crate::common::agents::Bystanders;
use crate::common::dns::DnsServer;
use crate::common::faulty_upstream::FaultyUpstream;
use crate::common::proxy::head;
use crate::common::proxy_process::ProxyProcess;
use crate::common::upstream::ENDPOINT_HOST;
use bytes::Bytes;
use tokio::net::TcpStream;

const PING: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

async fn rig() -> (FaultyUpstream, DnsServer, ProxyProcess) {
    let upstream = FaultyUpstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = ProxyProcess::start(&format!("{}{}", head(&dns), upstream.route(""))).await;
    (upstream, dns, proxy)
}

fn attack(addr: SocketAddr) -> http::Request<()> {
    http::Request::post(format!("http://{addr}/mcp"))
        .header("content-type", "application/json")
        .header("x-attack", "rapid-reset")
        .body(())
        .unwrap()
}

/// How an attacking connection fared.
#[derive(Debug)]
enum Fate {
    /// The proxy ended it: GOAWAY ENHANCE_YOUR_CALM, or (when the attacker was still
    /// writing its queued streams) a broken pipe before the GOAWAY was read.
    Ended,
    /// Still open after the attack: the proxy kept up, every stream was answered.
    Open,
}

/// Opens and resets `streams` streams on one h2c connection as fast as the client
/// library sends them, then stops writing and waits 3 s for the proxy's verdict.
async fn rapid_reset(addr: SocketAddr, streams: usize) -> Fate {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    for _ in 0..streams {
        client = match client.ready().await {
            Ok(client) => client,
            Err(_) => break,
        };
        match client.send_request(attack(addr), false) {
            Ok((_, mut body)) => body.send_reset(h2::Reason::CANCEL),
            Err(_) => break,
        }
    }
    match tokio::time::timeout(Duration::from_secs(3), connection).await {
        Err(_) => Fate::Open,
        Ok(ended) => {
            let error = ended
                .unwrap()
                .expect_err("the proxy never ends a connection cleanly here");
            let broken = error.get_io().is_some_and(|e| {
                matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset)
            });
            assert!(
                error.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) || broken,
                "{error}"
            );
            Fate::Ended
        }
    }
}

#[tokio::test]
async fn a_burst_of_reset_streams_is_stopped_with_enhance_your_calm() {
    let (upstream, _dns, proxy) = rig().await;
    // One burst, as the attack sends it; h2 counts streams reset before they were
    // accepted and sends GOAWAY past 20.
    assert!(matches!(rapid_reset(proxy.addr(), 200).await, Fate::Ended));
    assert!(upstream
        .requests()
        .iter()
        .all(|r| r.header("x-attack").is_none()));
}

#[tokio::test]
async fn agents_are_served_during_rapid_resets_and_memory_stays_bounded() {
    let (upstream, _dns, proxy) = rig().await;
    let bystanders = Bystanders::start(&proxy.url(), 4, Duration::from_millis(20));
    bystanders.wait_for_more(5).await;
    // An agent of its own on h2c, on a connection that behaves.
    let tcp = TcpStream::connect(proxy.addr()).await.unwrap();
    let (h2_agent, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);

    let attackers: Vec<_> = (0..20)
        .map(|_| tokio::spawn(rapid_reset(proxy.addr(), 1_000)))
        .collect();
    for attacker in attackers {
        // Ended or kept up with; either way bounded, and checked below.
        let _fate: Fate = attacker.await.unwrap();
    }
    proxy.assert_rss_below(64, "after 20 rapid-reset connections");

    let mut h2_agent = h2_agent.ready().await.unwrap();
    let (response, mut body) = h2_agent
        .send_request(
            http::Request::post(proxy.url())
                .header("content-type", "application/json")
                .body(())
                .unwrap(),
            false,
        )
        .unwrap();
    body.send_data(Bytes::from_static(PING), true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);

    bystanders.wait_for_more(10).await;
    bystanders.assert_all_succeeded(15).await;
    assert!(upstream
        .requests()
        .iter()
        .all(|r| r.header("x-attack").is_none()));
}
