//! The certificates of `demo --secure`, made at start-up with rcgen (ring's algorithms): a CA
//! of the run's own, and a server certificate it signed for 127.0.0.1. The SIP backends read
//! PEM files, so they are written to a fresh directory only we can read, removed on drop; the
//! keys live no longer than the demo.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// The demo's CA and server certificate, as PEM files.
pub struct DemoPki {
    dir: PathBuf,
}

impl DemoPki {
    /// Makes the CA, the server certificate for 127.0.0.1 and its key, and writes them.
    pub fn new() -> Result<DemoPki, String> {
        let err = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
        let dir = std::env::temp_dir().join(format!("roomkit-media-demo-{}", std::process::id()));
        // A left-over directory of a dead process with our pid is replaced.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| err(&format!("creating {}", dir.display()), &e))?;
        let pki = DemoPki { dir };

        let ca_key = KeyPair::generate().map_err(|e| err("CA key", &e))?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(|e| err("CA", &e))?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "roomkit-media demo CA");
        let ca_cert = ca.self_signed(&ca_key).map_err(|e| err("CA", &e))?;
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().map_err(|e| err("server key", &e))?;
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .map_err(|e| err("server certificate", &e))?
            .signed_by(&key, &issuer)
            .map_err(|e| err("server certificate", &e))?;
        pki.write("ca.pem", &ca_cert.pem())?;
        pki.write("cert.pem", &leaf.pem())?;
        pki.write("key.pem", &key.serialize_pem())?;
        Ok(pki)
    }

    fn write(&self, name: &str, pem: &str) -> Result<(), String> {
        use std::io::Write;
        let path = self.dir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(pem.as_bytes()))
            .map_err(|e| format!("writing {}: {e}", path.display()))
    }

    /// The CA certificate the caller verifies the server against.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The server's certificate (signed by [`DemoPki::ca`]).
    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// The server certificate's private key.
    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    #[cfg(test)]
    fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

impl Drop for DemoPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let pki = DemoPki::new().unwrap();
        let dir = pki.dir().to_path_buf();
        for f in [pki.ca(), pki.cert(), pki.key()] {
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(text.starts_with("-----BEGIN "), "{}", f.display());
        }
        let mode = std::fs::metadata(pki.key()).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key is readable by others: {mode:o}");
        drop(pki);
        assert!(!dir.exists());
    }
}
