//! `mcp-vpce-proxy healthcheck`: asks a running proxy's admin listener for `/healthz`
//! (or `/readyz` with `--ready`) and exits 0 only on 200. It is what a container
//! `HEALTHCHECK` runs, since the image carries no curl.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::{parse_admin, ConfigSource, DEFAULT_ADMIN};

/// The admin address is found as `run` finds it: `--admin` (or `MCP_VPCE_PROXY_ADMIN`)
/// first, then `admin` in the configuration (`--config`, `MCP_VPCE_PROXY_CONFIG`, or the
/// text of `MCP_VPCE_PROXY_CONFIG_TOML`), then the default.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The running proxy's admin address [default: `admin` in the configuration, else
    /// 127.0.0.1:9901].
    #[arg(long, env = "MCP_VPCE_PROXY_ADMIN", value_name = "ADDR")]
    pub admin: Option<String>,
    /// The configuration the proxy runs with, read for its `admin` address only (or the
    /// whole TOML in MCP_VPCE_PROXY_CONFIG_TOML, as for `run`).
    #[arg(long, env = "MCP_VPCE_PROXY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Ask /readyz (every route resolved to allowed addresses and holds a credential)
    /// instead of /healthz (the process serves).
    #[arg(long)]
    pub ready: bool,
    /// Give up after this long.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

pub fn run(args: HealthcheckArgs) -> Result<(), String> {
    let source = ConfigSource::from_environment(args.config.as_deref())?;
    let admin = admin_address(args.admin.as_deref(), &source)?;
    let addr = admin.target()?;
    let path = if args.ready { "/readyz" } else { "/healthz" };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let (status, body) = runtime
        .block_on(async {
            tokio::time::timeout(args.timeout, get(addr, path))
                .await
                .map_err(|_| {
                    format!(
                        "http://{addr}{path}: no answer within {}",
                        humantime::format_duration(args.timeout)
                    )
                })?
        })
        // Nothing answered: say which address was tried and why that one.
        .map_err(|e| format!("{e} [{admin}]"))?;
    let body = body.trim_end();
    if status == StatusCode::OK {
        println!("{path}: {body}");
        Ok(())
    } else {
        Err(format!("{path}: HTTP {}: {body}", status.as_u16()))
    }
}

/// The admin address as configured, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AdminAddress {
    /// `None`: the admin listener is off.
    addr: Option<SocketAddr>,
    origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Flag,
    /// `admin` in this configuration (a file's path, or `$MCP_VPCE_PROXY_CONFIG_TOML`).
    Config(String),
    /// The default, because the configuration named here (if any) does not set it.
    Default(Option<String>),
}

impl fmt::Display for AdminAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr = self.addr.map_or("off".to_string(), |a| a.to_string());
        write!(f, "admin address {addr} ")?;
        match &self.origin {
            Origin::Flag => f.write_str("from --admin / MCP_VPCE_PROXY_ADMIN")?,
            Origin::Config(source) => write!(f, "from `admin` in {source}")?,
            Origin::Default(Some(source)) => {
                write!(f, "by default: {source} does not set `admin`")?
            }
            Origin::Default(None) => f.write_str(
                "by default: no --admin / MCP_VPCE_PROXY_ADMIN, and no configuration \
                 (--config / MCP_VPCE_PROXY_CONFIG, MCP_VPCE_PROXY_CONFIG_TOML)",
            )?,
        }
        if self.addr.is_some_and(|a| a.ip().is_unspecified()) {
            f.write_str(", asked on loopback")?;
        }
        Ok(())
    }
}

impl AdminAddress {
    /// The address to dial: an admin listener bound to all interfaces (0.0.0.0:9901, for
    /// kubelet probes) is asked on loopback.
    fn target(&self) -> Result<SocketAddr, String> {
        let addr = self.addr.ok_or_else(|| {
            format!("the admin listener is off ({self}); there is nothing to ask")
        })?;
        let ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Ok(SocketAddr::new(ip, addr.port()))
    }
}

/// `--admin` (or its variable), else the configuration's `admin`, else the default. Only
/// the `admin` key of the configuration is read: a health check does not fail because a
/// credential file of the running proxy is unreadable from here.
fn admin_address(flag: Option<&str>, source: &ConfigSource) -> Result<AdminAddress, String> {
    if let Some(text) = flag {
        return Ok(AdminAddress {
            addr: parse_admin(text).map_err(|e| format!("--admin (MCP_VPCE_PROXY_ADMIN): {e}"))?,
            origin: Origin::Flag,
        });
    }
    let default = || DEFAULT_ADMIN.parse().ok();
    let name = source.name();
    let Some(text) = source.text().map_err(|e| e.to_string())? else {
        return Ok(AdminAddress {
            addr: default(),
            origin: Origin::Default(None),
        });
    };
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| format!("{name}: {}", e.to_string().trim_end().replace('\n', "\n  ")))?;
    match table.get("admin") {
        None => Ok(AdminAddress {
            addr: default(),
            origin: Origin::Default(Some(name)),
        }),
        Some(value) => {
            let text = value.as_str().ok_or_else(|| {
                format!("{name}: admin: must be a string like \"127.0.0.1:9901\" or \"off\"")
            })?;
            Ok(AdminAddress {
                addr: parse_admin(text).map_err(|e| format!("{name}: admin: {e}"))?,
                origin: Origin::Config(name),
            })
        }
    }
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

    fn from_text(text: &str) -> Result<AdminAddress, String> {
        admin_address(None, &ConfigSource::Variable(text.into()))
    }

    #[test]
    fn an_unspecified_admin_address_is_asked_on_loopback() {
        let target = |flag: &str| admin_address(Some(flag), &ConfigSource::Flags)?.target();
        assert_eq!(
            target("0.0.0.0:9901").unwrap(),
            "127.0.0.1:9901".parse().unwrap()
        );
        assert_eq!(target("[::]:9901").unwrap(), "[::1]:9901".parse().unwrap());
        assert_eq!(
            target("10.0.0.5:9901").unwrap(),
            "10.0.0.5:9901".parse().unwrap()
        );
        assert_eq!(
            target("off").unwrap_err(),
            "the admin listener is off (admin address off from --admin / MCP_VPCE_PROXY_ADMIN); \
             there is nothing to ask"
        );
    }

    #[test]
    fn the_address_comes_from_the_flag_then_the_configuration_then_the_default() {
        let configured = ConfigSource::Variable("admin = \"127.0.0.1:19911\"\n".into());
        let flag = admin_address(Some("127.0.0.1:7"), &configured).unwrap();
        assert_eq!(
            flag.to_string(),
            "admin address 127.0.0.1:7 from --admin / MCP_VPCE_PROXY_ADMIN"
        );
        let admin = admin_address(None, &configured).unwrap();
        assert_eq!(
            admin.to_string(),
            "admin address 127.0.0.1:19911 from `admin` in $MCP_VPCE_PROXY_CONFIG_TOML"
        );
        let unset = from_text("listen = \"127.0.0.1:8080\"\n").unwrap();
        assert_eq!(
            unset.to_string(),
            "admin address 127.0.0.1:9901 by default: $MCP_VPCE_PROXY_CONFIG_TOML does not set `admin`"
        );
        let any = from_text("admin = \"0.0.0.0:9901\"\n").unwrap();
        assert_eq!(any.target().unwrap(), "127.0.0.1:9901".parse().unwrap());
        assert!(any.to_string().ends_with(", asked on loopback"), "{any}");
        let none = admin_address(None, &ConfigSource::Flags).unwrap();
        assert_eq!(none.addr, "127.0.0.1:9901".parse().ok());
        assert_eq!(
            from_text("admin = 9901\n").unwrap_err(),
            "$MCP_VPCE_PROXY_CONFIG_TOML: admin: must be a string like \"127.0.0.1:9901\" or \"off\""
        );
        assert_eq!(
            from_text("admin = \"localhost:9901\"\n").unwrap_err(),
            "$MCP_VPCE_PROXY_CONFIG_TOML: admin: \"localhost:9901\" is not an address like 127.0.0.1:9901 (or \"off\")"
        );
    }
}
