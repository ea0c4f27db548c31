//! OAuth discovery for passthrough routes (MCP authorization, RFC 9728 / RFC 8414).
//!
//! When the agent's own MCP client runs the OAuth flow, everything it learns about the
//! protected resource must name the URL it connected to, the sidecar's, not the
//! gateway's: RFC 9728 clients reject metadata whose `resource` differs from the URL
//! they used. So on passthrough routes the discovery documents are fetched from the
//! gateway through the route (PrivateLink, SNI, pool) and every reference to the
//! gateway's resource URL or its metadata URLs, in those documents and in the
//! `WWW-Authenticate` challenges of 401/403 answers, is rewritten to the sidecar's own
//! URL for the route. Authorization servers, scopes and all else stay untouched.

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, StreamBody};
use serde_json::Value;

use crate::exchange::body::{BoxError, ProxyBody};

pub const PROTECTED_RESOURCE: &str = "/.well-known/oauth-protected-resource";
pub const AUTHORIZATION_SERVER: &str = "/.well-known/oauth-authorization-server";
const KINDS: [&str; 2] = [PROTECTED_RESOURCE, AUTHORIZATION_SERVER];

/// Metadata documents are small; a larger answer passes through untouched (logged).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// A discovery request: which well-known document, for which resource path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WellKnown<'a> {
    pub prefix: &'static str,
    /// `""` for the bare form, else the resource path (`/mcp`).
    pub resource: &'a str,
}

/// Recognises `/.well-known/oauth-protected-resource[/path]` and
/// `/.well-known/oauth-authorization-server[/path]`.
pub fn parse(path: &str) -> Option<WellKnown<'_>> {
    KINDS.iter().find_map(|prefix| {
        let rest = path.strip_prefix(prefix)?;
        (rest.is_empty() || rest.starts_with('/')).then_some(WellKnown {
            prefix,
            resource: rest,
        })
    })
}

/// How the gateway's URLs map to the sidecar's for one route.
#[derive(Debug, Clone)]
pub struct UrlMap {
    /// `https://host` and, when the port is 443, also `https://host:443`.
    gateway_origins: Vec<String>,
    /// (gateway path, local path) pairs: the resource and its metadata documents.
    paths: Vec<(String, String)>,
    /// The bare metadata paths, mapped only when the route owns the sidecar's bare ones.
    bare: Vec<(String, String)>,
}

impl UrlMap {
    pub fn new(
        gateway_authority: &str,
        gateway_port: u16,
        gateway_path: &str,
        local_path: &str,
    ) -> UrlMap {
        let mut gateway_origins = vec![format!("https://{gateway_authority}")];
        if gateway_port == 443 {
            gateway_origins.push(format!("https://{gateway_authority}:443"));
        }
        let mut paths = vec![(gateway_path.to_string(), local_path.to_string())];
        let mut bare = Vec::new();
        for prefix in KINDS {
            let suffixed = |p: &str| {
                if p == "/" {
                    prefix.to_string()
                } else {
                    format!("{prefix}{p}")
                }
            };
            paths.push((suffixed(gateway_path), suffixed(local_path)));
            bare.push((prefix.to_string(), prefix.to_string()));
        }
        UrlMap {
            gateway_origins,
            paths,
            bare,
        }
    }

    /// The same map in the context of one request.
    pub fn at<'a>(&'a self, local_origin: &'a str, bare_is_ours: bool) -> Rewriter<'a> {
        Rewriter {
            map: self,
            local_origin,
            bare_is_ours,
        }
    }
}

/// A [`UrlMap`] with what a rewrite needs from the request: the sidecar's origin as the
/// agent used it (`http://127.0.0.1:8080`), and whether the sidecar's bare well-known
/// paths lead to this route (it is the only passthrough route).
pub struct Rewriter<'a> {
    map: &'a UrlMap,
    local_origin: &'a str,
    bare_is_ours: bool,
}

impl Rewriter<'_> {
    /// The sidecar's URL for a gateway URL this map knows, `None` for anything else.
    pub fn rewrite(&self, url: &str) -> Option<String> {
        let rest = self
            .map
            .gateway_origins
            .iter()
            .filter_map(|o| url.strip_prefix(o.as_str()))
            .find(|rest| rest.starts_with('/'))?;
        // Keep a trailing slash or query as the gateway wrote it.
        let (path, tail) = match rest.find(['?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (path, slash) = match path.strip_suffix('/') {
            Some(p) if !p.is_empty() => (p, "/"),
            _ => (path, ""),
        };
        let bare: &[(String, String)] = if self.bare_is_ours {
            &self.map.bare
        } else {
            &[]
        };
        let local = self
            .map
            .paths
            .iter()
            .chain(bare)
            .find(|(g, _)| g == path)
            .map(|(_, l)| l)?;
        Some(format!("{}{local}{slash}{tail}", self.local_origin))
    }

    /// Rewrites every JSON string that is a known gateway URL. `None` when nothing
    /// changed or the document is not JSON.
    pub fn rewrite_document(&self, body: &[u8]) -> Option<Vec<u8>> {
        let mut doc: Value = serde_json::from_slice(body).ok()?;
        let mut changed = false;
        self.rewrite_value(&mut doc, &mut changed);
        if changed {
            serde_json::to_vec(&doc).ok()
        } else {
            None
        }
    }

    fn rewrite_value(&self, value: &mut Value, changed: &mut bool) {
        match value {
            Value::String(s) => {
                if let Some(new) = self.rewrite(s) {
                    *s = new;
                    *changed = true;
                }
            }
            Value::Array(items) => items
                .iter_mut()
                .for_each(|v| self.rewrite_value(v, changed)),
            Value::Object(map) => map
                .values_mut()
                .for_each(|v| self.rewrite_value(v, changed)),
            _ => {}
        }
    }

    /// Rewrites the quoted URLs (`resource_metadata="…"`, `resource="…"`) of every
    /// `WWW-Authenticate` challenge; all other parameters are kept byte for byte.
    pub fn rewrite_challenges(&self, headers: &mut HeaderMap) {
        let values: Vec<HeaderValue> = headers.get_all(WWW_AUTHENTICATE).iter().cloned().collect();
        if values.is_empty() {
            return;
        }
        headers.remove(WWW_AUTHENTICATE);
        for value in values {
            let rewritten = value
                .to_str()
                .ok()
                .map(|text| self.rewrite_quoted(text))
                .and_then(|text| HeaderValue::from_str(&text).ok())
                .unwrap_or(value);
            headers.append(WWW_AUTHENTICATE, rewritten);
        }
    }

    fn rewrite_quoted(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut parts = text.split('"');
        // Even pieces are outside quotes, odd ones inside (auth-param values have no
        // escaped quotes in practice; a URL never contains one).
        let mut inside = false;
        let mut first = true;
        for piece in parts.by_ref() {
            if !first {
                out.push('"');
            }
            first = false;
            match (inside, self.rewrite(piece)) {
                (true, Some(new)) => out.push_str(&new),
                _ => out.push_str(piece),
            }
            inside = !inside;
        }
        out
    }
}

/// Reads a metadata document (bounded) and rewrites it. Over the bound, or not JSON,
/// the answer streams through untouched.
pub async fn rewrite_body(
    route: &str,
    headers: &mut HeaderMap,
    body: ProxyBody,
    rewriter: &Rewriter<'_>,
) -> ProxyBody {
    let mut body = body;
    let mut read = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                // Hand the agent what arrived, then the error.
                let head = read.freeze();
                return chain(head, error_body(e));
            }
        };
        if let Ok(data) = frame.into_data() {
            read.extend_from_slice(&data);
            if read.len() > MAX_DOCUMENT_BYTES {
                tracing::warn!(
                    route,
                    limit = MAX_DOCUMENT_BYTES,
                    "discovery document over the rewrite limit; passed through untouched"
                );
                return chain(read.freeze(), body);
            }
        }
    }
    let read = read.freeze();
    match rewriter.rewrite_document(&read) {
        Some(new) => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(new.len()));
            crate::exchange::body::full(new)
        }
        None => crate::exchange::body::full(read),
    }
}

fn error_body(e: BoxError) -> ProxyBody {
    StreamBody::new(futures_util::stream::once(async move {
        Err::<http_body::Frame<Bytes>, BoxError>(e)
    }))
    .boxed_unsync()
}

/// `head` followed by the rest of `rest`.
fn chain(head: Bytes, rest: ProxyBody) -> ProxyBody {
    use futures_util::StreamExt;
    let first =
        futures_util::stream::once(async move { Ok::<_, BoxError>(http_body::Frame::data(head)) });
    StreamBody::new(
        first.chain(
            rest.into_data_stream()
                .map(|r| r.map(http_body::Frame::data)),
        ),
    )
    .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: &str = "gw-1.gateway.bedrock-agentcore.us-east-1.amazonaws.com";
    const LOCAL: &str = "http://127.0.0.1:8080";

    fn map() -> UrlMap {
        UrlMap::new(GW, 443, "/mcp", "/agent/mcp")
    }

    #[test]
    fn parses_well_known_paths() {
        assert_eq!(
            parse("/.well-known/oauth-protected-resource"),
            Some(WellKnown {
                prefix: PROTECTED_RESOURCE,
                resource: ""
            })
        );
        assert_eq!(
            parse("/.well-known/oauth-protected-resource/mcp"),
            Some(WellKnown {
                prefix: PROTECTED_RESOURCE,
                resource: "/mcp"
            })
        );
        assert_eq!(
            parse("/.well-known/oauth-authorization-server/a/b"),
            Some(WellKnown {
                prefix: AUTHORIZATION_SERVER,
                resource: "/a/b"
            })
        );
        assert_eq!(parse("/.well-known/oauth-protected-resourcex"), None);
        assert_eq!(parse("/mcp"), None);
    }

    #[test]
    fn rewrites_the_resource_and_its_metadata_urls_only() {
        let map = map();
        let m = map.at(LOCAL, true);
        assert_eq!(
            m.rewrite(&format!("https://{GW}/mcp")).as_deref(),
            Some("http://127.0.0.1:8080/agent/mcp")
        );
        assert_eq!(
            m.rewrite(&format!("https://{GW}:443/mcp/")).as_deref(),
            Some("http://127.0.0.1:8080/agent/mcp/")
        );
        assert_eq!(
            m.rewrite(&format!(
                "https://{GW}/.well-known/oauth-protected-resource/mcp"
            ))
            .as_deref(),
            Some("http://127.0.0.1:8080/.well-known/oauth-protected-resource/agent/mcp")
        );
        assert_eq!(
            m.rewrite(&format!(
                "https://{GW}/.well-known/oauth-protected-resource"
            ))
            .as_deref(),
            Some("http://127.0.0.1:8080/.well-known/oauth-protected-resource")
        );
        // Other paths on the gateway, other hosts, and look-alike hosts are left alone.
        assert_eq!(m.rewrite(&format!("https://{GW}/other")), None);
        assert_eq!(m.rewrite("https://auth.example.com/mcp"), None);
        assert_eq!(m.rewrite(&format!("https://{GW}.evil.example/mcp")), None);
        assert_eq!(m.rewrite(&format!("http://{GW}/mcp")), None);
    }

    #[test]
    fn bare_metadata_urls_map_only_when_the_route_owns_them() {
        let map = UrlMap::new(GW, 443, "/mcp", "/a/mcp");
        let m = map.at(LOCAL, false);
        assert_eq!(
            m.rewrite(&format!(
                "https://{GW}/.well-known/oauth-protected-resource"
            )),
            None
        );
    }

    #[test]
    fn rewrites_documents_with_several_urls_and_absent_fields() {
        let doc = format!(
            r#"{{"resource":"https://{GW}/mcp","authorization_servers":["https://cognito-idp.us-east-1.amazonaws.com/pool"],"scopes_supported":["a","b"],"extra":{{"links":["https://{GW}/mcp","https://{GW}/x"]}}}}"#
        );
        let out: Value = serde_json::from_slice(
            &map()
                .at(LOCAL, true)
                .rewrite_document(doc.as_bytes())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(out["resource"], "http://127.0.0.1:8080/agent/mcp");
        assert_eq!(
            out["authorization_servers"][0],
            "https://cognito-idp.us-east-1.amazonaws.com/pool"
        );
        assert_eq!(out["scopes_supported"], serde_json::json!(["a", "b"]));
        assert_eq!(out["extra"]["links"][0], "http://127.0.0.1:8080/agent/mcp");
        assert_eq!(out["extra"]["links"][1], format!("https://{GW}/x"));
        // Nothing to rewrite, or not JSON: no new document.
        assert_eq!(
            map()
                .at(LOCAL, true)
                .rewrite_document(br#"{"issuer":"https://as.example.com"}"#),
            None
        );
        assert_eq!(map().at(LOCAL, true).rewrite_document(b"<html>"), None);
    }

    #[test]
    fn rewrites_challenges_and_keeps_every_other_parameter() {
        let mut headers = HeaderMap::new();
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_str(&format!(
                r#"Bearer error="insufficient_scope", scope="tools:call admin", resource_metadata="https://{GW}/.well-known/oauth-protected-resource/mcp""#
            ))
            .unwrap(),
        );
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="x""#),
        );
        map().at(LOCAL, true).rewrite_challenges(&mut headers);
        let all: Vec<&str> = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            all,
            [
                r#"Bearer error="insufficient_scope", scope="tools:call admin", resource_metadata="http://127.0.0.1:8080/.well-known/oauth-protected-resource/agent/mcp""#,
                r#"Basic realm="x""#
            ]
        );
    }

    #[tokio::test]
    async fn documents_over_the_bound_pass_through_untouched() {
        let big = format!(
            r#"{{"resource":"https://{GW}/mcp","pad":"{}"}}"#,
            "x".repeat(MAX_DOCUMENT_BYTES)
        );
        let mut headers = HeaderMap::new();
        let body = rewrite_body(
            "r",
            &mut headers,
            crate::exchange::body::full(big.clone()),
            &map().at(LOCAL, true),
        )
        .await;
        let out = body.collect().await.unwrap().to_bytes();
        assert_eq!(out, big.as_bytes());
        assert!(headers.get(CONTENT_LENGTH).is_none());
    }
}
