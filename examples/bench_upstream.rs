//! The upstream of `bench/run.sh`: a stand-in gateway that is never the bottleneck.
//!
//! HTTPS on loopback with a certificate for a gateway-like name, made at start by a
//! throw-away CA whose PEM is written to `--ca-out` for the forwarders to trust. ALPN
//! offers h2 and http/1.1 (`--alpn http/1.1` forces HTTP/1.1 for every client).
//!
//! `/mcp` answers, after checking that the forwarder did its job (Authorization is the
//! bench token, or with `--accept-sigv4` a SigV4 authorization for `bedrock-agentcore`,
//! whose signature it does not check; Host names the gateway; else 401 / 421):
//! - `POST /mcp`: a fixed ~300-byte JSON-RPC result (`application/json`);
//! - `POST /mcp?mode=sse`: a `text/event-stream` answer of one `message` event;
//! - `GET /mcp?mode=stream&seconds=S&interval_ms=I`: one event every I ms (the first at
//!   once) for S seconds;
//! - `DELETE /mcp`: 200.
//!
//! Every event carries `"sent_ns":<unix time in ns>` taken when it is written, so that a
//! client on the same host can measure how long the forwarder held it.
//!
//! A plain-HTTP `GET /stats` on `--stats-listen` reports what the upstream saw (connections
//! accepted and open, ALPN, SNI mismatches, requests, refusals) as JSON.
//!
//! ```sh
//! cargo run --release --example bench_upstream -- --listen 127.0.0.1:18400 \
//!     --stats-listen 127.0.0.1:18401 --ca-out /tmp/bench-ca.pem --token t0k3n
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const DEFAULT_GATEWAY: &str =
    "bench-gw-0123456789.gateway.bedrock-agentcore.us-east-1.amazonaws.com";
/// Size of the JSON-RPC answer to a plain POST, close to a small tools/call result.
const JSON_ANSWER_BYTES: usize = 300;

#[derive(Debug, Parser)]
#[command(about = "TLS upstream for bench/run.sh (loopback only)")]
struct Args {
    /// HTTPS listener (must be a loopback address).
    #[arg(long, default_value = "127.0.0.1:18400")]
    listen: SocketAddr,
    /// Plain-HTTP listener for `GET /stats` (must be a loopback address).
    #[arg(long, default_value = "127.0.0.1:18401")]
    stats_listen: SocketAddr,
    /// The gateway name on the certificate, expected in Host and SNI.
    #[arg(long, default_value = DEFAULT_GATEWAY)]
    gateway: String,
    /// Where to write the CA certificate (PEM) the forwarders must trust.
    #[arg(long)]
    ca_out: PathBuf,
    /// The bearer token every request must carry.
    #[arg(long)]
    token: String,
    /// Also accept requests signed with SigV4 for `bedrock-agentcore` (the shape of the
    /// Authorization header only: the training of build/release.sh signs with made-up
    /// keys).
    #[arg(long)]
    accept_sigv4: bool,
    /// ALPN protocols offered, comma-separated, in preference order.
    #[arg(long, default_value = "h2,http/1.1", value_delimiter = ',')]
    alpn: Vec<String>,
    /// Runtime threads; 1 runs a current-thread runtime. Default: the CPUs.
    #[arg(long)]
    workers: Option<usize>,
}

/// What the upstream saw, reported by `/stats`.
#[derive(Default)]
struct Stats {
    connections: AtomicU64,
    open_connections: AtomicI64,
    h2_connections: AtomicU64,
    tls_failures: AtomicU64,
    sni_mismatches: AtomicU64,
    requests: AtomicU64,
    unauthorized: AtomicU64,
    wrong_host: AtomicU64,
    not_found: AtomicU64,
    events: AtomicU64,
    open_streams: AtomicI64,
}

impl Stats {
    fn json(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let gauge = |a: &AtomicI64| a.load(Ordering::Relaxed);
        format!(
            concat!(
                "{{\"connections\":{},\"open_connections\":{},\"h2_connections\":{},",
                "\"tls_failures\":{},\"sni_mismatches\":{},\"requests\":{},",
                "\"unauthorized\":{},\"wrong_host\":{},\"not_found\":{},\"events\":{},",
                "\"open_streams\":{}}}\n"
            ),
            get(&self.connections),
            gauge(&self.open_connections),
            get(&self.h2_connections),
            get(&self.tls_failures),
            get(&self.sni_mismatches),
            get(&self.requests),
            get(&self.unauthorized),
            get(&self.wrong_host),
            get(&self.not_found),
            get(&self.events),
            gauge(&self.open_streams),
        )
    }
}

/// Everything a request handler needs, built once.
struct Upstream {
    gateway: String,
    authorization: HeaderValue,
    accept_sigv4: bool,
    json_answer: Bytes,
    stats: Stats,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    for addr in [args.listen, args.stats_listen] {
        if !addr.ip().is_loopback() {
            return Err(format!(
                "{addr}: the bench upstream listens on loopback only"
            ));
        }
    }
    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let runtime = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
    .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> Result<(), String> {
    let (ca_pem, tls) = certificates(&args.gateway, &args.alpn).map_err(|e| e.to_string())?;
    std::fs::write(&args.ca_out, ca_pem)
        .map_err(|e| format!("cannot write {}: {e}", args.ca_out.display()))?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let stats_listener = TcpListener::bind(args.stats_listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.stats_listen))?;
    let upstream = Arc::new(Upstream {
        authorization: HeaderValue::from_str(&format!("Bearer {}", args.token))
            .map_err(|e| format!("--token: {e}"))?,
        accept_sigv4: args.accept_sigv4,
        json_answer: Bytes::from(json_answer()),
        gateway: args.gateway.to_ascii_lowercase(),
        stats: Stats::default(),
    });
    tokio::spawn(serve_stats(stats_listener, upstream.clone()));
    println!(
        "{{\"listen\":\"{}\",\"stats\":\"{}\",\"gateway\":\"{}\"}}",
        args.listen, args.stats_listen, args.gateway
    );

    let acceptor = TlsAcceptor::from(tls);
    let mut server = auto::Builder::new(TokioExecutor::new());
    // Let every stream of a multiplexing forwarder through: the upstream is not the limit.
    server.http2().max_concurrent_streams(100_000);
    let server = Arc::new(server);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                eprintln!("bench_upstream: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        upstream.stats.connections.fetch_add(1, Ordering::Relaxed);
        let acceptor = acceptor.clone();
        let upstream = upstream.clone();
        let server = server.clone();
        tokio::spawn(async move {
            let stats = &upstream.stats;
            stats.open_connections.fetch_add(1, Ordering::Relaxed);
            match acceptor.accept(tcp).await {
                Ok(tls) => {
                    let session = tls.get_ref().1;
                    if session.server_name() != Some(upstream.gateway.as_str()) {
                        stats.sni_mismatches.fetch_add(1, Ordering::Relaxed);
                    }
                    if session.alpn_protocol() == Some(b"h2") {
                        stats.h2_connections.fetch_add(1, Ordering::Relaxed);
                    }
                    let handler = upstream.clone();
                    let service = service_fn(move |req| {
                        let handler = handler.clone();
                        async move { Ok::<_, Infallible>(handler.answer(req).await) }
                    });
                    let _ = server.serve_connection(TokioIo::new(tls), service).await;
                }
                Err(_) => {
                    stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            stats.open_connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

type AnswerBody = Either<Full<Bytes>, Ticks>;

impl Upstream {
    async fn answer(self: Arc<Self>, req: Request<Incoming>) -> Response<AnswerBody> {
        let stats = &self.stats;
        stats.requests.fetch_add(1, Ordering::Relaxed);
        if req.uri().path() != "/mcp" {
            stats.not_found.fetch_add(1, Ordering::Relaxed);
            return plain(StatusCode::NOT_FOUND);
        }
        if !self.authorized(req.headers().get(AUTHORIZATION)) {
            stats.unauthorized.fetch_add(1, Ordering::Relaxed);
            return plain(StatusCode::UNAUTHORIZED);
        }
        if !self.host_is_gateway(&req) {
            stats.wrong_host.fetch_add(1, Ordering::Relaxed);
            return plain(StatusCode::MISDIRECTED_REQUEST);
        }
        let query = Query::parse(req.uri().query());
        let method = req.method().clone();
        // Read the request body as a gateway would before answering.
        if req.into_body().collect().await.is_err() {
            return plain(StatusCode::BAD_REQUEST);
        }
        match (method, query.mode) {
            (Method::POST, Mode::Json) => {
                let mut r = Response::new(Either::Left(Full::new(self.json_answer.clone())));
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r
            }
            (Method::POST, Mode::Sse) => {
                stats.events.fetch_add(1, Ordering::Relaxed);
                event_stream(Either::Left(Full::new(sse_answer())))
            }
            (Method::GET, Mode::Stream) => {
                let interval = Duration::from_millis(query.interval_ms.max(1));
                let events = (query.seconds * 1000)
                    .div_ceil(query.interval_ms.max(1))
                    .max(1);
                event_stream(Either::Right(Ticks::new(interval, events, self.clone())))
            }
            (Method::DELETE, _) => plain(StatusCode::OK),
            _ => plain(StatusCode::METHOD_NOT_ALLOWED),
        }
    }

    fn authorized(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        if *value == self.authorization {
            return true;
        }
        // `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/bedrock-agentcore/aws4_request,
        // SignedHeaders=..., Signature=<64 hex digits>`
        self.accept_sigv4
            && value.to_str().is_ok_and(|v| {
                v.strip_prefix("AWS4-HMAC-SHA256 Credential=")
                    .is_some_and(|rest| {
                        rest.contains("/bedrock-agentcore/aws4_request, SignedHeaders=")
                            && rest.rsplit_once(", Signature=").is_some_and(|(_, sig)| {
                                sig.len() == 64 && sig.bytes().all(|b| b.is_ascii_hexdigit())
                            })
                    })
            })
    }

    /// Host (HTTP/1.1) or the authority (HTTP/2) names the gateway, with or without port.
    fn host_is_gateway(&self, req: &Request<Incoming>) -> bool {
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        host.is_some_and(|h| {
            let name = h.rsplit_once(':').map_or(h, |(name, _port)| name);
            name.eq_ignore_ascii_case(&self.gateway)
        })
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Json,
    Sse,
    Stream,
}

struct Query {
    mode: Mode,
    seconds: u64,
    interval_ms: u64,
}

impl Query {
    fn parse(query: Option<&str>) -> Query {
        let mut q = Query {
            mode: Mode::Json,
            seconds: 10,
            interval_ms: 100,
        };
        for pair in query.unwrap_or("").split('&') {
            match pair.split_once('=') {
                Some(("mode", "sse")) => q.mode = Mode::Sse,
                Some(("mode", "stream")) => q.mode = Mode::Stream,
                Some(("seconds", v)) => q.seconds = v.parse().unwrap_or(q.seconds),
                Some(("interval_ms", v)) => q.interval_ms = v.parse().unwrap_or(q.interval_ms),
                _ => {}
            }
        }
        q
    }
}

/// A long SSE answer: one event per tick, each stamped when it is produced.
struct Ticks {
    interval: tokio::time::Interval,
    left: u64,
    seq: u64,
    upstream: Arc<Upstream>,
}

impl Ticks {
    fn new(every: Duration, events: u64, upstream: Arc<Upstream>) -> Ticks {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        upstream.stats.open_streams.fetch_add(1, Ordering::Relaxed);
        Ticks {
            interval,
            left: events,
            seq: 0,
            upstream,
        }
    }
}

impl Drop for Ticks {
    fn drop(&mut self) {
        self.upstream
            .stats
            .open_streams
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Body for Ticks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        ready!(self.interval.poll_tick(cx));
        self.left -= 1;
        self.seq += 1;
        self.upstream.stats.events.fetch_add(1, Ordering::Relaxed);
        let event = format!(
            "event: message\nid: {seq}\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":\"bench\",\"progress\":{seq},\"sent_ns\":{now}}}}}\n\n",
            seq = self.seq,
            now = unix_nanos(),
        );
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(event)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The fixed JSON-RPC result of a plain POST, padded to JSON_ANSWER_BYTES.
fn json_answer() -> String {
    let head = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"Weather in Seattle: 22 C, sunny"#;
    let tail = r#"."}],"isError":false}}"#;
    let pad = JSON_ANSWER_BYTES.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", " ".repeat(pad))
}

/// The one event of an SSE answer, stamped now; about the size of the JSON answer.
fn sse_answer() -> Bytes {
    Bytes::from(format!(
        "event: message\nid: 1\ndata: {{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"Weather in Seattle: 22 C, sunny, light wind from the north-west, humidity 61 %, visibility 10 km, pressure 1016 hPa.\"}}],\"isError\":false,\"_meta\":{{\"sent_ns\":{}}}}}}}\n\n",
        unix_nanos()
    ))
}

fn event_stream(body: AnswerBody) -> Response<AnswerBody> {
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn plain(status: StatusCode) -> Response<AnswerBody> {
    let mut r = Response::new(Either::Left(Full::new(Bytes::new())));
    *r.status_mut() = status;
    r
}

/// Serves `GET /stats` over plain HTTP/1.1.
async fn serve_stats(listener: TcpListener, upstream: Arc<Upstream>) {
    while let Ok((tcp, _)) = listener.accept().await {
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let body = if req.uri().path() == "/stats" {
                    upstream.stats.json()
                } else {
                    String::new()
                };
                async move {
                    let mut r = Response::new(Full::new(Bytes::from(body)));
                    r.headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// A CA and a leaf certificate for `gateway` signed by it, and the server TLS config.
fn certificates(
    gateway: &str,
    alpn: &[String],
) -> Result<(String, Arc<rustls::ServerConfig>), Box<dyn std::error::Error>> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mcp-vpce-proxy bench CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let leaf_key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec![gateway.to_string()])?.signed_by(&leaf_key, &ca)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok((ca.pem(), Arc::new(config)))
}
