//! One `ssls` entry made ready for handshakes: its certificate and key, and the verifier of its
//! clients' certificates when it has a `client.ca`.
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{
    ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache,
    StoresServerSessions, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

/// What an `ssls` entry holds: PEM text, as the config loader carries it inline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteSpec {
    pub id: String,
    pub snis: Vec<String>,
    pub cert_pem: String,
    pub key_pem: String,
    pub client_ca_pem: Option<String>,
}

/// The handshake settings of one ssl: the `ServerConfig` its connections are made with.
#[derive(Debug)]
pub struct Site {
    pub id: String,
    /// mTLS: a connection without a verified client certificate has its requests refused.
    pub client_cert_required: bool,
    pub config: Arc<ServerConfig>,
    spec: SiteSpec,
}

impl Site {
    /// The spec this site was built from (a reload keeps the site when its spec is unchanged).
    pub fn spec(&self) -> &SiteSpec {
        &self.spec
    }
}

/// What every site of one engine shares: ALPN, the ticket keys and the TLS 1.2 session cache
/// (resumption needs the same ones before and after a reload).
#[derive(Debug)]
pub struct Shared {
    pub provider: Arc<CryptoProvider>,
    pub alpn: Vec<Vec<u8>>,
    pub ticketer: Arc<dyn ProducesTickets>,
    pub sessions: Arc<dyn StoresServerSessions>,
}

/// TLS 1.2 sessions kept for resumption by session id (clients without ticket support).
const SESSION_CACHE_SIZE: usize = 4096;

impl Shared {
    pub fn new(alpn: Vec<Vec<u8>>) -> Result<Self, String> {
        let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
            .map_err(|e| format!("cannot make session ticket keys: {e}"))?;
        Ok(Shared {
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            alpn,
            ticketer,
            sessions: ServerSessionMemoryCache::new(SESSION_CACHE_SIZE),
        })
    }

    /// The server config of one site; the reason (for a config error) if rustls refuses it.
    pub fn site(&self, spec: &SiteSpec) -> Result<Site, String> {
        let key = certified_key(&self.provider, &spec.cert_pem, &spec.key_pem)?;
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            // TLS 1.3 and 1.2 only; the provider's suites are all AEAD with forward secrecy
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?;
        let builder = match &spec.client_ca_pem {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let roots = Arc::new(root_store(ca)?);
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(roots, self.provider.clone())
                        // no certificate: the handshake completes and requests get 400 (nginx's
                        // answer); a certificate that does not verify fails the handshake
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| format!("client.ca: {e}"))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(Arc::new(SiteCert(key)));
        config.alpn_protocols = self.alpn.clone();
        config.ignore_client_order = true;
        config.ticketer = self.ticketer.clone();
        config.session_storage = self.sessions.clone();
        Ok(Site {
            id: spec.id.clone(),
            client_cert_required: spec.client_ca_pem.is_some(),
            config: Arc::new(config),
            spec: spec.clone(),
        })
    }
}

/// The certificate of one site: the site was chosen from the ClientHello before the connection
/// was made (so its client verifier comes with it), so there is nothing left to choose here.
#[derive(Debug)]
struct SiteCert(Arc<CertifiedKey>);

impl ResolvesServerCert for SiteCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn certified_key(
    provider: &CryptoProvider,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<CertifiedKey>, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cert: not PEM certificates: {e}"))?;
    if chain.is_empty() {
        return Err("cert: no certificate in it".into());
    }
    // PKCS#8, PKCS#1 (RSA) and SEC1 (EC) keys alike
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("key: not a PEM private key: {e}"))?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            "the key does not belong to the certificate (mismatched key)".to_string()
        }
        e => format!("key: unsupported private key: {e}"),
    })?;
    Ok(Arc::new(certified))
}

fn root_store(ca_pem: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("client.ca: not PEM certificates: {e}"))?;
        roots.add(cert).map_err(|e| format!("client.ca: {e}"))?;
    }
    if roots.is_empty() {
        return Err("client.ca: no certificate in it".into());
    }
    Ok(roots)
}
