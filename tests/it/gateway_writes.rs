//! What a forwarded request costs on the gateway's connection: a small POST's HEADERS and
//! DATA reach the gateway in one TLS record (one write), not one record per frame; a body
//! larger than one record still arrives whole.

use crate::common::http::post_rpc;
use crate::common::proxy::{Mode, Setup};
use crate::common::upstream::UpstreamOptions;

#[tokio::test]
async fn a_small_post_reaches_the_gateway_in_one_tls_record() {
    let s = Setup::start(Mode::PrivateDnsOff).await;
    let ping = |i: usize| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"ping"}}"#);
    // The first request opens the connection: TLS handshake, h2 preface and settings.
    let first = post_rpc(&s.proxy.url(), &ping(0)).await;
    assert!(first.status.as_u16() < 500, "{}", first.body);
    let before = s.upstream.client_records();
    for i in 1..=10 {
        let answer = post_rpc(&s.proxy.url(), &ping(i)).await;
        assert!(answer.status.as_u16() < 500, "{}", answer.body);
    }
    // HEADERS and DATA of each request in one record (they were two: HEADERS went out
    // when the stream opened, DATA once h2 had given the stream send capacity).
    assert_eq!(s.upstream.client_records() - before, 10);
    assert_eq!(s.upstream.connections(), 1);
}

#[tokio::test]
async fn a_body_larger_than_a_tls_record_arrives_whole() {
    let options = UpstreamOptions {
        record_bodies: true,
        ..UpstreamOptions::default()
    };
    let s = Setup::start_with(Mode::PrivateDnsOff, options, "").await;
    let text = "x".repeat(100_000);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"DemoTarget___echo","arguments":{{"text":"{text}"}}}}}}"#
    );
    let answer = post_rpc(&s.proxy.url(), &body).await;
    assert!(answer.status.as_u16() < 500, "{}", answer.body);
    let seen = s.upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, body.as_bytes());
}
