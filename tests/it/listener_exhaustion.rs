//! Exhausting the listener:
//! - connections held open with nothing in progress (an h2c preface and a SETTINGS
//!   frame, then silence), which would take every `limits.max_connections` slot.
//!   `limits.idle_connection_timeout` closes them, while a request in progress, an SSE
//!   stream silent for longer included, keeps its connection;
//! - request bodies started and never finished, many at once on one h2c connection or
//!   across several, each buffered by the proxy: `limits.max_buffered_bytes_per_connection`
//!   and `limits.max_buffered_bytes` bound what is held, the requests over them get 503
//!   (JSON-RPC -31015) with `Retry-After`, and the bytes come back when a body has been
//!   forwarded or dropped;
//! - Host headers that carry more than a host and a port into the URLs the proxy builds
//!   from them (passthrough routes' discovery documents and challenges), a second Host,
//!   an h2 `host` naming another authority than `:authority`: 400, nothing forwarded,
//!   and the rewrites only ever carry the re-serialised authority.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::agents::rpc;
use crate::common::dns::DnsServer;
use crate::common::faulty_upstream::FaultyUpstream;
use crate::common::http::{post_keep_alive, post_rpc, raw};
use crate::common::oauth_upstream::OAuthGateway;
use crate::common::proxy::{head, Mode, Proxy, Setup};
use crate::common::proxy_process::ProxyProcess;
use crate::common::upstream::{UpstreamOptions, ENDPOINT_HOST, GATEWAY_HOST};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A guard against a test hanging, never a bound the proxy is held to.
const GUARD: Duration = Duration::from_secs(30);

/// FaultyUpstream + DNS + the proxy in-process, with `limits` in `[limits]`.
async fn rig(limits: &str) -> (FaultyUpstream, DnsServer, Proxy) {
    let upstream = FaultyUpstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = Proxy::start(&format!(
        "{}\n[limits]\n{limits}\n{}",
        head(&dns),
        upstream.route("")
    ))
    .await;
    (upstream, dns, proxy)
}

// ---- Idle connections ------------------------------------------------------------

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// A SETTINGS frame with no settings: length 0, type 4, no flags, stream 0.
const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
const GOAWAY: u8 = 7;

/// An h2c connection that sends its preface and an empty SETTINGS frame, then nothing:
/// it never opens a stream and never answers the proxy's PINGs.
async fn idle_h2c(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(H2_PREFACE).await.unwrap();
    stream.write_all(&EMPTY_SETTINGS).await.unwrap();
    stream
}

/// Reads until the proxy closes the connection; what it sent. Panics when the
/// connection is still open after [`GUARD`].
async fn read_until_closed(mut stream: TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let closed = tokio::time::timeout(GUARD, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the proxy never closed the idle connection");
    received
}

/// The types of the HTTP/2 frames in `bytes` (the server's side has no preface).
fn frame_types(bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 9 {
        let length = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        types.push(rest[3]);
        rest = &rest[(9 + length).min(rest.len())..];
    }
    types
}

#[tokio::test]
async fn an_idle_h2c_connection_is_closed_after_the_idle_connection_timeout() {
    let (_upstream, _dns, proxy) = rig("idle_connection_timeout = \"1s\"").await;
    let received = read_until_closed(idle_h2c(proxy.addr).await).await;
    // Told first, with a GOAWAY, then closed.
    assert!(
        frame_types(&received).contains(&GOAWAY),
        "frames: {:?}",
        frame_types(&received)
    );
}

/// The reproduction: as many idle h2c connections as `max_connections` took every slot
/// for good, and agents waited in the accept queue for ever.
#[tokio::test]
async fn idle_h2c_connections_do_not_lock_agents_out() {
    let (upstream, _dns, proxy) =
        rig("idle_connection_timeout = \"1s\"\nmax_connections = 4").await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(idle_h2c(proxy.addr).await);
    }
    // Waits in the accept queue until a slot is given back.
    let answer = post_rpc(&proxy.url(), &rpc(7)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    for stream in idle {
        read_until_closed(stream).await;
    }
    assert_eq!(upstream.requests().len(), 1);
}

/// hyper's own HTTP/1 idle timeout (`header_read_timeout`, between requests) stays;
/// `idle_connection_timeout` closes a keep-alive connection too when it is the shorter.
#[tokio::test]
async fn an_idle_http1_keep_alive_connection_is_closed_after_the_idle_connection_timeout() {
    let (_upstream, _dns, proxy) =
        rig("idle_connection_timeout = \"1s\"\nheader_read_timeout = \"1h\"").await;
    let body = rpc(1);
    let stream = post_keep_alive(proxy.addr, &body).await;
    let answer = String::from_utf8_lossy(&read_until_closed(stream).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
}

/// An h2c connection to `addr` (prior knowledge), driven in the background; the task
/// ends when the connection does.
async fn h2c(
    addr: SocketAddr,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    (client, tokio::spawn(connection))
}

/// Sends one request with `headers` and `body` on `client`; the response head.
async fn h2_request(
    client: &mut h2::client::SendRequest<Bytes>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> http::Response<h2::RecvStream> {
    let mut request = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let ready = client.clone().ready();
    let mut sender = tokio::time::timeout(GUARD, ready).await.unwrap().unwrap();
    let (response, mut stream) = sender
        .send_request(request.body(()).unwrap(), body.is_empty())
        .unwrap();
    if !body.is_empty() {
        stream
            .send_data(Bytes::from(body.to_string()), true)
            .unwrap();
    }
    tokio::time::timeout(GUARD, response)
        .await
        .expect("an answer")
        .unwrap()
}

/// The whole body of `response`.
async fn h2_body(response: http::Response<h2::RecvStream>) -> String {
    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = tokio::time::timeout(GUARD, body.data()).await.unwrap() {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    String::from_utf8_lossy(&out).into_owned()
}

const POST: [(&str, &str); 2] = [
    ("content-type", "application/json"),
    ("accept", "application/json, text/event-stream"),
];

/// A request in progress keeps its connection: the MCP session's GET event stream, with
/// nothing on it for two and a half idle timeouts, stays open, and the connection
/// carries more calls. Once the stream is gone, the idle connection is closed. (The
/// timeout is 2 s rather than 1 s so that a slow machine's pause between the session's
/// first requests, when nothing is in progress, does not close the connection early.)
#[tokio::test]
async fn an_sse_stream_silent_for_longer_than_the_idle_timeout_keeps_its_connection() {
    let s = Setup::start_with(
        Mode::PrivateDnsOn,
        UpstreamOptions::default(),
        "[limits]\nidle_connection_timeout = \"2s\"",
    )
    .await;
    let url = s.proxy.url();
    let (mut client, connection) = h2c(s.proxy.addr).await;

    let init = h2_request(
        &mut client,
        "POST",
        &url,
        &POST,
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"idle-test","version":"1"}}}"#,
    )
    .await;
    assert_eq!(init.status(), StatusCode::OK);
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(h2_body(init).await.contains("\"result\""));
    let session_headers = [
        POST[0],
        POST[1],
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let initialized = h2_request(
        &mut client,
        "POST",
        &url,
        &session_headers,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(initialized.status(), StatusCode::ACCEPTED);

    let events = h2_request(
        &mut client,
        "GET",
        &url,
        &[
            ("accept", "text/event-stream"),
            ("mcp-session-id", session.as_str()),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        "",
    )
    .await;
    assert_eq!(events.status(), StatusCode::OK);
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut events = events.into_body();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => return None,
                data = events.data() => match data {
                    Some(Ok(chunk)) => {
                        let _ = events.flow_control().release_capacity(chunk.len());
                    }
                    ended => return Some(format!("the event stream ended: {ended:?}")),
                },
            }
        }
    });

    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!reader.is_finished(), "{:?}", reader.await);
    assert!(!connection.is_finished(), "the connection was closed");
    let ping = h2_request(
        &mut client,
        "POST",
        &url,
        &session_headers,
        r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
    )
    .await;
    assert_eq!(ping.status(), StatusCode::OK);
    assert!(h2_body(ping).await.contains("\"id\":2"));

    // The agent drops the stream (RST_STREAM); then nothing is in progress.
    let _ = stop.send(());
    assert_eq!(reader.await.unwrap(), None);
    // The client stays: the h2 library would close a connection nobody can use.
    let ended = tokio::time::timeout(GUARD, connection).await;
    assert!(ended.is_ok(), "the idle connection was closed");
    drop(client);
}

// ---- Buffered request bodies -----------------------------------------------------

/// A JSON-RPC ping padded to exactly `size` bytes.
fn padded_ping(size: usize) -> Bytes {
    let head = br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":""#;
    let tail = br#""}}"#;
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(head);
    body.resize(size - tail.len(), b'x');
    body.extend_from_slice(tail);
    Bytes::from(body)
}

/// A POST of `body` (its whole length declared) whose first `sent` bytes have been
/// sent: the answer to come, and the stream to send the rest on.
async fn start_post(
    client: h2::client::SendRequest<Bytes>,
    url: &str,
    body: &Bytes,
    sent: usize,
) -> (
    h2::client::SendRequest<Bytes>,
    h2::client::ResponseFuture,
    h2::SendStream<Bytes>,
) {
    let mut client = tokio::time::timeout(GUARD, client.ready())
        .await
        .unwrap()
        .unwrap();
    let request = http::Request::post(url)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(())
        .unwrap();
    let (response, mut stream) = client.send_request(request, false).unwrap();
    stream.send_data(body.slice(..sent), false).unwrap();
    (client, response, stream)
}

/// Waits for `count` of the `pending` answers, which must all be the refusal for
/// `budget_key`; returns the indexes of the refused requests.
async fn expect_refusals<F>(
    pending: &mut FuturesUnordered<F>,
    count: usize,
    budget_key: &str,
) -> Vec<usize>
where
    F: std::future::Future<Output = (usize, Result<http::Response<h2::RecvStream>, h2::Error>)>,
{
    let mut refused = Vec::new();
    for _ in 0..count {
        let (i, answer) = tokio::time::timeout(GUARD, pending.next())
            .await
            .expect("the refusals come while the bodies are unfinished")
            .unwrap();
        let answer = answer.unwrap();
        assert_eq!(
            answer.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "request {i}"
        );
        assert_eq!(answer.headers()["retry-after"], "1");
        assert_eq!(answer.headers()["content-type"], "application/json");
        let error: serde_json::Value = serde_json::from_str(&h2_body(answer).await).unwrap();
        assert_eq!(error["id"], serde_json::Value::Null, "{error}");
        assert_eq!(error["error"]["code"], -31015, "{error}");
        assert_eq!(error["error"]["data"]["reason"], "buffer_budget_exceeded");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("mcp-vpce-proxy: route mcp: request bodies buffered")
                && message.contains(&format!("({budget_key})")),
            "{message}"
        );
        refused.push(i);
    }
    refused
}

async fn budget_rig(
    extra_limits: &str,
    route_extra: &str,
) -> (FaultyUpstream, DnsServer, ProxyProcess) {
    let upstream = FaultyUpstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = ProxyProcess::start(&format!(
        "{}\n[limits]\n{extra_limits}\n{}",
        head(&dns),
        upstream.route(route_extra)
    ))
    .await;
    (upstream, dns, proxy)
}

/// The reproduction, with the default limits: one h2c connection, 100 POSTs declaring
/// 5 MiB each, 3.5 MiB of each sent and none finished. The proxy held them all (RSS
/// 27 → 739 MB with 100 × 5 MiB). Now the connection's budget (24 MiB) holds six; the
/// other 94 are refused as their bytes arrive. Two of the six finish and are forwarded,
/// their bytes come back and another whole body fits; once the agent has gone away with
/// the rest unfinished, agents are served.
#[tokio::test]
async fn unfinished_bodies_on_one_h2c_connection_are_bounded_by_its_budget() {
    const MIB: usize = 1024 * 1024;
    let (upstream, _dns, proxy) = budget_rig("", "").await;
    let baseline_kib = proxy.rss_kib();
    let body = padded_ping(5 * MIB);
    let sent = 7 * MIB / 2;
    let (mut client, connection) = h2c(proxy.addr()).await;
    let mut streams = Vec::new();
    let mut pending = FuturesUnordered::new();
    for i in 0..100 {
        let (ready, response, stream) = start_post(client, &proxy.url(), &body, sent).await;
        client = ready;
        streams.push(stream);
        pending.push(async move { (i, response.await) });
    }
    let refused =
        expect_refusals(&mut pending, 94, "limits.max_buffered_bytes_per_connection").await;
    // Held: 21 MiB of bodies, and buffers (350 MiB without the budget).
    let held_kib = proxy.rss_kib();
    assert!(
        held_kib < baseline_kib + 64 * 1024,
        "the proxy's resident set grew from {} to {} MiB",
        baseline_kib / 1024,
        held_kib / 1024
    );
    assert!(upstream.requests().is_empty());

    // Two of the six finish (24 MiB held then) and are forwarded.
    let held: Vec<usize> = (0..100).filter(|i| !refused.contains(i)).collect();
    for &i in &held[..2] {
        streams[i].send_data(body.slice(sent..), true).unwrap();
    }
    for _ in 0..2 {
        let (i, answer) = tokio::time::timeout(GUARD, pending.next())
            .await
            .unwrap()
            .unwrap();
        let answer = answer.unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "request {i}");
        assert!(h2_body(answer).await.contains("servedBy"));
    }
    // Their 10 MiB are back: a whole 5 MiB body fits beside the four still held.
    let (ready, response, mut stream) = start_post(client, &proxy.url(), &body, 0).await;
    client = ready;
    stream.send_data(body.clone(), true).unwrap();
    let answer = tokio::time::timeout(GUARD, response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(upstream.requests().len(), 3);

    // The agent goes away with four bodies unfinished.
    drop((client, streams, pending));
    connection.abort();
    let answer = post_rpc(&proxy.url(), &rpc(9)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

/// The process's budget across connections: five h2c connections, one unfinished POST
/// of 900 KiB on each, a budget of 3 MiB for all (and 1 MiB for each connection): three
/// are held, two refused. Once the agents go away, a body as large fits again.
#[tokio::test]
async fn unfinished_bodies_across_connections_are_bounded_by_the_process_budget() {
    const KIB: usize = 1024;
    let (_upstream, _dns, proxy) = budget_rig(
        "max_buffered_bytes_per_connection = 1048576\nmax_buffered_bytes = 3145728",
        "max_body_bytes = 1048576",
    )
    .await;
    let body = padded_ping(1000 * KIB);
    let mut held = Vec::new();
    let mut pending = FuturesUnordered::new();
    for i in 0..5 {
        let (client, connection) = h2c(proxy.addr()).await;
        let (client, response, stream) = start_post(client, &proxy.url(), &body, 900 * KIB).await;
        held.push((client, connection, stream));
        pending.push(async move { (i, response.await) });
    }
    expect_refusals(&mut pending, 2, "limits.max_buffered_bytes").await;

    for (_, connection, _) in &held {
        connection.abort();
    }
    drop((held, pending));
    // Until the proxy has seen the agents go, the bytes they sent are still held.
    let (client, _connection) = h2c(proxy.addr()).await;
    let mut client = Some(client);
    for attempt in 0.. {
        let (ready, response, mut stream) =
            start_post(client.take().unwrap(), &proxy.url(), &body, 0).await;
        client = Some(ready);
        stream.send_data(body.clone(), true).unwrap();
        let answer = tokio::time::timeout(GUARD, response)
            .await
            .unwrap()
            .unwrap();
        if answer.status() == StatusCode::OK {
            break;
        }
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(attempt < 100, "the process budget never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---- Host headers ----------------------------------------------------------------

/// A passthrough route at `/mcp` (the agent's OAuth token goes to a gateway that
/// answers 401 with `resource_metadata`, which the proxy rewrites to its own URL).
async fn passthrough() -> (OAuthGateway, DnsServer, Proxy) {
    let gateway = OAuthGateway::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = Proxy::start(&format!(
        "{}\n[[route]]\npath = \"/mcp\"\ngateway = \"https://{GATEWAY_HOST}:{}/mcp\"\nendpoint = \"{ENDPOINT_HOST}\"\nca_file = \"{}\"\ncredential = {{ type = \"passthrough\" }}\n",
        head(&dns),
        gateway.port(),
        gateway.pki.ca_file.display()
    ))
    .await;
    (gateway, dns, proxy)
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#;

/// An HTTP/1.1 POST of `INITIALIZE` to `/mcp` with `headers` (each line with its CRLF).
fn post_with(headers: &str) -> Vec<u8> {
    format!(
        "POST /mcp HTTP/1.1\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{INITIALIZE}",
        INITIALIZE.len()
    )
    .into_bytes()
}

/// The value of header `name` in a raw HTTP/1.1 answer.
fn header_of<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The reproduction: the IPv6 literal passed the old check, and the rest of the header
/// was copied into the rewritten `WWW-Authenticate` (a second `scope`) and discovery
/// documents. Now it is a 400, as are a repeated Host and an HTTP/1.1 request without
/// one, and none reaches the gateway.
#[tokio::test]
async fn a_host_carrying_more_than_host_and_port_is_400_and_reaches_nothing() {
    let (gateway, _dns, proxy) = passthrough().await;
    for (headers, message) in [
        (
            "Host: [::1]@evil.example\", scope=\"admin\r\n".to_string(),
            r#"mcp-vpce-proxy: Host "[::1]@evil.example\", scope=\"admin" is not a host[:port]: only ':' and a port may follow an IPv6 address"#,
        ),
        (
            "Host: 127.0.0.1@evil.example\r\n".to_string(),
            r#"mcp-vpce-proxy: Host "127.0.0.1@evil.example" is not a host[:port]: user information ('@') is not allowed"#,
        ),
        (
            format!("Host: {}\r\nHost: evil.example\r\n", proxy.addr),
            "mcp-vpce-proxy: more than one Host header",
        ),
        (
            String::new(),
            "mcp-vpce-proxy: the request has no Host header",
        ),
    ] {
        let answer = raw(proxy.addr, &post_with(&headers)).await;
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{headers:?}: {answer}"
        );
        assert!(
            answer.ends_with(&format!("\r\n\r\n{message}\n")),
            "{answer}"
        );
        assert_eq!(header_of(&answer, "www-authenticate"), None, "{answer}");
    }
    // The discovery documents too.
    let answer = raw(
        proxy.addr,
        b"GET /.well-known/oauth-protected-resource/mcp HTTP/1.1\r\nHost: [::1]@evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(gateway.seen().is_empty(), "{:?}", gateway.seen());
}

/// Over h2c, a `host` header beside `:authority` must name the same authority
/// (case aside); one that names another is a 400 and is not forwarded.
#[tokio::test]
async fn over_h2c_a_host_header_naming_another_authority_is_400() {
    let (gateway, _dns, proxy) = passthrough().await;
    let url = proxy.url();
    let (mut client, _connection) = h2c(proxy.addr).await;
    let refused = h2_request(
        &mut client,
        "POST",
        &url,
        &[POST[0], POST[1], ("host", "evil.example")],
        INITIALIZE,
    )
    .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(!refused.headers().contains_key("www-authenticate"));
    assert_eq!(
        h2_body(refused).await,
        format!(
            "mcp-vpce-proxy: the host header \"evil.example\" names another authority than :authority \"{}\"\n",
            proxy.addr
        )
    );
    assert!(gateway.seen().is_empty());

    let same = format!("LOCALHOST:{}", proxy.addr.port());
    let agreeing = h2_request(
        &mut client,
        "POST",
        &format!("http://localhost:{}/mcp", proxy.addr.port()),
        &[POST[0], POST[1], ("host", same.as_str())],
        INITIALIZE,
    )
    .await;
    assert_eq!(agreeing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        agreeing.headers()["www-authenticate"],
        format!(
            r#"Bearer resource_metadata="http://localhost:{}/.well-known/oauth-protected-resource/mcp", scope="tools""#,
            proxy.addr.port()
        )
    );
}

/// What the passthrough rewrites put in place of the gateway's URL is the authority as
/// parsed and written back (a name in lower case, an IPv6 address in canonical form),
/// never the header's own text.
#[tokio::test]
async fn passthrough_rewrites_carry_the_re_serialised_authority() {
    let (_gateway, _dns, proxy) = passthrough().await;
    let port = proxy.addr.port();
    for (host, origin) in [
        (
            format!("LocalHost:{port}"),
            format!("http://localhost:{port}"),
        ),
        (
            format!("[0:0:0:0:0:0:0:1]:{port}"),
            format!("http://[::1]:{port}"),
        ),
        ("127.0.0.1".to_string(), "http://127.0.0.1".to_string()),
    ] {
        let challenge = raw(proxy.addr, &post_with(&format!("Host: {host}\r\n"))).await;
        assert!(
            challenge.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
            "{challenge}"
        );
        assert_eq!(
            header_of(&challenge, "www-authenticate"),
            Some(
                format!(
                    r#"Bearer resource_metadata="{origin}/.well-known/oauth-protected-resource/mcp", scope="tools""#
                )
                .as_str()
            ),
            "{host}"
        );
        let metadata = raw(
            proxy.addr,
            format!("GET /.well-known/oauth-protected-resource/mcp HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(metadata.starts_with("HTTP/1.1 200 OK\r\n"), "{metadata}");
        let document: serde_json::Value =
            serde_json::from_str(metadata.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(document["resource"], format!("{origin}/mcp"), "{host}");
    }
}
