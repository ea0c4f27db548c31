//! Proves the shared fixtures in `tests/it/common` work on their own, without
//! the proxy: DNS answers and their run-time changes, the TLS MCP upstream
//! (SNI, Host, sessions, streamed progress) and the rmcp client helpers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::common::client;
use crate::common::dns::{DnsMode, DnsServer};
use crate::common::upstream::{Upstream, UpstreamOptions, ENDPOINT_HOST, GATEWAY_HOST};
use bytes::Bytes;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use http::{Method, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const LOOPBACK_A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const LOOPBACK_B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const WAIT: Duration = Duration::from_secs(10);

// ---- DNS ------------------------------------------------------------------

/// A resolver that asks only `server`, over UDP, and caches nothing (so each
/// lookup reaches the server).
fn resolver(server: SocketAddr) -> TokioResolver {
    resolver_over(server, ConnectionConfig::udp())
}

fn resolver_over(server: SocketAddr, mut connection: ConnectionConfig) -> TokioResolver {
    connection.port = server.port();
    let name_server = NameServerConfig::new(server.ip(), true, vec![connection]);
    let config = ResolverConfig::from_parts(None, vec![], vec![name_server]);
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.timeout = Duration::from_millis(500);
    opts.attempts = 1;
    Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .expect("build resolver")
}

async fn lookup(server: &DnsServer, name: &str) -> Result<Vec<IpAddr>, String> {
    // A fresh resolver each time: no state carried over between steps.
    let fqdn = format!("{name}.");
    resolver(server.addr)
        .lookup_ip(fqdn.as_str())
        .await
        .map(|lookup| lookup.iter().collect())
        .map_err(|error| error.to_string())
}

#[tokio::test]
async fn dns_server_answers_and_changes_at_run_time() {
    let dns = DnsServer::start(&[(ENDPOINT_HOST, LOOPBACK_A)]).await;
    assert!(dns.addr.ip().is_loopback());

    // A known name: its A record; the empty AAAA answer is not an error.
    assert_eq!(lookup(&dns, ENDPOINT_HOST).await, Ok(vec![LOOPBACK_A]));
    assert!(dns.queries() >= 1);

    // The same answers over TCP, on the same port.
    let over_tcp = resolver_over(dns.addr, ConnectionConfig::tcp())
        .lookup_ip(format!("{ENDPOINT_HOST}."))
        .await
        .expect("resolve over TCP");
    assert_eq!(over_tcp.iter().collect::<Vec<_>>(), vec![LOOPBACK_A]);

    // Unknown names are NXDOMAIN.
    let unknown = resolver(dns.addr)
        .lookup_ip("unknown.example.")
        .await
        .expect_err("unknown name must not resolve");
    assert!(unknown.is_nx_domain(), "expected NXDOMAIN, got {unknown}");

    // New answers take effect at once, in both families.
    dns.set(
        ENDPOINT_HOST,
        vec![LOOPBACK_B, IpAddr::V6(Ipv6Addr::LOCALHOST)],
    );
    dns.set_ttl(5);
    let mut answers = lookup(&dns, ENDPOINT_HOST)
        .await
        .expect("resolve after set");
    answers.sort();
    assert_eq!(answers, vec![LOOPBACK_B, IpAddr::V6(Ipv6Addr::LOCALHOST)]);

    // The TTL given is the one served.
    let lookup_a = resolver(dns.addr)
        .lookup(
            format!("{ENDPOINT_HOST}."),
            hickory_resolver::proto::rr::RecordType::A,
        )
        .await
        .expect("A lookup");
    let ttl = lookup_a.answers().first().expect("one answer").ttl;
    assert!(ttl <= 5 && ttl > 0, "ttl {ttl}");

    // SERVFAIL, then silence: both are errors for the resolver.
    dns.set_mode(DnsMode::ServFail);
    let servfail = lookup(&dns, ENDPOINT_HOST).await.expect_err("SERVFAIL");
    assert!(!servfail.is_empty());

    dns.set_mode(DnsMode::Silent);
    let before = dns.queries();
    let started = std::time::Instant::now();
    lookup(&dns, ENDPOINT_HOST).await.expect_err("timeout");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(dns.queries() > before, "silent queries are still counted");

    // Back to normal, then removal means NXDOMAIN.
    dns.set_mode(DnsMode::Answer);
    assert!(lookup(&dns, ENDPOINT_HOST).await.is_ok());
    dns.remove(ENDPOINT_HOST);
    let removed = resolver(dns.addr)
        .lookup_ip(format!("{ENDPOINT_HOST}."))
        .await
        .expect_err("removed name must not resolve");
    assert!(removed.is_nx_domain(), "expected NXDOMAIN, got {removed}");
}

// ---- The upstream over raw TLS + hyper ------------------------------------

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Opens one TLS connection to the upstream (trusting its CA, SNI =
/// `GATEWAY_HOST`, ALPN http/1.1) and an HTTP/1.1 client on it.
async fn connect_h1(upstream: &Upstream) -> Sender {
    let tcp = TcpStream::connect(upstream.addr)
        .await
        .expect("connect upstream");
    let connector = tokio_rustls::TlsConnector::from(upstream.pki.client_config(&[b"http/1.1"]));
    let tls = connector
        .connect(ServerName::try_from(GATEWAY_HOST).unwrap(), tcp)
        .await
        .expect("TLS handshake with the upstream");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    sender
}

fn mcp_post(body: serde_json::Value, session: Option<&str>) -> http::Request<Full<Bytes>> {
    let mut builder = http::Request::post("/mcp")
        .header(http::header::HOST, GATEWAY_HOST)
        .header(http::header::ACCEPT, "application/json, text/event-stream")
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::AUTHORIZATION, "Bearer upstream-token");
    if let Some(session) = session {
        builder = builder
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-06-18");
    }
    builder
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn initialize_request() -> serde_json::Value {
    json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": { "name": "fixtures-selftest", "version": "0.0.0" }
        }
    })
}

/// Reads body frames until the accumulated text contains `needle`.
async fn read_until(body: &mut Incoming, text: &mut String, needle: &str) {
    timeout(WAIT, async {
        while !text.contains(needle) {
            let frame = body
                .frame()
                .await
                .expect("stream ended early")
                .expect("body error");
            if let Ok(data) = frame.into_data() {
                text.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in the stream; got so far: {text}"));
}

#[tokio::test]
async fn upstream_serves_mcp_over_tls_and_records_requests() {
    let upstream = Upstream::start().await;
    let mut sender = connect_h1(&upstream).await;

    let response = sender
        .send_request(mcp_post(initialize_request(), None))
        .await
        .expect("initialize");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[http::header::CONTENT_TYPE],
        "text/event-stream"
    );
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!session.is_empty());
    let mut body = response.into_body();
    let mut text = String::new();
    read_until(&mut body, &mut text, "\"protocolVersion\"").await;
    assert!(text.contains("\"id\":1"), "{text}");
    // The initialize stream ends after its response; finish it so the
    // connection can carry the next request.
    timeout(WAIT, body.collect()).await.unwrap().unwrap();

    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    let init = &seen[0];
    assert_eq!(init.sni.as_deref(), Some(GATEWAY_HOST));
    assert_eq!(init.host.as_deref(), Some(GATEWAY_HOST));
    assert_eq!(init.authorization.as_deref(), Some("Bearer upstream-token"));
    assert_eq!(init.method, Method::POST);
    assert_eq!(init.path, "/mcp");
    assert_eq!(init.version, Version::HTTP_11);
    assert_eq!(init.headers[http::header::CONTENT_TYPE], "application/json");
    assert_eq!(init.status, 200);
    assert_eq!(upstream.connections(), 1);

    // Other paths are 404 and recorded too.
    let response = sender
        .send_request(
            http::Request::get("/other?x=1")
                .header(http::header::HOST, GATEWAY_HOST)
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    response.into_body().collect().await.unwrap();
    let other = upstream.requests().pop().unwrap();
    assert_eq!((other.path.as_str(), other.status), ("/other?x=1", 404));
    assert_eq!(upstream.connections(), 1, "same keep-alive connection");
}

#[tokio::test]
async fn slow_progress_streams_its_first_event_before_release() {
    let upstream = Upstream::start().await;
    let mut sender = connect_h1(&upstream).await;
    let response = sender
        .send_request(mcp_post(initialize_request(), None))
        .await
        .unwrap();
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    response.into_body().collect().await.unwrap();

    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let response = sender
        .send_request(mcp_post(initialized, Some(&session)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    response.into_body().collect().await.unwrap();

    let call = json!({
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {
            "name": "DemoTarget___slow_progress",
            "arguments": {},
            "_meta": { "progressToken": "tok-1" }
        }
    });
    let response = sender
        .send_request(mcp_post(call, Some(&session)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[http::header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut body = response.into_body();
    let mut text = String::new();
    read_until(&mut body, &mut text, "\"message\":\"first\"").await;
    assert!(text.contains("\"progressToken\":\"tok-1\""), "{text}");

    // The tool is now parked at the gate: nothing more may arrive.
    let early = timeout(Duration::from_millis(300), body.frame()).await;
    if let Ok(Some(Ok(frame))) = early {
        let data = frame.into_data().unwrap_or_default();
        let data = String::from_utf8_lossy(&data);
        assert!(
            !data.contains("\"result\""),
            "result before release: {data}"
        );
        text.push_str(&data);
    }

    upstream.release_progress();
    read_until(&mut body, &mut text, "\"result\"").await;
    assert!(text.contains("\"message\":\"second\""), "{text}");
    assert!(text.contains("\"text\":\"done\""), "{text}");
}

// ---- The rmcp client helpers, through a plain-HTTP -> TLS relay -----------

/// A minimal TLS-originating TCP relay on `127.0.0.1:0`: each accepted
/// connection is piped to a new TLS connection to the upstream (SNI =
/// `GATEWAY_HOST`). Just enough to drive `client.rs` against the upstream.
async fn tls_relay(upstream: &Upstream) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let target = upstream.addr;
    let connector = tokio_rustls::TlsConnector::from(upstream.pki.client_config(&[b"http/1.1"]));
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let connector = connector.clone();
            tokio::spawn(async move {
                let tcp = TcpStream::connect(target).await.unwrap();
                let mut tls = connector
                    .connect(ServerName::try_from(GATEWAY_HOST).unwrap(), tcp)
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut tls).await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn client_helpers_call_tools_and_receive_progress() {
    let upstream = Upstream::start().await;
    let (relay, relay_task) = tls_relay(&upstream).await;
    let url = format!("http://{relay}/mcp");

    let client = client::connect_with_bearer(&url, "caller-token").await;
    let mut progress = client.service().take_progress();

    let weather = client::call_tool(
        &client,
        "DemoTarget___get_weather",
        json!({ "city": "Seattle" }),
    )
    .await;
    assert_eq!(
        client::first_text(&weather),
        Some("Weather in Seattle: 22°C, sunny")
    );
    let echo = client::call_tool(&client, "DemoTarget___echo", json!({ "text": "hi" })).await;
    assert_eq!(client::first_text(&echo), Some("hi"));

    let call = client::start_tool_call(&client, "DemoTarget___slow_progress", json!({})).await;
    let first = timeout(WAIT, progress.recv())
        .await
        .expect("first progress in time")
        .expect("progress channel open");
    assert_eq!(first.progress_token, call.progress_token);
    assert_eq!((first.progress, first.total), (1.0, Some(2.0)));
    assert_eq!(first.message.as_deref(), Some("first"));
    upstream.release_progress();
    let result = timeout(WAIT, call.result())
        .await
        .expect("result in time")
        .expect("tool result");
    assert_eq!(client::first_text(&result), Some("done"));
    let second = progress.recv().await.expect("second progress");
    assert_eq!(second.progress, 2.0);

    // The client opened a standalone GET stream, and closing sends DELETE.
    client.cancel().await.expect("close client");
    let seen = upstream.requests();
    let methods: Vec<&Method> = seen.iter().map(|request| &request.method).collect();
    assert!(methods.contains(&&Method::GET), "{methods:?}");
    assert!(methods.contains(&&Method::DELETE), "{methods:?}");
    assert!(
        seen.iter()
            .all(|request| request.authorization.as_deref() == Some("Bearer caller-token")),
        "rmcp's auth_header adds the Bearer prefix"
    );
    relay_task.abort();
}

#[tokio::test]
async fn upstream_speaks_h2_when_offered_and_stops_when_dropped() {
    let upstream = Upstream::start().await;
    let tcp = TcpStream::connect(upstream.addr).await.unwrap();
    let connector =
        tokio_rustls::TlsConnector::from(upstream.pki.client_config(&[b"h2", b"http/1.1"]));
    let tls = connector
        .connect(ServerName::try_from(GATEWAY_HOST).unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);

    // h2 carries the host in :authority, taken from the absolute URI.
    let mut request = mcp_post(initialize_request(), None);
    *request.uri_mut() = format!("https://{GATEWAY_HOST}/mcp").parse().unwrap();
    request.headers_mut().remove(http::header::HOST);
    let response = sender.send_request(request).await.expect("h2 initialize");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("mcp-session-id"));
    let seen = upstream.requests().pop().unwrap();
    assert_eq!(seen.version, Version::HTTP_2);
    assert_eq!(seen.host.as_deref(), Some(GATEWAY_HOST));
    assert_eq!(seen.sni.as_deref(), Some(GATEWAY_HOST));

    // With h2 off, only http/1.1 is negotiated.
    let h1_only = Upstream::start_with(UpstreamOptions {
        h2: false,
        ..UpstreamOptions::default()
    })
    .await;
    let tcp = TcpStream::connect(h1_only.addr).await.unwrap();
    let connector =
        tokio_rustls::TlsConnector::from(h1_only.pki.client_config(&[b"h2", b"http/1.1"]));
    let tls = connector
        .connect(ServerName::try_from(GATEWAY_HOST).unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    // Dropping the handle closes the listener.
    let addr = upstream.addr;
    drop(upstream);
    tokio::task::yield_now().await;
    timeout(WAIT, async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("upstream still accepting after drop");
}

// ---- OTLP receiver -----------------------------------------------------------

#[tokio::test]
async fn the_otlp_receiver_decodes_spans_and_refuses_other_requests() {
    use crate::common::http::send;
    use crate::common::otlp::OtlpReceiver;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    let receiver = OtlpReceiver::start().await;
    let string = |key: &str, value: &str| KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string("service.name", "selftest")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![0xab; 16],
                    span_id: vec![0x01; 8],
                    name: "tools/call echo".into(),
                    kind: 2,
                    attributes: vec![string("mcp.method.name", "tools/call")],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let url = format!("{}/v1/traces", receiver.endpoint());
    let answer = send(
        "POST",
        &url,
        &[("content-type", "application/x-protobuf")],
        request.encode_to_vec(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let spans = receiver.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].trace_id, "ab".repeat(16));
    assert_eq!(spans[0].parent_span_id, "");
    assert_eq!(spans[0].attribute("mcp.method.name"), Some("tools/call"));
    assert_eq!(spans[0].resource["service.name"], "selftest");

    let json = send("POST", &url, &[("content-type", "application/json")], "{}").await;
    assert_eq!(json.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let garbage = send(
        "POST",
        &url,
        &[("content-type", "application/x-protobuf")],
        vec![0xff, 0xff, 0xff],
    )
    .await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    assert_eq!(receiver.requests().len(), 3);
}
