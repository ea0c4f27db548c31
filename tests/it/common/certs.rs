//! A throw-away PKI for integration tests: one CA and one leaf certificate
//! for a set of DNS names, signed by that CA.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A test CA plus a TLS server configuration presenting a leaf it signed.
pub struct TestPki {
    /// The CA certificate, PEM encoded.
    pub ca_pem: String,
    /// `ca_pem` written to a temporary file, for programs that take a CA
    /// bundle path. The file lives as long as this `TestPki`.
    pub ca_file: PathBuf,
    /// Server configuration presenting the leaf (ring provider, ALPN
    /// `h2` then `http/1.1`).
    pub server_config: Arc<rustls::ServerConfig>,
    /// Keeps `ca_file` on disk; deleted on drop.
    _ca_file_handle: tempfile::NamedTempFile,
}

/// The crypto provider every test TLS endpoint uses. Passed explicitly so
/// that no process-wide default provider needs to be installed.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Creates a fresh CA and a leaf certificate for `names` (DNS names or IP
/// literals) signed by it.
pub fn issue(names: &[&str]) -> TestPki {
    // The CA.
    let ca_key = KeyPair::generate().expect("generate CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mcp-vpce-proxy test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca_params, ca_key);

    // The leaf.
    let leaf_key = KeyPair::generate().expect("generate leaf key");
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let mut leaf_params = CertificateParams::new(names.clone()).expect("leaf params");
    if let Some(first) = names.first() {
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
    }
    leaf_params.is_ca = IsCa::NoCa;
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    let leaf_cert = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("sign leaf");

    // Serve the leaf followed by the CA, like a real server sending its chain.
    let chain = vec![leaf_cert.der().clone(), ca_cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut server_config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate");
    server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    let mut ca_file_handle = tempfile::Builder::new()
        .prefix("test-ca-")
        .suffix(".pem")
        .tempfile()
        .expect("create CA temp file");
    ca_file_handle
        .write_all(ca_pem.as_bytes())
        .and_then(|()| ca_file_handle.flush())
        .expect("write CA temp file");

    TestPki {
        ca_pem,
        ca_file: ca_file_handle.path().to_path_buf(),
        server_config: Arc::new(server_config),
        _ca_file_handle: ca_file_handle,
    }
}

impl TestPki {
    /// The CA certificate in DER form.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).expect("parse CA PEM")
    }

    /// A client configuration that trusts only this CA (ring provider).
    /// `alpn` lists the protocols to offer, e.g. `&[b"http/1.1"]`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der()).expect("add CA to root store");
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|proto| proto.to_vec()).collect();
        Arc::new(config)
    }
}
