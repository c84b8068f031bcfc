//! TLS configuration shared by the data plane and the control plane (docs/operations.md "TLS"): rustls
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

/// ring with AES-128-GCM first: TLS 1.3's AES-128 suite hashes with SHA-256, which CPUs
/// accelerate (SHA-NI), where the AES-256 suite's SHA-384 runs in software in ring; on x86 that
/// was ~12% of a handshake (DESIGN-NOTES.md "TLS cipher order"). Both are secure; the rest of
/// rustls' default order follows.
/// Randomness comes from [`BufferedRandom`].
fn provider() -> Arc<CryptoProvider> {
    use rustls::CipherSuite::TLS13_AES_128_GCM_SHA256;
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites
        .sort_by_key(|s| s.suite() != TLS13_AES_128_GCM_SHA256);
    p.secure_random = &BufferedRandom;
    Arc::new(p)
}

/// rustls' handshake randomness (randoms, session ids, ticket nonces and ids) straight from the
/// kernel's CSPRNG, fetched 4 KiB at a time per thread. ring's own source makes one `getrandom`
/// call per value, seven per server handshake, which was ~5% of a new front-door connection.
/// Every byte is handed out once and zeroed as it goes; nothing is derived or stretched, so the
/// bytes are exactly the kernel's. (ring still draws each ephemeral key itself.)
#[derive(Debug)]
struct BufferedRandom;

/// Bytes per refill; a request above a quarter of it goes to the kernel directly.
const RANDOM_POOL: usize = 4096;

struct RandomPool {
    bytes: Box<[u8; RANDOM_POOL]>,
    /// Bytes before `pos` were handed out (and zeroed).
    pos: usize,
}

thread_local! {
    static RANDOM: std::cell::RefCell<RandomPool> = std::cell::RefCell::new(RandomPool {
        bytes: Box::new([0; RANDOM_POOL]),
        pos: RANDOM_POOL,
    });
}

impl rustls::crypto::SecureRandom for BufferedRandom {
    fn fill(&self, out: &mut [u8]) -> Result<(), rustls::crypto::GetRandomFailed> {
        let failed = |_| rustls::crypto::GetRandomFailed;
        if out.len() > RANDOM_POOL / 4 {
            return getrandom::getrandom(out).map_err(failed);
        }
        RANDOM.with(|pool| {
            let mut pool = pool.borrow_mut();
            if RANDOM_POOL - pool.pos < out.len() {
                getrandom::getrandom(&mut pool.bytes[..]).map_err(failed)?;
                pool.pos = 0;
            }
            let range = pool.pos..pool.pos + out.len();
            out.copy_from_slice(&pool.bytes[range.clone()]);
            pool.bytes[range].fill(0);
            pool.pos += out.len();
            Ok(())
        })
    }
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
    let pem = read_pem(key).map_err(|e| ("listen.tls_key", e))?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
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
    // The server's order decides (most clients list AES-256 first, out of habit).
    cfg.ignore_client_order = true;
    Ok(Arc::new(cfg))
}

/// A problem with the front door's TLS files: the config key it concerns and why.
pub type KeyedError = (&'static str, String);

/// The SNI name (or IP address) an upstream host is verified against.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| format!("tls server name '{host}': {e}"))
}

/// The most a PEM file may hold (Mozilla's whole root bundle is about 220 KB).
const MAX_PEM_BYTES: u64 = 4 << 20;

/// Reads a PEM file: a regular file of at most [`MAX_PEM_BYTES`], so a path to a device or a
/// FIFO (`/dev/zero`) is refused instead of read forever.
fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    let why = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let io = |e: std::io::Error| why(&format!("I/O error: {e}"));
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(why(&"not a regular file"));
    }
    if meta.len() > MAX_PEM_BYTES {
        return Err(why(&format!("larger than {MAX_PEM_BYTES} bytes")));
    }
    std::fs::read(path).map_err(io)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_pem(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
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

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::SecureRandom;

    #[test]
    fn buffered_random_hands_out_each_byte_once() {
        let mut seen = std::collections::HashSet::new();
        // Many small draws (several refills), one draw past the pool size, none repeated.
        for _ in 0..1000 {
            let mut v = [0u8; 32];
            BufferedRandom.fill(&mut v).unwrap();
            assert!(seen.insert(v), "a 32-byte draw repeated");
        }
        let mut big = vec![0u8; RANDOM_POOL * 2];
        BufferedRandom.fill(&mut big).unwrap();
        assert!(big.iter().any(|&b| b != 0));
        // What was handed out does not linger in the pool.
        RANDOM.with(|p| {
            let p = p.borrow();
            assert!(p.bytes[..p.pos].iter().all(|&b| b == 0));
        });
    }

    #[test]
    fn pem_files_must_be_regular_and_bounded() {
        let e = client_config(Some(Path::new("/dev/zero")), false).unwrap_err();
        assert!(e.contains("/dev/zero: not a regular file"), "{e}");
        let (key, e) = server_config(Path::new("/dev/null"), Path::new("/dev/null")).unwrap_err();
        assert_eq!(key, "listen.tls_cert");
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn aes_128_gcm_comes_first() {
        let p = provider();
        assert_eq!(
            p.cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        assert_eq!(
            p.cipher_suites.len(),
            rustls::crypto::ring::default_provider().cipher_suites.len()
        );
    }
}
