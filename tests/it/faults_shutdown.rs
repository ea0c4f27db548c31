//! SIGTERM under load: with 50 JSON calls and 10 SSE streams in flight, the proxy stops
//! accepting at once, lets every one of them finish, and exits as soon as they have;
//! what is still running when the grace period ends is cut then, not before.

use std::time::Duration;

use crate::common::agents::{rpc, Ending, Open};
use crate::common::dns::DnsServer;
use crate::common::faulty_upstream::{self, Fault, FaultyUpstream, PROGRESS_EVENT};
use crate::common::http::post_rpc;
use crate::common::proxy::head;
use crate::common::proxy_process::ProxyProcess;
use crate::common::upstream::ENDPOINT_HOST;
use serde_json::json;

const CALLS: u64 = 50;
const STREAMS: u64 = 10;

async fn start(grace: &str) -> (FaultyUpstream, DnsServer, ProxyProcess) {
    let upstream = FaultyUpstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let toml = format!("{}{}", head(&dns), upstream.route("")).replace(
        "shutdown_grace = \"5s\"",
        &format!("shutdown_grace = \"{grace}\""),
    );
    let proxy = ProxyProcess::start(&toml).await;
    (upstream, dns, proxy)
}

async fn wait_for_requests(upstream: &FaultyUpstream, n: usize) {
    for _ in 0..1200 {
        if upstream.requests().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "the upstream saw {} of {n} requests",
        upstream.requests().len()
    );
}

async fn wait_until_not_accepting(proxy: &ProxyProcess) {
    for _ in 0..500 {
        if !proxy.accepting().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("still accepting connections after SIGTERM");
}

#[tokio::test]
async fn sigterm_lets_fifty_calls_and_ten_streams_finish_then_exits() {
    let (upstream, _dns, mut proxy) = start("30s").await;
    let url = proxy.url();

    upstream.script(&[Fault::AnswerWhenReleased; CALLS as usize]);
    let calls: Vec<_> = (0..CALLS)
        .map(|id| {
            let url = url.clone();
            tokio::spawn(async move { post_rpc(&url, &rpc(id)).await })
        })
        .collect();
    wait_for_requests(&upstream, CALLS as usize).await;

    upstream.script(&[Fault::SseWhenReleased; STREAMS as usize]);
    let mut streams = Vec::new();
    for id in CALLS..CALLS + STREAMS {
        let mut open = Open::post(&url, &rpc(id)).await;
        assert_eq!(open.headers["content-type"], "text/event-stream");
        open.read_until(PROGRESS_EVENT).await;
        streams.push((id, open));
    }

    proxy.sigterm();
    wait_until_not_accepting(&proxy).await;
    assert!(
        proxy.exited().is_none(),
        "exited with {} requests in flight",
        CALLS + STREAMS
    );

    upstream.release((CALLS + STREAMS) as usize);
    for (id, call) in calls.into_iter().enumerate() {
        let answer = call.await.unwrap();
        assert_eq!(answer.status, 200, "call {id}: {}", answer.body);
        assert_eq!(
            answer.body,
            faulty_upstream::answer(&json!(id), "127.0.0.1")
        );
    }
    for (id, mut stream) in streams {
        assert_eq!(stream.finish().await, Ending::Complete, "stream {id}");
        assert_eq!(
            stream.text(),
            format!(
                "{PROGRESS_EVENT}event: message\ndata: {}\n\n",
                faulty_upstream::answer(&json!(id), "127.0.0.1")
            ),
            "stream {id} arrived whole"
        );
    }
    // Done as soon as the last one finished, well inside the 30 s grace period.
    let status = proxy.wait_exit(Duration::from_secs(25)).await;
    assert!(status.success(), "{status:?}: {}", proxy.log());
    assert_eq!(upstream.requests().len(), (CALLS + STREAMS) as usize);
}

#[tokio::test]
async fn a_stream_still_open_when_the_grace_period_ends_is_cut_then() {
    let (upstream, _dns, mut proxy) = start("1s").await;
    upstream.script(&[Fault::SseWhenReleased]);
    let mut stream = Open::post(&proxy.url(), &rpc(1)).await;
    stream.read_until(PROGRESS_EVENT).await;
    proxy.sigterm();
    // Never released: the stream outlives the grace period.
    let status = proxy.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status:?}: {}", proxy.log());
    assert!(
        matches!(stream.finish().await, Ending::Broken(_)),
        "the agent sees the stream cut"
    );
    assert_eq!(stream.text(), PROGRESS_EVENT);
}
