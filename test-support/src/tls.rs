//! A throwaway certificate authority and a server certificate it signed, as PEM files in a temp
//! dir, so TLS tests verify the server for real instead of turning verification off.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// `ca.pem`, `server.pem` and `server.key` in a directory that lives as long as this value.
#[derive(Debug)]
pub struct TlsFiles {
    dir: tempfile::TempDir,
    ca_path: PathBuf,
    ca_pem: Vec<u8>,
}

impl TlsFiles {
    /// A fresh CA and a certificate for `127.0.0.1` and `localhost` (ECDSA P-256). The server
    /// certificate also allows client auth: Redis presents it when it connects to other nodes
    /// (replication, cluster bus).
    pub fn generate() -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "test-support throwaway CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("self-signed CA");

        let server_key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server params");
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let server = params.signed_by(&server_key, &ca).expect("server certificate");

        let dir = tempfile::tempdir().expect("temp dir for TLS files");
        let ca_pem = ca.pem().into_bytes();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, &ca_pem).expect("write ca.pem");
        std::fs::write(dir.path().join("server.pem"), server.pem()).expect("write server.pem");
        std::fs::write(dir.path().join("server.key"), server_key.serialize_pem())
            .expect("write server.key");
        Self { dir, ca_path, ca_pem }
    }

    /// The CA certificate a client must trust.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// The CA certificate as PEM bytes (for `redis::TlsCertificates::root_cert`).
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    pub(crate) fn cert_path(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    pub(crate) fn key_path(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// What the redis crate needs to trust only this CA.
    pub(crate) fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates { client_tls: None, root_cert: Some(self.ca_pem.clone()) }
    }
}
