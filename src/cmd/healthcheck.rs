//! `mcp-vpce-proxy healthcheck`: asks a running proxy's admin listener for `/healthz`
//! (or `/readyz` with `--ready`) and exits 0 only on 200. It is what a container
//! `HEALTHCHECK` runs, since the image carries no curl.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The running proxy's admin address.
    #[arg(
        long,
        env = "MCP_VPCE_PROXY_ADMIN",
        default_value = crate::config::DEFAULT_ADMIN,
        value_name = "ADDR"
    )]
    pub admin: String,
    /// Ask /readyz (every route resolved to allowed addresses and holds a credential)
    /// instead of /healthz (the process serves).
    #[arg(long)]
    pub ready: bool,
    /// Give up after this long.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

pub fn run(args: HealthcheckArgs) -> Result<(), String> {
    let addr = target(&args.admin)?;
    let path = if args.ready { "/readyz" } else { "/healthz" };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let (status, body) = runtime.block_on(async {
        tokio::time::timeout(args.timeout, get(addr, path))
            .await
            .map_err(|_| {
                format!(
                    "http://{addr}{path}: no answer within {}",
                    humantime::format_duration(args.timeout)
                )
            })?
    })?;
    let body = body.trim_end();
    if status == StatusCode::OK {
        println!("{path}: {body}");
        Ok(())
    } else {
        Err(format!("{path}: HTTP {}: {body}", status.as_u16()))
    }
}

/// The address to dial: an admin listener bound to all interfaces (0.0.0.0:9901, for
/// kubelet probes) is asked on loopback.
fn target(admin: &str) -> Result<SocketAddr, String> {
    let addr = crate::config::parse_admin(admin)
        .map_err(|e| format!("--admin: {e}"))?
        .ok_or("--admin: the admin listener is off; there is nothing to ask")?;
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(SocketAddr::new(ip, addr.port()))
}

async fn get(addr: SocketAddr, path: &str) -> Result<(StatusCode, String), String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = Request::get(format!("http://{addr}{path}"))
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("http://{addr}{path}: {}", cause(&e)))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), 64 * 1024)
        .collect()
        .await
        .map_err(|e| format!("http://{addr}{path}: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The innermost cause ("Connection refused (os error 111)"), not hyper's wrapper text.
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_admin_address_is_asked_on_loopback() {
        assert_eq!(
            target("0.0.0.0:9901").unwrap(),
            "127.0.0.1:9901".parse().unwrap()
        );
        assert_eq!(target("[::]:9901").unwrap(), "[::1]:9901".parse().unwrap());
        assert_eq!(
            target("10.0.0.5:9901").unwrap(),
            "10.0.0.5:9901".parse().unwrap()
        );
        assert!(target("off").unwrap_err().contains("off"));
    }
}
