//! HTTP/1.1 connections to a forwarder (plain) or to the upstream directly (TLS with the
//! bench CA and the gateway name as SNI), one request at a time per connection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST};
use http::{Method, Request};
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Where the load goes and how to talk to it.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// `http://127.0.0.1:PORT/mcp` (a forwarder) or `https://127.0.0.1:PORT/mcp` (direct).
    #[arg(long)]
    pub url: String,
    /// CA (PEM) to trust for an https:// URL.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// TLS server name for an https:// URL.
    #[arg(long)]
    pub sni: Option<String>,
    /// Extra request header `Name: value` (repeatable); `Host:` replaces the default.
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
}

pub struct Target {
    addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Target {
    pub fn new(args: &TargetArgs) -> Result<Target, String> {
        let uri: http::Uri = args.url.parse().map_err(|e| format!("--url: {e}"))?;
        let authority = uri.authority().ok_or("--url: no host")?;
        let ip: std::net::IpAddr = authority
            .host()
            .trim_matches(['[', ']'])
            .parse()
            .map_err(|_| "--url: the host must be an IP address")?;
        if !ip.is_loopback() {
            return Err(format!("--url: {ip} is not a loopback address"));
        }
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err("--url: http:// or https:// only".into()),
        };
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let ca = args.ca.as_ref().ok_or("--ca is required for https://")?;
            let sni = args.sni.clone().ok_or("--sni is required for https://")?;
            let roots = mcp_vpce_proxy::upstream::tls::read_ca_file(ca)?;
            let mut config = (*mcp_vpce_proxy::upstream::tls::client_config(&roots)?).clone();
            // This client speaks HTTP/1.1 only, as the load generators of the forwarders do.
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = ServerName::try_from(sni).map_err(|e| format!("--sni: {e}"))?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        let mut headers = Vec::new();
        for h in &args.headers {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| format!("--header {h:?}: expected `Name: value`"))?;
            headers.push((
                HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| e.to_string())?,
                HeaderValue::from_str(value.trim()).map_err(|e| e.to_string())?,
            ));
        }
        if !headers.iter().any(|(n, _)| n == HOST) {
            headers.push((
                HOST,
                HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?,
            ));
        }
        Ok(Target {
            addr: SocketAddr::new(ip, port),
            tls,
            path: uri.path().to_string(),
            headers,
        })
    }

    /// A new connection, its driver spawned on the current runtime.
    pub async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => handshake(tcp).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS with {}: {e}", self.addr))?;
                handshake(tls).await
            }
        }
    }

    /// A request to the target's path with `query`, the target's headers and `body`.
    pub fn request(&self, method: Method, query: &str, body: Bytes) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = format!("{}?{query}", self.path)
            .parse()
            .expect("a path and a query make a URI");
        for (name, value) in &self.headers {
            req.headers_mut().insert(name.clone(), value.clone());
        }
        req
    }
}

async fn handshake<T>(io: T) -> Result<SendRequest<Full<Bytes>>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Splits complete SSE events (ended by a blank line) off the front of `buf` and returns
/// the `sent_ns` stamp of each (0 when an event carries none).
pub fn take_events(buf: &mut Vec<u8>) -> Vec<u64> {
    let mut stamps = Vec::new();
    while let Some(end) = find(buf, b"\n\n") {
        stamps.push(sent_ns(&buf[..end]));
        buf.drain(..end + 2);
    }
    stamps
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn sent_ns(event: &[u8]) -> u64 {
    const KEY: &[u8] = b"\"sent_ns\":";
    let Some(at) = find(event, KEY) else {
        return 0;
    };
    event[at + KEY.len()..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'))
}
