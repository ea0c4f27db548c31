//! The inbound guard: who may use the proxy, checked on each agent request before
//! routing, by the rules of `[inbound]` (`config::inbound`). Built with the route table
//! and swapped with it on reload.
//!
//! The MCP transport asks local servers to guard against DNS rebinding: a page on
//! `http://evil.example` whose name is re-pointed at 127.0.0.1 makes the browser send
//! `Host: evil.example` and `Origin: http://evil.example`. Both are refused here: an Origin
//! must be a page on this machine (`http(s)://localhost`, `127.0.0.1` or `[::1]`, any
//! port, unless `allow_local_origins = false`) or on the allow-list (empty by default), and
//! a Host must be an IP literal, `localhost`, or a name on `allowed_hosts`. A rebinding page
//! keeps its own name in its Origin, so a local Origin is one a page on the machine sent.
//!
//! Before that, the Host is parsed strictly as an authority, `host[:port]` (see
//! [`Authority`]): the proxy builds its own URL from it for passthrough routes (OAuth
//! discovery documents, `WWW-Authenticate` challenges), so a Host that carries more than
//! a host and a port (`[::1]@evil.example", scope="admin`) is a 400, as is a second Host
//! header or, over HTTP/2, a `host` header that names another authority than
//! `:authority`.

use std::net::SocketAddr;

use http::header::{AUTHORIZATION, HOST, ORIGIN};
use http::{HeaderMap, Method, Version};
use hyper::body::Incoming;
use ipnet::IpNet;

use crate::config::inbound::{
    is_local_origin, parse_origin, Authority, AuthorityHost, InboundConfig,
};
use crate::exchange::error::ProxyError;

/// The inbound rules in force, built once from config.
pub struct InboundGuard {
    clients: Vec<IpNet>,
    /// SHA-256 of the expected `Authorization` value, compared digest to digest.
    token: Option<[u8; 32]>,
    origins: Vec<String>,
    /// `inbound.allow_local_origins`.
    local_origins: bool,
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
            local_origins: config.allow_local_origins,
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
        if let Some(value) = headers.get(ORIGIN) {
            let local = self.local_origins && is_local_origin(value.as_bytes());
            let origin = String::from_utf8_lossy(value.as_bytes()).to_string();
            let normalized = origin.trim().trim_end_matches('/').to_ascii_lowercase();
            if !local && !self.origins.contains(&normalized) {
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
        // A page on this machine is served, by default, whatever the list says.
        assert_eq!(
            check(&g, "127.0.0.1:1", &[("origin", "http://localhost:3000")]),
            Ok(())
        );
        assert!(parse_origin("https://a.example/path").is_err());
        assert!(parse_origin("a.example").is_err());
    }

    #[test]
    fn local_origins_are_served_unless_turned_off() {
        let g = guard("");
        for local in [
            "http://localhost",
            "https://localhost:8443",
            "http://127.0.0.1:3000",
            "http://[::1]:5173",
            "HTTP://LOCALHOST:3000",
        ] {
            assert_eq!(
                check(&g, "127.0.0.1:1", &[("origin", local)]),
                Ok(()),
                "{local}"
            );
        }
        for foreign in [
            "http://localhost.evil.example",
            "http://127.0.0.1.nip.io",
            "http://localhost@evil.example",
            "null",
        ] {
            assert_eq!(
                check(&g, "127.0.0.1:1", &[("origin", foreign)]),
                Err(ProxyError::OriginRefused {
                    origin: foreign.into()
                }),
                "{foreign}"
            );
        }
        let off = guard("allow_local_origins = false");
        assert!(matches!(
            check(&off, "127.0.0.1:1", &[("origin", "http://localhost:3000")]),
            Err(ProxyError::OriginRefused { .. })
        ));
        let listed =
            guard("allow_local_origins = false\nallowed_origins = [\"http://localhost:3000\"]");
        assert_eq!(
            check(
                &listed,
                "127.0.0.1:1",
                &[("origin", "http://localhost:3000")]
            ),
            Ok(())
        );
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
}
