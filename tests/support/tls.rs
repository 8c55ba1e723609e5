//! Test certificates, made at run time with rcgen (no private key is committed): a CA and a
//! server certificate it signed for 127.0.0.1 and localhost.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};

/// A CA, and a server certificate it signed for 127.0.0.1 and localhost, as PEM files in a
/// fresh directory.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        Pki::for_names(name, &["127.0.0.1", "localhost"])
    }

    /// The server certificate names only `names` (IP addresses or DNS names).
    pub fn for_names(name: &str, names: &[&str]) -> Pki {
        let dir = std::env::temp_dir().join(format!("rkm-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct subjects: with rcgen's one default name on both, OpenSSL (Kamailio's tls
        // module) takes the server certificate for a self-signed one and refuses it.
        ca.distinguished_name = DistinguishedName::new();
        ca.distinguished_name
            .push(DnType::CommonName, format!("roomkit-media test CA {name}"));
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut leaf = CertificateParams::new(names.clone()).unwrap();
        leaf.distinguished_name = DistinguishedName::new();
        leaf.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        let leaf = leaf.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        // Certificate and key in one file, as baresip's `sip_certificate` takes them.
        std::fs::write(
            dir.join("cert_and_key.pem"),
            format!("{}{}", leaf.pem(), key.serialize_pem()),
        )
        .unwrap();
        Pki { dir }
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }

    /// `serve`'s arguments for a SIP-over-TLS listener on an ephemeral loopback port with this
    /// server certificate, and `--srtp MODE` when given.
    pub fn serve_tls_args(&self, srtp: Option<&str>) -> Vec<String> {
        let mut args = vec![
            "--sip-tls".to_string(),
            "127.0.0.1:0".to_string(),
            "--tls-cert".to_string(),
            self.path("cert.pem").display().to_string(),
            "--tls-key".to_string(),
            self.path("key.pem").display().to_string(),
        ];
        if let Some(mode) = srtp {
            args.extend(["--srtp".to_string(), mode.to_string()]);
        }
        args
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
