//! Steps 2 and 3: a TCP connection to each address the proxy may dial (timed), then a TLS
//! handshake on it with SNI = the gateway name, checked against the route's trust roots.
//! The handshake records the chain the server presented even when verification fails,
//! so that a wrong certificate can be named, not only refused.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::report::{Check, Step};
use crate::proxy::route::Route;
use crate::upstream::tls;

/// Dials `addr` within the route's connect timeout; the stream on success.
pub async fn connect(route: &Route, addr: SocketAddr) -> (Check, Option<TcpStream>) {
    let timeout = route.config.connect_timeout;
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, TcpStream::connect(addr)).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let details = json!({ "address": addr.to_string(), "connect_ms": ms });
    match result {
        Ok(Ok(stream)) => (
            Check::pass(Step::Tcp, format!("{addr} connected in {ms:.1} ms")).with_details(details),
            Some(stream),
        ),
        Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => (
            Check::fail(
                Step::Tcp,
                format!("{addr}: connection refused"),
                format!(
                    "nothing accepts connections on port {} at this address: the port in the \
                     gateway URL is wrong, or the address is not one of the endpoint's network \
                     interfaces",
                    addr.port()
                ),
                "gateway URLs use port 443 (leave the port out); make sure the name or the \
                 static addresses belong to the gateway's VPC endpoint",
            )
            .with_details(details),
            None,
        ),
        Ok(Err(e)) => (
            Check::fail(
                Step::Tcp,
                format!("{addr}: {e}"),
                "the network has no path to this address from here (routing, a network ACL, \
                 or an endpoint in a subnet this host cannot reach)",
                "check the route tables and network ACLs between this subnet and the \
                 endpoint's subnets",
            )
            .with_details(details),
            None,
        ),
        Err(_) => (
            Check::fail(
                Step::Tcp,
                format!(
                    "{addr}: no answer within {}",
                    humantime::format_duration(timeout)
                ),
                format!(
                    "packets to port {} are dropped: the VPC endpoint's security group does \
                     not allow inbound TCP {} from this host, or a network ACL drops it",
                    addr.port(),
                    addr.port()
                ),
                format!(
                    "add an inbound rule for TCP {} from this host's security group (or subnet \
                     CIDR) to the security group of the VPC endpoint",
                    addr.port()
                ),
            )
            .with_details(details),
            None,
        ),
    }
}

/// One certificate of the presented chain, as an operator reads it.
#[derive(Debug, Clone, Serialize)]
pub struct CertSummary {
    pub subject: Option<String>,
    /// DNS and IP names (subjectAltName).
    pub names: Vec<String>,
    pub issuer: Option<String>,
    pub not_after: Option<String>,
}

fn summarize(der: &[u8]) -> CertSummary {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return CertSummary {
            subject: None,
            names: Vec::new(),
            issuer: None,
            not_after: None,
        };
    };
    let common_name = |name: &x509_parser::x509::X509Name<'_>| {
        name.iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string)
    };
    let names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                x509_parser::extensions::GeneralName::DNSName(n) => Some(n.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(bytes) => ip_text(bytes),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let not_after = u64::try_from(cert.validity().not_after.timestamp())
        .ok()
        .map(|secs| {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
        });
    CertSummary {
        subject: common_name(cert.subject()),
        names,
        issuer: common_name(cert.issuer()),
        not_after,
    }
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv4Addr::from(b).to_string()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv6Addr::from(b).to_string()),
        _ => None,
    }
}

/// What the verifier saw: the chain and its verdict on it.
#[derive(Debug, Default)]
struct Seen {
    chain: Vec<CertificateDer<'static>>,
    error: Option<rustls::Error>,
}

/// The route's own verification (web PKI roots + its `ca_file`), recording its input.
#[derive(Debug)]
struct Recorder {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Seen>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        seen.error = result.as_ref().err().cloned();
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The trust the route's connector uses: the web PKI roots plus the route's `ca_file`.
fn verifier(route: &Route) -> Result<Arc<WebPkiServerVerifier>, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &route.config.ca_file {
        for cert in tls::read_ca_file(path)? {
            roots
                .add(cert)
                .map_err(|e| format!("CA certificate rejected: {e}"))?;
        }
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| format!("TLS setup: {e}"))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS handshake on a connected stream, as the route's connector does it.
pub async fn handshake(route: &Route, addr: SocketAddr, tcp: TcpStream) -> Check {
    let gateway = route.gateway.host.clone();
    let recorder = match verifier(route) {
        Ok(inner) => Arc::new(Recorder {
            inner,
            seen: Mutex::new(Seen::default()),
        }),
        Err(e) => {
            return Check::fail(
                Step::Tls,
                format!("{addr}: {e}"),
                "the route's trust roots cannot be loaded",
                "point ca_file at a readable PEM file of CA certificates",
            )
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(recorder.clone())
                .with_no_client_auth()
        });
    let mut config = match config {
        Ok(config) => config,
        Err(e) => {
            return Check::fail(
                Step::Tls,
                format!("{addr}: TLS setup: {e}"),
                "this build's TLS provider is unusable",
                "report this as a bug",
            )
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let Ok(server_name) = ServerName::try_from(gateway.clone()) else {
        return Check::fail(
            Step::Tls,
            format!("{gateway} is not a valid TLS server name"),
            "the gateway URL's host cannot be sent as SNI",
            "use the gateway URL exactly as AgentCore shows it",
        );
    };
    let timeout = route.config.tls_timeout;
    let started = Instant::now();
    let result = tokio::time::timeout(
        timeout,
        TlsConnector::from(Arc::new(config)).connect(server_name, tcp),
    )
    .await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let seen = std::mem::take(&mut *recorder.seen.lock().unwrap_or_else(|p| p.into_inner()));
    let chain: Vec<CertSummary> = seen.chain.iter().map(|c| summarize(c)).collect();
    let leaf = chain.first();
    let mut details = json!({
        "address": addr.to_string(),
        "server_name": gateway,
        "handshake_ms": ms,
        "chain": chain,
    });
    match result {
        Ok(Ok(stream)) => {
            let connection = stream.get_ref().1;
            let alpn = connection
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned());
            let version = connection
                .protocol_version()
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .replace('_', ".");
            details["alpn"] = json!(alpn);
            details["protocol"] = json!(version);
            let certificate = leaf.map(describe_leaf).unwrap_or_default();
            Check::pass(
                Step::Tls,
                format!(
                    "{addr} SNI {gateway}: {version}, ALPN {}, {certificate}, in {ms:.1} ms",
                    alpn.as_deref().unwrap_or("none (HTTP/1.1)")
                ),
            )
            .with_details(details)
        }
        Ok(Err(e)) => {
            let (cause, fix) = tls_cause(seen.error.as_ref(), leaf, &gateway);
            let presented = leaf
                .map(|l| format!("; presented {}", describe_leaf(l)))
                .unwrap_or_default();
            Check::fail(
                Step::Tls,
                format!("{addr} SNI {gateway}: {e}{presented}"),
                cause,
                fix,
            )
            .with_details(details)
        }
        Err(_) => Check::fail(
            Step::Tls,
            format!(
                "{addr} SNI {gateway}: no handshake within {}",
                humantime::format_duration(timeout)
            ),
            "the server accepted TCP but does not speak TLS here, or a middlebox holds the \
             connection",
            "use the gateway URL's port (443); check firewalls that inspect TLS",
        )
        .with_details(details),
    }
}

/// `certificate for a.example (+1 names), issued by X, valid until 2027-01-01T00:00:00Z`.
fn describe_leaf(leaf: &CertSummary) -> String {
    let names = if leaf.names.is_empty() {
        leaf.subject.clone().unwrap_or_else(|| "(no names)".into())
    } else {
        leaf.names.join(", ")
    };
    let mut text = format!("certificate for {names}");
    if let Some(issuer) = &leaf.issuer {
        text.push_str(&format!(", issued by {issuer}"));
    }
    if let Some(until) = &leaf.not_after {
        text.push_str(&format!(", valid until {until}"));
    }
    text
}

fn tls_cause(
    verdict: Option<&rustls::Error>,
    leaf: Option<&CertSummary>,
    gateway: &str,
) -> (String, String) {
    let names = leaf.map(|l| l.names.join(", ")).unwrap_or_default();
    match verdict {
        Some(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => (
            format!(
                "the certificate is for {names}, not for {gateway}: this address is not the \
                 gateway's endpoint (for example the AgentCore data-plane endpoint \
                 com.amazonaws.<region>.bedrock-agentcore instead of the gateway endpoint \
                 com.amazonaws.<region>.bedrock-agentcore.gateway), or a TLS-inspecting proxy \
                 answers"
            ),
            "set endpoint to the DNS name of a gateway endpoint \
             (vpce-….gateway.bedrock-agentcore.<region>.vpce.amazonaws.com); exempt it from TLS \
             inspection if a proxy re-signs traffic"
                .to_string(),
        ),
        Some(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        )) => (
            "the chain does not lead to a trusted root: a TLS-inspecting proxy or firewall \
             re-signs the traffic, or the server uses a private CA"
                .to_string(),
            "exempt the endpoint from TLS inspection, or add the CA that signs it with ca_file"
                .to_string(),
        ),
        Some(rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        )) => (
            format!(
                "the certificate is outside its validity period at this host's time ({})",
                humantime::format_rfc3339_seconds(SystemTime::now())
            ),
            "fix the host clock (chrony with the Amazon Time Sync Service at 169.254.169.123)"
                .to_string(),
        ),
        Some(other) => (
            format!("the certificate was refused: {other}"),
            "check that the address is the gateway's VPC endpoint".to_string(),
        ),
        None => (
            "the handshake failed before a certificate was checked: the server does not speak \
             TLS on this port, or rejected the offered versions or SNI"
                .to_string(),
            "use the gateway URL's port (443) and its exact host name".to_string(),
        ),
    }
}
