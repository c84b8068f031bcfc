//! TLS configuration shared by the data plane and the control plane (README "TLS"): rustls
//! client configs for `https://` upstreams (bundled webpki roots, an optional per-upstream
//! `ca_file`, `insecure_skip_verify`), and the front door's reloadable server config.
//!
//! Only configuration lives here; the streams are `proxy::tls_stream` on workers and rustls'
//! blocking `StreamOwned` on control threads. The crypto provider is `ring`, chosen explicitly
//! (no process-wide default is installed, so embedding slotgate in a test binary or next to
//! another rustls user never fights over it).

use arc_swap::ArcSwapOption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// The one ALPN protocol slotgate speaks on either side.
const ALPN_HTTP11: &[u8] = b"http/1.1";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client config for an `https://` upstream: Mozilla's roots (bundled) plus the PEM
/// certificates of `ca_file`, ALPN `http/1.1`, rustls' default in-memory session cache (so new
/// connections resume). `insecure_skip_verify` accepts any certificate (handshake signatures
/// are still checked).
pub fn client_config(ca_file: Option<&Path>, insecure: bool) -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let mut cfg = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_file {
            let certs = read_certs(path)?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("{}: no usable CA certificate", path.display()));
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    cfg.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(cfg))
}

/// The front door's server config from a PEM certificate chain and a PEM private key. An error
/// names the `[listen]` key it concerns (`listen.tls_cert` or `listen.tls_key`) and the reason,
/// so config validation and a refused reload report it like any other problem.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, KeyedError> {
    let chain = read_certs(cert).map_err(|e| ("listen.tls_cert", e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no PEM private key".to_string(),
            e => e.to_string(),
        };
        ("listen.tls_key", format!("{}: {why}", key.display()))
    })?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ("listen.tls_cert", format!("tls: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ("listen.tls_key", format!("does not fit tls_cert: {e}")))?;
    cfg.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(cfg))
}

/// A problem with the front door's TLS files: the config key it concerns and why.
pub type KeyedError = (&'static str, String);

/// The SNI name (or IP address) an upstream host is verified against.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| format!("tls server name '{host}': {e}"))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The front door's TLS state: `None` for plain HTTP. Whether the front door speaks TLS is fixed
/// at start; a reload swaps the certificate and key in (new handshakes use the new config,
/// established connections keep the one they were accepted with).
#[derive(Default)]
pub struct FrontDoor {
    server: ArcSwapOption<ServerConfig>,
}

impl FrontDoor {
    /// Loads `[listen] tls_cert`/`tls_key` at start (both or neither; neither = plain HTTP).
    pub fn install(&self, cert: Option<&Path>, key: Option<&Path>) -> Result<(), KeyedError> {
        self.server.store(Self::build(cert, key)?);
        Ok(())
    }

    fn build(
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Option<Arc<ServerConfig>>, KeyedError> {
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(c), Some(k)) => server_config(c, k).map(Some),
            _ => Err(("listen.tls_cert", "tls_cert and tls_key go together".into())),
        }
    }

    /// Whether the front door speaks TLS.
    pub fn enabled(&self) -> bool {
        self.server.load().is_some()
    }

    /// The config for the next handshake (`None` for plain HTTP).
    pub fn current(&self) -> Option<Arc<ServerConfig>> {
        self.server.load_full()
    }

    /// Re-reads the certificate and key (the files may have been replaced under the same
    /// paths). An unreadable or mismatched pair is an error and the running config stays.
    /// Turning TLS on or off needs a restart: such a change is logged and otherwise ignored.
    pub fn reload(&self, cert: Option<&Path>, key: Option<&Path>) -> Result<(), KeyedError> {
        let next = Self::build(cert, key)?;
        match (self.enabled(), next) {
            (true, Some(cfg)) => {
                self.server.store(Some(cfg));
                tracing::info!("front-door TLS certificate reloaded");
            }
            (false, None) => {}
            (true, None) => tracing::warn!(
                "listen.tls_cert was removed: the front door keeps TLS until a restart"
            ),
            (false, Some(_)) => tracing::warn!(
                "listen.tls_cert was added: the front door stays plain HTTP until a restart"
            ),
        }
        Ok(())
    }
}

/// `insecure_skip_verify`: any certificate chain is accepted, handshake signatures are still
/// verified (so the peer at least holds the key of the certificate it showed).
#[derive(Debug)]
struct NoVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
