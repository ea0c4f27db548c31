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
//!
//! Before that, the Host is parsed strictly as an authority, `host[:port]` (see
//! [`Authority`]): the proxy builds its own URL from it for passthrough routes (OAuth
//! discovery documents, `WWW-Authenticate` challenges), so a Host that carries more than
//! a host and a port (`[::1]@evil.example", scope="admin`) is a 400, as is a second Host
//! header or, over HTTP/2, a `host` header that names another authority than
//! `:authority`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use http::header::{AUTHORIZATION, HOST, ORIGIN};
use http::{HeaderMap, Method, Version};
use hyper::body::Incoming;
use ipnet::IpNet;
use serde::Deserialize;

use crate::config::secret::Secret;
use crate::config::{CredentialConfig, RouteConfig};
use crate::proxy::error::ProxyError;

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
            if let Some(authority) = request_authority(version, uri, headers)? {
                if !self.host_allowed(&authority) {
                    return Err(ProxyError::HostRefused {
                        host: authority.host(),
                    });
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

    fn host_allowed(&self, authority: &Authority) -> bool {
        match &authority.host {
            AuthorityHost::V4(_) | AuthorityHost::V6(_) => true,
            AuthorityHost::Name(name) => {
                let name = name.trim_end_matches('.');
                name == "localhost" || self.hosts.iter().any(|h| h == name)
            }
        }
    }
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

/// The authority a request names, checked (None for an HTTP/1.0 request without Host):
/// - at most one Host header;
/// - HTTP/2: the `:authority`, and a `host` header beside it must name the same
///   (case-insensitively); without `:authority`, the `host` header;
/// - HTTP/1.1: the Host header, which it must have (RFC 9112 3.2);
/// - parsed strictly by [`Authority::parse`].
///
/// Absolute-form and CONNECT requests name another server by design; the router refuses
/// them, and they are not given here.
pub fn request_authority(
    version: Version,
    uri: &http::Uri,
    headers: &HeaderMap,
) -> Result<Option<Authority>, ProxyError> {
    let mut hosts = headers.get_all(HOST).iter();
    let host = hosts.next().map(|h| h.as_bytes());
    if hosts.next().is_some() {
        return Err(ProxyError::HostInvalid(
            "more than one Host header".to_string(),
        ));
    }
    let pseudo = uri
        .authority()
        .filter(|_| version >= Version::HTTP_2)
        .map(|a| a.as_str().as_bytes());
    let given = match (pseudo, host) {
        (Some(pseudo), Some(host)) if !pseudo.eq_ignore_ascii_case(host) => {
            return Err(ProxyError::HostInvalid(format!(
                "the host header {:?} names another authority than :authority {:?}",
                shown(host),
                shown(pseudo)
            )))
        }
        (Some(given), _) | (None, Some(given)) => given,
        (None, None) if version < Version::HTTP_11 => return Ok(None),
        (None, None) => {
            return Err(ProxyError::HostInvalid(
                "the request has no Host header".to_string(),
            ))
        }
    };
    Authority::parse(given).map(Some).map_err(|reason| {
        ProxyError::HostInvalid(format!(
            "Host {:?} is not a host[:port]: {reason}",
            shown(given)
        ))
    })
}

/// A header value as it may appear in an answer and a log line: text, at most 80
/// characters (the `Debug` form it is shown in escapes quotes and control characters).
fn shown(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.into_owned(),
    }
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
    host: AuthorityHost,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AuthorityHost {
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

    /// An HTTP/1.1 POST with these headers, and `Host: 127.0.0.1:8080` unless they name one.
    fn check(g: &InboundGuard, peer: &str, headers: &[(&str, &str)]) -> Result<(), ProxyError> {
        let mut map = http::HeaderMap::new();
        map.insert(HOST, http::HeaderValue::from_static("127.0.0.1:8080"));
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
    fn authorities_are_parsed_strictly_and_re_serialised() {
        for (given, serialised) in [
            ("127.0.0.1", "127.0.0.1"),
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("localhost", "localhost"),
            ("LocalHost:80", "localhost:80"),
            ("[::1]:8080", "[::1]:8080"),
            ("[0:0:0:0:0:0:0:1]", "[::1]"),
            ("[::FFFF:7F00:1]:1", "[::ffff:127.0.0.1]:1"),
            ("Proxy.Internal.", "proxy.internal."),
            ("mcp-proxy_1.internal:65535", "mcp-proxy_1.internal:65535"),
            ("host:0", "host:0"),
        ] {
            let parsed = Authority::parse(given.as_bytes());
            assert_eq!(
                parsed.as_ref().map(ToString::to_string),
                Ok(serialised.to_string()),
                "{given}"
            );
        }
        assert_eq!(
            Authority::parse(b"[::1]:8080").unwrap().host(),
            "::1",
            "the host part, as HostRefused names it"
        );
        for (given, reason) in [
            (
                r#"[::1]@evil.example", scope="admin"#,
                "only ':' and a port may follow an IPv6 address",
            ),
            ("user@127.0.0.1", "user information ('@') is not allowed"),
            (
                "user:pass@127.0.0.1",
                "the port is not a number from 0 to 65535",
            ),
            (
                "127.0.0.1:80@evil.example",
                "the port is not a number from 0 to 65535",
            ),
            ("\"localhost\"", "quotes are not allowed"),
            ("localhost'", "quotes are not allowed"),
            ("local host", "spaces are not allowed"),
            (" localhost", "spaces are not allowed"),
            ("localhost,evil.example", "a list is not allowed"),
            ("evil%2eexample", "percent-encoding is not allowed"),
            (
                "[fe80::1%25eth0]",
                "the part in brackets is not an IPv6 address",
            ),
            ("[v1.future]", "the part in brackets is not an IPv6 address"),
            ("[::1", "an IPv6 address lacks its closing ']'"),
            ("[::1]x", "only ':' and a port may follow an IPv6 address"),
            ("::1", "the host is empty"),
            (
                "a[::1]",
                "an IPv6 address must be the whole host, in brackets",
            ),
            ("", "it is empty"),
            (":8080", "the host is empty"),
            ("localhost:", "the port is not a number from 0 to 65535"),
            (
                "localhost:65536",
                "the port is not a number from 0 to 65535",
            ),
            ("localhost:+80", "the port is not a number from 0 to 65535"),
            (
                "localhost:80:80",
                "the port is not a number from 0 to 65535",
            ),
            (
                "evil.example/path",
                "a host name may hold only letters, digits, '-', '_' and '.'",
            ),
            (
                "evil.example?q",
                "a host name may hold only letters, digits, '-', '_' and '.'",
            ),
            (
                "evil.example#f",
                "a host name may hold only letters, digits, '-', '_' and '.'",
            ),
            (
                "evil\\example",
                "a host name may hold only letters, digits, '-', '_' and '.'",
            ),
            (
                "a;b=c",
                "a host name may hold only letters, digits, '-', '_' and '.'",
            ),
            (
                "a~b",
                "a host name may hold only letters, digits, '-', '_' and '.'",
            ),
            (
                "évil.example",
                "a host name may hold only letters, digits, '-', '_' and '.'",
            ),
            (
                "evil\r\nx: y",
                "a host name may hold only letters, digits, '-', '_' and '.'",
            ),
            ("a..b", "the host name has an empty or over-long label"),
            (".a", "the host name has an empty or over-long label"),
            ("a.b..", "the host name has an empty or over-long label"),
        ] {
            assert_eq!(Authority::parse(given.as_bytes()), Err(reason), "{given:?}");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(Authority::parse(long_label.as_bytes()).is_err());
    }

    fn request(
        g: &InboundGuard,
        version: Version,
        uri: &str,
        headers: &[(&str, &[u8])],
    ) -> Result<(), ProxyError> {
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(v).unwrap(),
            );
        }
        g.check_parts(
            Some("127.0.0.1:1".parse().unwrap()),
            &Method::POST,
            version,
            &uri.parse().unwrap(),
            &map,
        )
    }

    #[test]
    fn malformed_repeated_or_disagreeing_hosts_are_400() {
        let g = guard("");
        let invalid = |r: Result<(), ProxyError>| match r {
            Err(e @ ProxyError::HostInvalid(_)) => {
                assert_eq!(e.status(), 400);
                e.to_string()
            }
            other => panic!("{other:?}"),
        };
        // The reproduction: an IPv6 literal, then text for the challenge it was copied into.
        let reproduction: &[u8] = br#"[::1]@evil.example", scope="admin"#;
        assert_eq!(
            invalid(request(
                &g,
                Version::HTTP_11,
                "/mcp",
                &[("host", reproduction)]
            )),
            r#"Host "[::1]@evil.example\", scope=\"admin" is not a host[:port]: only ':' and a port may follow an IPv6 address"#
        );
        assert_eq!(
            invalid(request(
                &g,
                Version::HTTP_11,
                "/mcp",
                &[("host", b"127.0.0.1"), ("host", b"evil.example")]
            )),
            "more than one Host header"
        );
        assert_eq!(
            invalid(request(&g, Version::HTTP_11, "/mcp", &[])),
            "the request has no Host header"
        );
        assert_eq!(request(&g, Version::HTTP_10, "/mcp", &[]), Ok(()));
        // Shown at most 80 characters long.
        let long = format!("{}@x", "a".repeat(500));
        let message = invalid(request(
            &g,
            Version::HTTP_11,
            "/mcp",
            &[("host", long.as_bytes())],
        ));
        assert!(message.len() < 200, "{message}");

        // HTTP/2: the :authority counts; a host header must agree with it.
        let h2 = "http://127.0.0.1:8080/mcp";
        assert_eq!(request(&g, Version::HTTP_2, h2, &[]), Ok(()));
        assert_eq!(
            request(
                &g,
                Version::HTTP_2,
                "http://LOCALHOST:8080/mcp",
                &[("host", b"localhost:8080")]
            ),
            Ok(())
        );
        assert_eq!(
            invalid(request(
                &g,
                Version::HTTP_2,
                h2,
                &[("host", b"evil.example")]
            )),
            r#"the host header "evil.example" names another authority than :authority "127.0.0.1:8080""#
        );
        assert!(matches!(
            request(
                &g,
                Version::HTTP_2,
                h2,
                &[("host", b"127.0.0.1:8080"), ("host", b"127.0.0.1:8080")]
            ),
            Err(ProxyError::HostInvalid(_))
        ));
        assert!(matches!(
            request(&g, Version::HTTP_2, "http://user@127.0.0.1/mcp", &[]),
            Err(ProxyError::HostInvalid(_))
        ));
        // Without :authority, the host header alone; a foreign one is still 403.
        assert_eq!(
            request(&g, Version::HTTP_2, "/mcp", &[("host", b"evil.example")]),
            Err(ProxyError::HostRefused {
                host: "evil.example".into()
            })
        );
        assert_eq!(
            request(&g, Version::HTTP_2, "http://Evil.Example:8080/mcp", &[]),
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
