//! Throwaway PKI for the TLS tests: a CA and a `localhost`/`127.0.0.1` leaf made with rcgen.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A throwaway CA and a `localhost`/`127.0.0.1` server certificate it signed, as PEM files.
pub struct Pki {
    /// The directory holding the files (removed on drop).
    pub dir: PathBuf,
}

impl Pki {
    /// A fresh directory with `ca.pem`, `cert.pem` and `key.pem`.
    pub fn new(tag: &str) -> Pki {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "slotgate-tls-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki { dir };
        pki.issue(
            "ca.pem",
            "cert.pem",
            "key.pem",
            &format!("slotgate test CA {tag}"),
        );
        pki
    }

    /// Issues a fresh CA and leaf into the named files (a reload test issues a second set).
    pub fn issue(&self, ca: &str, cert: &str, key: &str, ca_name: &str) {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let mut leaf =
            CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
        std::fs::write(self.dir.join(ca), ca_cert.pem()).unwrap();
        std::fs::write(self.dir.join(cert), leaf_cert.pem()).unwrap();
        std::fs::write(self.dir.join(key), leaf_key.serialize_pem()).unwrap();
    }

    /// A file in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
