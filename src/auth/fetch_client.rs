//! The HTTPS client that talks to token endpoints (OAuth2, AgentCore Identity).
//!
//! Unlike the gateway route (which must stay on PrivateLink and never goes through a
//! proxy), token endpoints honour `HTTPS_PROXY`/`NO_PROXY` (read once, when the route is
//! built): an `http://` proxy is asked to `CONNECT` to the endpoint and TLS runs through
//! the tunnel with the endpoint's own name. Plain-http endpoints (loopback only, see
//! `config::check_fetch_url`) are always dialed directly.
//!
//! A source whose endpoint must stay inside the VPC (`require_private`: an AWS API
//! reached through its interface endpoint) gets a private client instead: the name is
//! resolved with the proxy's own resolver (`[dns]`), only addresses inside the in-VPC
//! ranges are dialed, and `HTTPS_PROXY` is never used, exactly as for the gateway.
//! TLS: rustls with the ring provider, web PKI roots plus the source's extra CAs.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tower_service::Service;

use crate::upstream::dns::Dns;

/// Token responses are small; anything bigger is refused rather than buffered.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A pooled HTTP/1.1 client for one credential source.
#[derive(Clone)]
pub struct FetchClient {
    client: Client<FetchConnector, Full<Bytes>>,
}

/// A response read whole.
pub struct FetchResponse {
    pub status: StatusCode,
    // Read by AgentCore Identity (the AWS error type), which needs the `aws` feature.
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl FetchClient {
    /// `ca_file`: extra PEM roots for the endpoint.
    pub fn new(ca_file: Option<&std::path::Path>) -> Result<Self, String> {
        Self::build(ca_file, None)
    }

    /// A client that dials only in-VPC addresses of the names it resolves through `dns`
    /// (the proxy's resolver and ranges), never through a proxy. Used by the AWS API
    /// sources, which need the `aws` feature.
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    pub fn private(ca_file: Option<&std::path::Path>, dns: Arc<Dns>) -> Result<Self, String> {
        Self::build(ca_file, Some(dns))
    }

    fn build(ca_file: Option<&std::path::Path>, private: Option<Arc<Dns>>) -> Result<Self, String> {
        let extra = match ca_file {
            Some(path) => crate::upstream::tls::read_ca_file(path)?,
            None => Vec::new(),
        };
        let mut tls = (*crate::upstream::tls::client_config(&extra)?).clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        tcp.set_nodelay(true);
        let connector = FetchConnector {
            inner: Arc::new(ConnectorInner {
                tcp,
                tls: TlsConnector::from(Arc::new(tls)),
                proxies: Matcher::from_env(),
                private,
            }),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(FetchClient { client })
    }

    /// Sends one request and reads the whole answer. Errors name the URL and the cause,
    /// never the request's content.
    pub async fn send(
        &self,
        method: Method,
        url: &Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<FetchResponse, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(url.clone())
            .body(Full::new(body))
            .map_err(|e| format!("{url}: {e}"))?;
        *request.headers_mut() = headers;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("{url}: {}", error_chain(&e)))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| format!("{url}: reading the answer: {e}"))?
            .to_bytes();
        Ok(FetchResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// The error and its causes, joined ("client error (Connect): tcp connect error: ...").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[derive(Clone)]
struct FetchConnector {
    inner: Arc<ConnectorInner>,
}

struct ConnectorInner {
    tcp: HttpConnector,
    tls: TlsConnector,
    proxies: Matcher,
    /// Set for a private client: the resolver and in-VPC ranges every address must pass.
    private: Option<Arc<Dns>>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<Uri> for FetchConnector {
    type Response = FetchStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<FetchStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { inner.connect(dst).await })
    }
}

impl ConnectorInner {
    async fn connect(&self, dst: Uri) -> Result<FetchStream, BoxError> {
        let host = dst.host().ok_or("URL has no host")?.to_string();
        let mut tcp = self.tcp.clone();
        if let Some(dns) = &self.private {
            let stream = connect_private(dns, &host, dst.port_u16(), dst.scheme_str()).await?;
            let io = TokioIo::new(stream);
            if dst.scheme_str() != Some("https") {
                return Ok(FetchStream::Plain(io));
            }
            return self.handshake(&host, io).await;
        }
        if dst.scheme_str() != Some("https") {
            let io = tcp.call(dst).await?;
            return Ok(FetchStream::Plain(io));
        }
        let io = match self.proxies.intercept(&dst) {
            Some(proxy) => {
                tracing::debug!(proxy = %redact_userinfo(proxy.uri()), endpoint = %host, "token endpoint through HTTPS_PROXY");
                let mut tunnel = Tunnel::new(proxy.uri().clone(), tcp);
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                tunnel
                    .call(dst)
                    .await
                    .map_err(|e| format!("through proxy {}: {e}", redact_userinfo(proxy.uri())))?
            }
            None => tcp.call(dst).await?,
        };
        self.handshake(&host, io).await
    }

    async fn handshake(&self, host: &str, io: TokioIo<TcpStream>) -> Result<FetchStream, BoxError> {
        let name = ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        )
        .map_err(|e| format!("{host}: {e}"))?;
        let tls = self.tls.connect(name, io.into_inner()).await?;
        Ok(FetchStream::Tls(TokioIo::new(Box::new(tls))))
    }
}

/// Resolves `host` with the proxy's resolver and connects to the first in-VPC address
/// that answers. Names that resolve only outside the ranges are refused before any
/// connection is made: the request would leave PrivateLink.
async fn connect_private(
    dns: &Dns,
    host: &str,
    port: Option<u16>,
    scheme: Option<&str>,
) -> Result<TcpStream, BoxError> {
    let port = port.unwrap_or(if scheme == Some("https") { 443 } else { 80 });
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ips: Vec<IpAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => dns.resolve(bare).await?,
    };
    let inside: Vec<IpAddr> = ips.iter().copied().filter(|ip| dns.in_vpc(*ip)).collect();
    if inside.is_empty() {
        let list: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
        let ranges: Vec<String> = dns.ranges().iter().map(|r| r.to_string()).collect();
        return Err(format!(
            "{bare} resolves to {}, outside the in-VPC ranges ({}): refused, the call must stay \
             on PrivateLink (require_private); is private DNS on for the interface endpoint, or \
             is `endpoint` its DNS name?",
            list.join(", "),
            ranges.join(", ")
        )
        .into());
    }
    let mut last = String::new();
    for ip in inside {
        let addr = SocketAddr::new(ip, port);
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = format!("tcp connect to {addr}: {e}"),
            Err(_) => {
                last = format!(
                    "tcp connect to {addr}: no answer within {}",
                    humantime::format_duration(CONNECT_TIMEOUT)
                )
            }
        }
    }
    Err(last.into())
}

/// A proxy URL for logs, without its credentials.
fn redact_userinfo(uri: &Uri) -> String {
    match uri.authority() {
        Some(a) => format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("http"),
            a.as_str().rsplit('@').next().unwrap_or("")
        ),
        None => "?".into(),
    }
}

enum FetchStream {
    Plain(TokioIo<TcpStream>),
    Tls(TokioIo<Box<TlsStream<TcpStream>>>),
}

impl Connection for FetchStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for FetchStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            FetchStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            FetchStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for FetchStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            FetchStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            FetchStream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            FetchStream::Plain(s) => Pin::new(s).poll_flush(cx),
            FetchStream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            FetchStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            FetchStream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
