//! TLS for `wss://` and `https://` on the WebSocket port (rustls, ring
//! provider, through tokio-rustls).
//!
//! Owns loading the PEM certificate chain and key (errors name the file and
//! the problem, never key material) and the per-connection handshake. Must
//! not: touch what runs over the connection (routing stays in
//! [`super::http`], sessions in [`super::session`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// Why the certificate or key cannot be used; the message names the flag,
/// the file and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let problem =
        |e: &pem::Error| TlsError(format!("--tls-cert {}: {}", path.display(), pem_problem(e)));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| problem(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| problem(&e))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "--tls-cert {}: no \"BEGIN CERTIFICATE\" block found; give the PEM certificate chain",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        let problem = match e {
            pem::Error::NoItemsFound => {
                "no private key found (expected a PEM \"PRIVATE KEY\" block)".into()
            }
            e => pem_problem(&e),
        };
        TlsError(format!("--tls-key {}: {problem}", path.display()))
    })
}

/// Load the certificate and key and build the acceptor; every failure names
/// the file and the problem.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS set-up: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            TlsError(format!(
                "--tls-cert {} / --tls-key {}: {e} (does the key belong to the certificate?)",
                files.cert.display(),
                files.key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
