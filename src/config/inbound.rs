//! `[inbound]`: who may use the proxy, as the file and flags say it, and its validation;
//! the strict syntax of a request's authority (`host[:port]`), which `allowed_hosts` and
//! `admin_hosts` are judged by. The checks on each request are the inbound guard's
//! (`proxy::inbound`).
//!
//! ```toml
//! [inbound]
//! allowed_clients = ["10.0.0.0/16"]           # client CIDRs; empty = any (loopback only)
//! token_file = "/run/secrets/inbound-token"   # or token_env = "VAR": agents send
//!                                             # Authorization: Bearer <token>
//! allowed_origins = ["https://console.example.com"]  # browser Origins; others get 403
//! allow_local_origins = true                  # pages on localhost/127.0.0.1/[::1] (default)
//! allowed_hosts = ["mcp-proxy.internal"]      # Host names besides IPs and localhost
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;

use crate::auth::secret::Secret;
use crate::config::{CredentialConfig, RouteConfig};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InboundConfig {
    /// Client address ranges allowed to connect; empty allows any (loopback listeners only).
    #[serde(default)]
    pub allowed_clients: Vec<IpNet>,
    /// Environment variable holding the inbound client token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding the inbound client token (read at start and on reload).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Browser origins (`scheme://host[:port]`, or `null`) allowed to call the proxy.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Whether a page on this machine may call the proxy: an `Origin` of `http` or `https`
    /// on `localhost`, `127.0.0.1` or `[::1]`, any port ([`is_local_origin`]). On by
    /// default, as the MCP transport's DNS-rebinding guidance allows.
    #[serde(default = "yes")]
    pub allow_local_origins: bool,
    /// Host names of this listener besides IP literals and `localhost`.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

fn yes() -> bool {
    true
}

impl Default for InboundConfig {
    fn default() -> Self {
        InboundConfig {
            allowed_clients: Vec::new(),
            token_env: None,
            token_file: None,
            allowed_origins: Vec::new(),
            allow_local_origins: yes(),
            allowed_hosts: Vec::new(),
        }
    }
}

impl InboundConfig {
    /// The inbound token, read from its variable or file and checked.
    pub fn token(&self) -> Result<Option<Secret>, (String, String)> {
        let (value, key, origin) = match (&self.token_env, &self.token_file) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err((
                    "inbound.token_file".into(),
                    "give either token_env or token_file, not both".into(),
                ))
            }
            (Some(var), None) => (
                std::env::var(var).map_err(|_| {
                    (
                        "inbound.token_env".to_string(),
                        format!("environment variable {var} is not set (or not UTF-8)"),
                    )
                })?,
                "inbound.token_env",
                format!("environment variable {var}"),
            ),
            (None, Some(path)) => (
                std::fs::read_to_string(path).map_err(|e| {
                    (
                        "inbound.token_file".to_string(),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?,
                "inbound.token_file",
                format!("file {}", path.display()),
            ),
        };
        let value = value.trim();
        if value.len() < 16 {
            return Err((
                key.into(),
                format!("the token in {origin} is shorter than 16 characters; use a random one"),
            ));
        }
        if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err((
                key.into(),
                format!("the token in {origin} contains spaces or control characters"),
            ));
        }
        Ok(Some(Secret::new(value)))
    }

    fn token_key(&self) -> &'static str {
        if self.token_file.is_some() {
            "inbound.token_file"
        } else {
            "inbound.token_env"
        }
    }
}

/// Every problem of `[inbound]` against the listener and the routes, as `(key, problem)`.
/// A listener off loopback needs `allowed_clients` or a token; a token cannot be combined
/// with a passthrough route (the agent's Authorization carries the inbound token, and a
/// passthrough route would hand it to the gateway). `route_label` names a route in
/// messages (`route "billing" (route[1])`).
pub fn problems(
    config: &InboundConfig,
    listen: SocketAddr,
    routes: &[RouteConfig],
    route_label: impl Fn(usize) -> String,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Err(problem) = config.token() {
        out.push(problem);
    }
    let token_given = config.token_env.is_some() || config.token_file.is_some();
    for (i, origin) in config.allowed_origins.iter().enumerate() {
        if let Err(e) = parse_origin(origin) {
            out.push((format!("inbound.allowed_origins[{i}]"), e));
        }
    }
    for (i, host) in config.allowed_hosts.iter().enumerate() {
        if host.is_empty() || host.contains(['/', ' ', ':']) {
            out.push((
                format!("inbound.allowed_hosts[{i}]"),
                format!("{host:?} must be a bare host name (no scheme, port or path)"),
            ));
        }
    }
    if token_given {
        if let Some(i) = routes
            .iter()
            .position(|r| r.credential == CredentialConfig::Passthrough)
        {
            out.push((
                config.token_key().into(),
                format!(
                    "an inbound token cannot be used with {}, whose credential is passthrough: \
                     the agent's Authorization header carries the inbound token and would reach the gateway",
                    route_label(i)
                ),
            ));
        }
    }
    if !listen.ip().is_loopback() && config.allowed_clients.is_empty() && !token_given {
        out.push((
            "inbound.allowed_clients".into(),
            format!(
                "listening on {listen}, which is not a loopback address, needs inbound.allowed_clients \
                 or an inbound token (inbound.token_env / inbound.token_file); \
                 allowed_clients = [\"0.0.0.0/0\", \"::/0\"] admits everyone on purpose"
            ),
        ));
    }
    out
}

/// What `check` warns about: a listener anyone on the network may use.
pub fn exposure_warning(config: &InboundConfig, listen: SocketAddr) -> Option<String> {
    let open_to_all = config.allowed_clients.iter().any(|n| n.prefix_len() == 0);
    let no_token = config.token_env.is_none() && config.token_file.is_none();
    (!listen.ip().is_loopback() && open_to_all && no_token).then(|| {
        format!(
            "listening on {listen} with allowed_clients admitting every address and no inbound token: \
             anyone who can reach it can use the gateway credentials"
        )
    })
}

/// The host of a `Host` header or an `:authority`, read strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestHost {
    Ip(IpAddr),
    /// A DNS name, lower-cased, without a trailing dot.
    Name(String),
}

/// The host part of a Host header or `:authority`, read by [`Authority::parse`] (the
/// admin listener's allow-list judges names and addresses apart).
pub fn parse_request_host(value: &[u8]) -> Result<RequestHost, &'static str> {
    Ok(match Authority::parse(value)?.host {
        // The allow-lists hold names without the root's trailing dot.
        AuthorityHost::Name(name) => RequestHost::Name(match name.strip_suffix('.') {
            Some(bare) => bare.to_string(),
            None => name,
        }),
        AuthorityHost::V4(ip) => RequestHost::Ip(IpAddr::V4(ip)),
        AuthorityHost::V6(ip) => RequestHost::Ip(IpAddr::V6(ip)),
    })
}

/// A request's authority, `host[:port]`, parsed strictly (RFC 9110 7.2, RFC 3986
/// 3.2.2-3): a name of letters, digits, `-`, `_` and `.` (non-empty labels of at most 63
/// characters), an IPv4 address, or an IPv6 address in brackets; then optionally `:`
/// and a decimal port. No user information, quotes, spaces, commas, percent-encoding,
/// zone ids or anything else that would let the value carry more than a host and a port
/// into the URLs and headers built from it. Displayed re-serialised: the name in lower
/// case, an address in its canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub(crate) host: AuthorityHost,
    pub(crate) port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorityHost {
    /// In lower case.
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl Authority {
    /// Parses a Host header or `:authority` value; the error says what is wrong.
    pub fn parse(value: &[u8]) -> Result<Authority, &'static str> {
        if value.is_empty() {
            return Err("it is empty");
        }
        let (host, port) = if let Some(rest) = value.strip_prefix(b"[") {
            let close = rest
                .iter()
                .position(|&b| b == b']')
                .ok_or("an IPv6 address lacks its closing ']'")?;
            let ip = std::str::from_utf8(&rest[..close])
                .ok()
                .and_then(|literal| literal.parse::<Ipv6Addr>().ok())
                .ok_or("the part in brackets is not an IPv6 address")?;
            let port = match &rest[close + 1..] {
                [] => None,
                [b':', port @ ..] => Some(parse_port(port)?),
                _ => return Err("only ':' and a port may follow an IPv6 address"),
            };
            (AuthorityHost::V6(ip), port)
        } else {
            let (host, port) = match value.iter().position(|&b| b == b':') {
                Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
                None => (value, None),
            };
            (parse_host_name(host)?, port.map(parse_port).transpose()?)
        };
        Ok(Authority { host, port })
    }

    /// The host without the port: a name in lower case, or an address (IPv6 without
    /// brackets).
    pub fn host(&self) -> String {
        match &self.host {
            AuthorityHost::Name(name) => name.clone(),
            AuthorityHost::V4(ip) => ip.to_string(),
            AuthorityHost::V6(ip) => ip.to_string(),
        }
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

fn parse_port(digits: &[u8]) -> Result<u16, &'static str> {
    const BAD: &str = "the port is not a number from 0 to 65535";
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(BAD);
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or(BAD)
}

fn parse_host_name(host: &[u8]) -> Result<AuthorityHost, &'static str> {
    if host.is_empty() {
        return Err("the host is empty");
    }
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if let Some(bad) = host.iter().find(|b| !allowed(b)) {
        return Err(match bad {
            b'@' => "user information ('@') is not allowed",
            b'%' => "percent-encoding is not allowed",
            b'"' | b'\'' => "quotes are not allowed",
            b',' => "a list is not allowed",
            b' ' | b'\t' => "spaces are not allowed",
            b'[' | b']' => "an IPv6 address must be the whole host, in brackets",
            _ => "a host name may hold only letters, digits, '-', '_' and '.'",
        });
    }
    let text = std::str::from_utf8(host).map_err(|_| "it is not ASCII")?;
    if let Ok(ip) = text.parse::<Ipv4Addr>() {
        return Ok(AuthorityHost::V4(ip));
    }
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        // `127.1`: some clients read it as an address; no name looks like that.
        return Err("digits and dots that are not a dotted-quad IPv4 address");
    }
    let labels = text.strip_suffix('.').unwrap_or(text);
    if text.len() > 254 || labels.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return Err("the host name has an empty or over-long label");
    }
    Ok(AuthorityHost::Name(text.to_ascii_lowercase()))
}

impl std::fmt::Display for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            AuthorityHost::Name(name) => f.write_str(name)?,
            AuthorityHost::V4(ip) => write!(f, "{ip}")?,
            AuthorityHost::V6(ip) => write!(f, "[{ip}]")?,
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// Whether an `Origin` names a page served from this machine: `http` or `https` and a
/// host of exactly `localhost`, `127.0.0.1` or `[::1]`, with any port. Scheme and host are
/// case-insensitive. The authority is read as strictly as a Host ([`Authority::parse`]), so
/// `http://localhost.evil.example`, `http://127.0.0.1.nip.io`, user information
/// (`http://localhost@evil.example`), a path or anything else after the port, and `null`
/// (sandboxed frames and `file:` pages of any site send it) are not local.
pub fn is_local_origin(origin: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(origin) else {
        return false;
    };
    let text = text.trim().trim_end_matches('/').to_ascii_lowercase();
    let Some(authority) = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
    else {
        return false;
    };
    match Authority::parse(authority.as_bytes()) {
        Ok(Authority { host, .. }) => match host {
            AuthorityHost::Name(name) => name == "localhost",
            AuthorityHost::V4(ip) => ip == Ipv4Addr::LOCALHOST,
            AuthorityHost::V6(ip) => ip == Ipv6Addr::LOCALHOST,
        },
        Err(_) => false,
    }
}

/// `https://Console.Example.com:8443/` → `https://console.example.com:8443`; `null` stays.
pub fn parse_origin(origin: &str) -> Result<String, String> {
    let o = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    if o == "null" {
        return Ok(o);
    }
    let uri: http::Uri = o
        .parse()
        .map_err(|_| format!("{origin:?} is not an origin like https://app.example.com"))?;
    let ok = matches!(uri.scheme_str(), Some("http" | "https"))
        && uri.authority().is_some()
        && uri.path() == "/"
        && uri.query().is_none()
        && !o.contains('@');
    if ok {
        Ok(o)
    } else {
        Err(format!(
            "{origin:?} is not an origin like https://app.example.com (scheme, host and optional port only)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first problem's key, as the old single-error validation named it.
    fn first_key(config: &InboundConfig, listen: SocketAddr, routes: &[RouteConfig]) -> String {
        problems(config, listen, routes, |i| format!("route[{i}]"))
            .into_iter()
            .next()
            .map(|(key, _)| key)
            .unwrap_or_default()
    }

    #[test]
    fn local_origins_are_exactly_localhost_and_the_loopback_addresses() {
        for local in [
            "http://localhost",
            "http://localhost:3000",
            "https://localhost:8443",
            "http://127.0.0.1:3000",
            "http://[::1]:5173",
            "https://[0:0:0:0:0:0:0:1]",
            "HTTP://LocalHost:3000",
            "http://localhost:3000/",
        ] {
            assert!(is_local_origin(local.as_bytes()), "{local}");
        }
        for foreign in [
            "http://localhost.evil.example",
            "http://evil.localhost.example",
            "http://127.0.0.1.nip.io",
            "http://localhost@evil.example",
            "http://evil.example@localhost",
            "http://localhost:3000/path",
            "http://localhost:3000?x",
            "http://127.1",
            "http://127.0.0.2",
            "http://[::ffff:127.0.0.1]",
            "http://0.0.0.0",
            "ws://localhost",
            "file://localhost",
            "localhost:3000",
            "null",
            "",
            "http://localhost:99999",
            "http://local%68ost",
            "http://localhost\u{0}",
        ] {
            assert!(!is_local_origin(foreign.as_bytes()), "{foreign}");
        }
        assert!(!is_local_origin(b"http://localhost\xff"));
        assert!(InboundConfig::default().allow_local_origins);
        let off: InboundConfig = toml::from_str("allow_local_origins = false").unwrap();
        assert!(!off.allow_local_origins);
    }

    #[test]
    fn validation_names_the_key() {
        let listen_any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(
            first_key(&InboundConfig::default(), listen_any, &[]),
            "inbound.allowed_clients"
        );
        let open: InboundConfig = toml::from_str("allowed_clients = [\"0.0.0.0/0\"]").unwrap();
        assert_eq!(first_key(&open, listen_any, &[]), "");
        assert!(exposure_warning(&open, listen_any).is_some());
        assert!(exposure_warning(&open, "127.0.0.1:8080".parse().unwrap()).is_none());
        std::env::set_var("INBOUND_TEST_TOKEN_2", "0123456789abcdef-token");
        let token: InboundConfig = toml::from_str("token_env = \"INBOUND_TEST_TOKEN_2\"").unwrap();
        assert_eq!(first_key(&token, listen_any, &[]), "");
        let mut route = RouteConfig::new("https://gw.example/mcp");
        route.credential = CredentialConfig::Passthrough;
        let all = problems(&token, listen_any, &[route], |i| {
            format!("route \"b\" (route[{i}])")
        });
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].0, "inbound.token_env");
        assert!(
            all[0].1.contains("with route \"b\" (route[0]), whose"),
            "{}",
            all[0].1
        );
        std::env::set_var("INBOUND_TEST_TOKEN_3", "short");
        let short: InboundConfig = toml::from_str("token_env = \"INBOUND_TEST_TOKEN_3\"").unwrap();
        // The token is refused on its key; the listener is not also said to lack one.
        let all = problems(&short, listen_any, &[], |i| format!("route[{i}]"));
        let keys: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["inbound.token_env"]);
        let bad: InboundConfig =
            toml::from_str("allowed_origins = [\"evil\", \"worse\"]\nallowed_hosts = [\"a:1\"]")
                .unwrap();
        let all = problems(&bad, listen_any, &[], |i| format!("route[{i}]"));
        let keys: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "inbound.allowed_origins[0]",
                "inbound.allowed_origins[1]",
                "inbound.allowed_hosts[0]",
                "inbound.allowed_clients"
            ]
        );
    }

    #[test]
    fn request_hosts_are_read_strictly() {
        let name = |n: &str| Ok(RequestHost::Name(n.into()));
        let ip = |a: &str| Ok(RequestHost::Ip(a.parse().unwrap()));
        for (value, expected) in [
            ("127.0.0.1", ip("127.0.0.1")),
            ("127.0.0.1:9901", ip("127.0.0.1")),
            ("10.1.2.3:9901", ip("10.1.2.3")),
            ("[::1]", ip("::1")),
            ("[::1]:9901", ip("::1")),
            ("[::ffff:127.0.0.1]:80", ip("::ffff:127.0.0.1")),
            ("localhost", name("localhost")),
            ("LocalHost.:80", name("localhost")),
            (
                "proxy-1.internal_x.example",
                name("proxy-1.internal_x.example"),
            ),
        ] {
            assert_eq!(parse_request_host(value.as_bytes()), expected, "{value}");
        }
        for bad in [
            "",
            "user@localhost",
            "localhost@evil.example",
            "\"localhost\"",
            "'localhost'",
            "local host",
            " localhost",
            "localhost,evil.example",
            "localhost\tx",
            "localhost:",
            "localhost:99999",
            "localhost:80:80",
            "localhost:8o",
            "::1",
            "[::1",
            "[::1]x",
            "[fe80::1%25eth0]",
            "[v1.x]",
            "[127.0.0.1]",
            "127.1",
            "1.2.3.4.5",
            "evil..example",
            ".",
            "a/b",
            "%6cocalhost",
            "caf\u{e9}.example",
        ] {
            assert!(parse_request_host(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(parse_request_host(b"local\xffhost").is_err());
    }
}
