//! Who may use the proxy: checks on each agent request before routing.
//!
//! ```toml
//! [inbound]
//! allowed_clients = ["10.0.0.0/16"]           # client CIDRs; empty = any (loopback only)
//! token_file = "/run/secrets/inbound-token"   # or token_env = "VAR": agents send
//!                                             # Authorization: Bearer <token>
//! allowed_origins = ["https://console.example.com"]  # browser Origins; others get 403
//! allowed_hosts = ["mcp-proxy.internal"]      # Host names besides IPs and localhost
//! ```
//!
//! The MCP transport asks local servers to guard against DNS rebinding: a page on
//! `http://evil.example` whose name is re-pointed at 127.0.0.1 makes the browser send
//! `Host: evil.example` and `Origin: http://evil.example`. Both are refused here: an Origin
//! must be on the allow-list (none is, by default) and a Host must be an IP literal,
//! `localhost`, or a name on `allowed_hosts`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use http::header::{AUTHORIZATION, HOST, ORIGIN};
use http::{Method, Version};
use hyper::body::Incoming;
use ipnet::IpNet;
use serde::Deserialize;

use crate::config::{CredentialConfig, RouteConfig};
use crate::error::ProxyError;
use crate::secret::Secret;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
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
    /// Host names of this listener besides IP literals and `localhost`.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

impl InboundConfig {
    fn token(&self) -> Result<Option<Secret>, (String, String)> {
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

/// Validation of `[inbound]` against the listener and the routes; the error names the key.
/// A listener off loopback needs `allowed_clients` or a token; a token cannot be combined
/// with a passthrough route (the agent's Authorization carries the inbound token, and a
/// passthrough route would hand it to the gateway).
pub fn validate(
    config: &InboundConfig,
    listen: SocketAddr,
    routes: &[RouteConfig],
) -> Result<(), (String, String)> {
    let token = config.token()?;
    for (i, origin) in config.allowed_origins.iter().enumerate() {
        parse_origin(origin).map_err(|e| (format!("inbound.allowed_origins[{i}]"), e))?;
    }
    for (i, host) in config.allowed_hosts.iter().enumerate() {
        if host.is_empty() || host.contains(['/', ' ', ':']) {
            return Err((
                format!("inbound.allowed_hosts[{i}]"),
                format!("{host:?} must be a bare host name (no scheme, port or path)"),
            ));
        }
    }
    if token.is_some() {
        if let Some(i) = routes
            .iter()
            .position(|r| r.credential == CredentialConfig::Passthrough)
        {
            return Err((
                config.token_key().into(),
                format!(
                    "an inbound token cannot be used with route[{i}], whose credential is passthrough: \
                     the agent's Authorization header carries the inbound token and would reach the gateway"
                ),
            ));
        }
    }
    if !listen.ip().is_loopback() && config.allowed_clients.is_empty() && token.is_none() {
        return Err((
            "inbound.allowed_clients".into(),
            format!(
                "listening on {listen}, which is not a loopback address, needs inbound.allowed_clients \
                 or an inbound token (inbound.token_env / inbound.token_file); \
                 allowed_clients = [\"0.0.0.0/0\", \"::/0\"] admits everyone on purpose"
            ),
        ));
    }
    Ok(())
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

/// The inbound rules in force, built once from config.
#[derive(Default)]
pub struct InboundGuard {
    clients: Vec<IpNet>,
    /// SHA-256 of the expected `Authorization` value, compared digest to digest.
    token: Option<[u8; 32]>,
    origins: Vec<String>,
    hosts: Vec<String>,
}

impl InboundGuard {
    pub fn build(config: &InboundConfig, listen: SocketAddr) -> Result<InboundGuard, String> {
        let token = config.token().map_err(|(k, p)| format!("{k}: {p}"))?;
        let origins = config
            .allowed_origins
            .iter()
            .enumerate()
            .map(|(i, o)| parse_origin(o).map_err(|e| format!("inbound.allowed_origins[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        if !listen.ip().is_loopback() && config.allowed_clients.is_empty() && token.is_none() {
            tracing::warn!(%listen, "no inbound.allowed_clients and no inbound token on a non-loopback listener");
        }
        Ok(InboundGuard {
            clients: config.allowed_clients.clone(),
            token: token.map(|t| digest(format!("Bearer {}", t.expose()).as_bytes())),
            origins,
            hosts: config
                .allowed_hosts
                .iter()
                .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        })
    }

    /// `peer` is None for unix-socket connections (the socket's mode and owner decide).
    pub fn check(
        &self,
        peer: Option<SocketAddr>,
        req: &http::Request<Incoming>,
    ) -> Result<(), ProxyError> {
        self.check_parts(peer, req.method(), req.version(), req.uri(), req.headers())
    }

    fn check_parts(
        &self,
        peer: Option<SocketAddr>,
        method: &Method,
        version: Version,
        uri: &http::Uri,
        headers: &http::HeaderMap,
    ) -> Result<(), ProxyError> {
        if let (Some(peer), false) = (peer, self.clients.is_empty()) {
            let ip = peer.ip().to_canonical();
            if !self.clients.iter().any(|net| net.contains(&ip)) {
                return Err(ProxyError::ClientRefused { peer: ip });
            }
        }
        // CONNECT and absolute-form targets are refused by the router with their own
        // answers; their Host names another server by design.
        let proxy_form =
            *method == Method::CONNECT || (version < Version::HTTP_2 && uri.authority().is_some());
        if !proxy_form {
            let host = if version >= Version::HTTP_2 {
                uri.authority().map(|a| a.host().to_string())
            } else {
                headers
                    .get(HOST)
                    .map(|h| host_of(&String::from_utf8_lossy(h.as_bytes())).to_string())
            };
            if let Some(host) = host {
                if !self.host_allowed(&host) {
                    return Err(ProxyError::HostRefused { host });
                }
            }
        }
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = String::from_utf8_lossy(origin.as_bytes()).to_string();
            let normalized = origin.trim().trim_end_matches('/').to_ascii_lowercase();
            if !self.origins.contains(&normalized) {
                return Err(ProxyError::OriginRefused { origin });
            }
        }
        if let Some(expected) = &self.token {
            let given = headers
                .get(AUTHORIZATION)
                .map(|v| normalize_bearer(v.as_bytes()));
            if given.is_none_or(|g| digest(&g) != *expected) {
                return Err(ProxyError::Unauthenticated);
            }
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_ok() {
            return true;
        }
        let name = bare.trim_end_matches('.').to_ascii_lowercase();
        name == "localhost" || self.hosts.contains(&name)
    }
}

/// The host of a `Host` header or an `:authority`, read strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestHost {
    Ip(IpAddr),
    /// A DNS name, lower-cased, without a trailing dot.
    Name(String),
}

/// Reads RFC 9110's `uri-host [ ":" port ]` strictly: an IPv4 address, a bracketed IPv6
/// address, or a DNS name of letters, digits, `-` and `_` labels; then an optional port
/// of digits. Refuses user information (`@`), quotes, spaces, commas and anything else
/// that a name cannot hold, IPv6 zone ids and IPvFuture, and number-and-dot forms that
/// are not a dotted quad (`127.1`, which some clients would read as an address).
pub fn parse_request_host(value: &[u8]) -> Result<RequestHost, &'static str> {
    if value.is_empty() {
        return Err("is empty");
    }
    if value.contains(&b'@') {
        return Err("contains user information (@)");
    }
    if !value.iter().all(|b| b.is_ascii_graphic()) {
        return Err("contains spaces, control or non-ASCII characters");
    }
    let text = std::str::from_utf8(value).map_err(|_| "is not ASCII")?;
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or("has an unclosed [")?;
        let ip: std::net::Ipv6Addr = inner
            .parse()
            .map_err(|_| "has brackets around something that is not an IPv6 address")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("has text after the ]")?),
        };
        (RequestHost::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        };
        let host = if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            let ip: std::net::Ipv4Addr = host
                .parse()
                .map_err(|_| "is neither a dotted-quad IPv4 address nor a name")?;
            RequestHost::Ip(IpAddr::V4(ip))
        } else {
            let name = host.strip_suffix('.').unwrap_or(host);
            let ok = !name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
            if !ok {
                return Err("is not a host name (letters, digits, '-', '_' and dots only)");
            }
            RequestHost::Name(name.to_ascii_lowercase())
        };
        (host, port)
    };
    if let Some(port) = port {
        let digits =
            !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        if !digits || port.parse::<u16>().is_err() {
            return Err("has a port that is not a number from 0 to 65535");
        }
    }
    Ok(host)
}

/// `host:port`, `[v6]:port`, `host` → the host part.
fn host_of(value: &str) -> &str {
    let value = value.trim();
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match value.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => value,
    }
}

/// `bearer   TOKEN` → `Bearer TOKEN`, so that the scheme's case and spacing do not matter.
fn normalize_bearer(value: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(value);
    let text = text.trim();
    match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            format!("Bearer {}", token.trim()).into_bytes()
        }
        _ => text.as_bytes().to_vec(),
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// `https://Console.Example.com:8443/` → `https://console.example.com:8443`; `null` stays.
fn parse_origin(origin: &str) -> Result<String, String> {
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

/// Binds a unix domain socket listener with the given mode (e.g. `0o660`) and optional
/// owner and group (numeric ids): the file permissions decide who may connect. A stale
/// socket file left by a previous run is replaced; any other file at `path` is an error.
#[cfg(unix)]
pub fn bind_unix(
    path: &Path,
    mode: u32,
    owner: Option<u32>,
    group: Option<u32>,
) -> Result<tokio::net::UnixListener, String> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove the old socket {}: {e}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    if owner.is_some() || group.is_some() {
        std::os::unix::fs::chown(path, owner, group)
            .map_err(|e| format!("cannot change the owner of {}: {e}", path.display()))?;
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(toml: &str) -> InboundGuard {
        let config: InboundConfig = toml::from_str(toml).unwrap();
        InboundGuard::build(&config, "127.0.0.1:8080".parse().unwrap()).unwrap()
    }

    fn check(g: &InboundGuard, peer: &str, headers: &[(&str, &str)]) -> Result<(), ProxyError> {
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        g.check_parts(
            Some(peer.parse().unwrap()),
            &Method::POST,
            Version::HTTP_11,
            &"/mcp".parse().unwrap(),
            &map,
        )
    }

    #[test]
    fn hosts_must_be_ours() {
        let g = guard("allowed_hosts = [\"proxy.internal\"]");
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST",
            "[::1]:8080",
            "10.1.2.3",
            "proxy.internal:80",
            "Proxy.Internal.",
        ] {
            assert_eq!(
                check(&g, "127.0.0.1:1", &[("host", host)]),
                Ok(()),
                "{host}"
            );
        }
        assert_eq!(
            check(&g, "127.0.0.1:1", &[("host", "evil.example:8080")]),
            Err(ProxyError::HostRefused {
                host: "evil.example".into()
            })
        );
    }

    #[test]
    fn origins_need_the_allow_list() {
        let g = guard("allowed_origins = [\"https://Console.example.com/\"]");
        assert_eq!(
            check(
                &g,
                "127.0.0.1:1",
                &[("origin", "https://console.example.com")]
            ),
            Ok(())
        );
        assert!(matches!(
            check(
                &g,
                "127.0.0.1:1",
                &[("origin", "http://console.example.com")]
            ),
            Err(ProxyError::OriginRefused { .. })
        ));
        assert!(check(&guard(""), "127.0.0.1:1", &[("origin", "null")]).is_err());
        assert_eq!(check(&guard(""), "127.0.0.1:1", &[]), Ok(()));
        assert!(parse_origin("https://a.example/path").is_err());
        assert!(parse_origin("a.example").is_err());
    }

    #[test]
    fn clients_and_tokens() {
        let g = guard("allowed_clients = [\"10.0.0.0/8\", \"::1/128\"]");
        assert_eq!(check(&g, "10.9.8.7:1", &[]), Ok(()));
        assert_eq!(
            check(&g, "[::ffff:10.0.0.1]:1", &[]),
            Ok(()),
            "v4-mapped addresses count as v4"
        );
        assert_eq!(
            check(&g, "127.0.0.1:1", &[]),
            Err(ProxyError::ClientRefused {
                peer: "127.0.0.1".parse().unwrap()
            })
        );
        std::env::set_var("INBOUND_TEST_TOKEN", "0123456789abcdef-token");
        let g = guard("token_env = \"INBOUND_TEST_TOKEN\"");
        assert_eq!(
            check(
                &g,
                "127.0.0.1:1",
                &[("authorization", "Bearer 0123456789abcdef-token")]
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &g,
                "127.0.0.1:1",
                &[("authorization", "bearer  0123456789abcdef-token")]
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &g,
                "127.0.0.1:1",
                &[("authorization", "Bearer 0123456789abcdef-tokem")]
            ),
            Err(ProxyError::Unauthenticated)
        );
        assert_eq!(
            check(&g, "127.0.0.1:1", &[]),
            Err(ProxyError::Unauthenticated)
        );
    }

    #[test]
    fn validation_names_the_key() {
        let listen_any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let err = validate(&InboundConfig::default(), listen_any, &[]).unwrap_err();
        assert_eq!(err.0, "inbound.allowed_clients");
        let open: InboundConfig = toml::from_str("allowed_clients = [\"0.0.0.0/0\"]").unwrap();
        validate(&open, listen_any, &[]).unwrap();
        assert!(exposure_warning(&open, listen_any).is_some());
        assert!(exposure_warning(&open, "127.0.0.1:8080".parse().unwrap()).is_none());
        std::env::set_var("INBOUND_TEST_TOKEN_2", "0123456789abcdef-token");
        let token: InboundConfig = toml::from_str("token_env = \"INBOUND_TEST_TOKEN_2\"").unwrap();
        validate(&token, listen_any, &[]).unwrap();
        let mut route = RouteConfig::new("https://gw.example/mcp");
        route.credential = CredentialConfig::Passthrough;
        let err = validate(&token, listen_any, &[route]).unwrap_err();
        assert_eq!(err.0, "inbound.token_env");
        assert!(err.1.contains("route[0]"), "{}", err.1);
        std::env::set_var("INBOUND_TEST_TOKEN_3", "short");
        let short: InboundConfig = toml::from_str("token_env = \"INBOUND_TEST_TOKEN_3\"").unwrap();
        assert_eq!(
            validate(&short, listen_any, &[]).unwrap_err().0,
            "inbound.token_env"
        );
        let bad: InboundConfig = toml::from_str("allowed_origins = [\"evil\"]").unwrap();
        assert_eq!(
            validate(&bad, listen_any, &[]).unwrap_err().0,
            "inbound.allowed_origins[0]"
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

    #[tokio::test]
    async fn unix_sockets_get_the_mode_asked_for() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.sock");
        let listener = bind_unix(&path, 0o600, None, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(listener);
        // A stale socket is replaced; a regular file is not.
        let _again = bind_unix(&path, 0o660, None, None).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o660
        );
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(bind_unix(&file, 0o600, None, None)
            .unwrap_err()
            .contains("not a socket"));
    }
}
