//! TLS for `ssl:HOST:PORT` hardware VTEP remotes, in Open vSwitch's PKI model
//! (`ovsdb-server --private-key --certificate --ca-cert`): the agent presents its own
//! certificate and key (`--vtep-cert`, `--vtep-key`) and accepts a switch whose certificate
//! chains to the CA certificate of `--vtep-ca-cert` and is within its validity. As Open
//! vSwitch's own SSL client, it does not match the certificate's names against the remote's
//! host: switch certificates (`ovs-pki`) name the switch, not its address, so the trust is
//! in the dedicated CA. rustls with the ring provider; no OpenSSL.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;

/// Why the CA, certificate or key files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum VtepTlsError {
    /// The file cannot be read.
    #[error("cannot read {what} {}: {reason}", path.display())]
    Read {
        /// Which option named the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: std::io::Error,
    },
    /// The file is not valid PEM, or holds no item of the kind expected.
    #[error("{what} {}: {reason}", path.display())]
    Pem {
        /// Which option named the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the CA, the certificate or the key.
    #[error("{what}: {reason}")]
    Unusable {
        /// Which option(s).
        what: &'static str,
        /// What rustls said.
        reason: String,
    },
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, VtepTlsError> {
    std::fs::read(path).map_err(|reason| VtepTlsError::Read {
        what,
        path: path.to_path_buf(),
        reason,
    })
}

fn certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, VtepTlsError> {
    let bytes = read(what, path)?;
    let pem = |reason: String| VtepTlsError::Pem {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(pem(
            "no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

/// The ring provider, as the rest of Neutrino's TLS.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client configuration for every `ssl:` remote: trust the CA certificates of `ca`,
/// present the certificate chain of `cert` with the private key of `key` (PEM files).
pub fn client_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ClientConfig>, VtepTlsError> {
    let mut roots = RootCertStore::empty();
    for c in certificates("--vtep-ca-cert", ca)? {
        roots.add(c).map_err(|e| VtepTlsError::Pem {
            what: "--vtep-ca-cert",
            path: ca.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    let chain = certificates("--vtep-cert", cert)?;
    let key_bytes = read("--vtep-key", key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| VtepTlsError::Pem {
        what: "--vtep-key",
        path: key.to_path_buf(),
        reason: match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no PEM private key in it (expected PKCS#8, PKCS#1 or SEC1)".into()
            }
            other => format!("invalid PEM: {other}"),
        },
    })?;
    let provider = provider();
    let verifier = Arc::new(ChainOnly {
        roots: Arc::new(roots),
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| VtepTlsError::Unusable {
            what: "TLS",
            reason: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, private)
        .map_err(|e| VtepTlsError::Unusable {
            what: "--vtep-cert / --vtep-key",
            reason: e.to_string(),
        })?;
    Ok(Arc::new(config))
}

/// Accepts a server certificate that chains to one of `roots` (and is valid now), whatever
/// names it carries; handshake signatures are checked as usual.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_files_are_errors_naming_the_file() {
        let dir = std::env::temp_dir().join(format!(
            "neutrino-vtep-tls-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let absent = dir.join("absent.pem");
        let err = client_config(&absent, &empty, &empty).unwrap_err();
        assert!(
            matches!(
                &err,
                VtepTlsError::Read {
                    what: "--vtep-ca-cert",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("absent.pem"), "{err}");
        let err = client_config(&empty, &empty, &empty).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
