//! TLS for `wss://` and `https://` on the WebSocket port (rustls, ring
//! provider, through tokio-rustls).
//!
//! Owns loading the PEM certificate chain and key (errors name the file and
//! the problem, never key material) and the per-connection handshake. Must
//! not: touch what runs over the connection (routing stays in
//! [`super::http`], sessions in [`super::session`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use rustls::ServerConfig;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// `--tls-cert` / `--tls-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The first byte of a TLS record carrying a handshake.
pub const TLS_HANDSHAKE_BYTE: u8 = 0x16;

fn pem_problem(e: &pem::Error) -> String {
    match e {
        pem::Error::Io(e) => format!("cannot read it: {e}"),
        pem::Error::NoItemsFound => "no PEM block of the expected kind found".into(),
        pem::Error::MissingSectionEnd { .. } => "a PEM block has no END line".into(),
        pem::Error::IllegalSectionStart { .. } => "a malformed PEM BEGIN line".into(),
        pem::Error::Base64Decode(_) => "a PEM block is not valid base64".into(),
        _ => "not a valid PEM file".into(),
    }
}

fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let flag = || format!("--tls-cert {}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| anyhow!("{}: {}", flag(), pem_problem(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{}: {}", flag(), pem_problem(&e)))?;
    if certs.is_empty() {
        return Err(anyhow!(
            "{}: no \"BEGIN CERTIFICATE\" block found; give the PEM certificate chain",
            flag()
        ));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        let problem = match e {
            pem::Error::NoItemsFound => {
                "no private key found (expected a PEM \"PRIVATE KEY\" block)".into()
            }
            e => pem_problem(&e),
        };
        anyhow!("--tls-key {}: {problem}", path.display())
    })
}

/// Load the certificate and key and build the acceptor; every failure names
/// the file and the problem.
pub fn acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS set-up")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            anyhow!(
                "--tls-cert {} / --tls-key {}: {e} (does the key belong to the certificate?)",
                files.cert.display(),
                files.key.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
