//! HTTPS for the API listener (`--tls-cert`, `--tls-key`): PEM loading with errors that name
//! the file and the fault, and an `axum::serve::Listener` that accepts TCP and completes each
//! TLS handshake in its own task under a timeout, so a slow or broken client never holds up
//! the others. rustls with the ring provider; no OpenSSL.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client has to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; connections beyond are closed at once.
const MAX_HANDSHAKES: usize = 1024;

/// Why the certificate, key or CA files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read {what} {}: {reason}", path.display())]
    Read {
        /// Which option named the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why (in the message, not a separate cause: it would be printed twice).
        reason: std::io::Error,
    },
    /// The file is not valid PEM.
    #[error("{what} {}: invalid PEM: {reason}", path.display())]
    BadPem {
        /// Which option named the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The file holds no `CERTIFICATE` block.
    #[error("{what} {}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate {
        /// Which option named the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error(
        "--tls-key {}: no PEM private key in it (expected PKCS#8, PKCS#1 or SEC1: -----BEGIN PRIVATE KEY-----)",
        path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is not the certificate's.
    #[error(
        "--tls-key {} does not belong to --tls-cert {} (their public keys differ)",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the certificate or key for another reason.
    #[error("--tls-cert {} / --tls-key {}: {reason}", cert.display(), key.display())]
    Unusable {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        reason: String,
    },
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|reason| TlsError::Read {
        what,
        path: path.to_path_buf(),
        reason,
    })
}

/// The certificates of a PEM file, in order; at least one.
pub fn load_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key of a PEM file.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read("--tls-key", path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        other => TlsError::BadPem {
            what: "--tls-key",
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    })
}

/// The ring provider, as reqwest's rustls in the clients: aws-lc-rs (rustls's choice for
/// post-quantum key exchange, hence the deprecation) needs a C toolchain and cmake to build.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server's TLS configuration from a certificate chain file (server certificate first,
/// then intermediates) and its private key; HTTP/1.1 by ALPN, TLS 1.2 and 1.3.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = load_certificates("--tls-cert", cert)?;
    let private = load_key(key)?;
    let unusable = |reason: String| TlsError::Unusable {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| unusable(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            },
            other => unusable(other.to_string()),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TLS listener for `axum::serve`: a background task accepts TCP connections and hands
/// each to its own handshake task (at most [`MAX_HANDSHAKES`] at once, each limited to a
/// timeout); only completed handshakes reach the server. Failed handshakes (plain HTTP, an
/// untrusting client, a scanner) are logged at debug level.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Serves TLS with `config` on an already bound `tcp` listener.
    pub fn new(
        tcp: TcpListener,
        config: Arc<rustls::ServerConfig>,
        handshake_timeout: Duration,
    ) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio::spawn(accept_loop(
            tcp,
            TlsAcceptor::from(config),
            tx,
            handshake_timeout,
        ));
        Ok(TlsListener {
            ready,
            local,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    /// Stops accepting (closes the socket) when the server lets go of the listener.
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    handshake_timeout: Duration,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_error(e).await;
                continue;
            }
        };
        if ready.is_closed() {
            return;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many TLS handshakes in progress: connection closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await;
            drop(slot);
            match handshake {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// As axum's own TCP listener: a failed connection is skipped, anything else (out of file
/// descriptors) waits a second before the next accept.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept task only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA and a server certificate for 127.0.0.1 and localhost signed by it.
    struct Pki {
        dir: tempfile::TempDir,
        ca_pem: String,
    }

    impl Pki {
        fn new() -> Pki {
            let ca_key = rcgen::KeyPair::generate().unwrap();
            let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca_params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "test CA");
            let ca = ca_params.self_signed(&ca_key).unwrap();
            let key = rcgen::KeyPair::generate().unwrap();
            let params =
                rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
                    .unwrap();
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("server.pem"), cert.pem()).unwrap();
            std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
            std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
            std::fs::write(
                dir.path().join("other.key"),
                rcgen::KeyPair::generate().unwrap().serialize_pem(),
            )
            .unwrap();
            Pki {
                dir,
                ca_pem: ca.pem(),
            }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
    }

    #[test]
    fn a_matching_certificate_and_key_load() {
        let pki = Pki::new();
        let config = server_config(&pki.path("server.pem"), &pki.path("server.key")).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert_eq!(
            load_certificates("--tls-ca", &pki.path("ca.pem"))
                .unwrap()
                .len(),
            1
        );
        assert!(pki.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn a_missing_file_is_named() {
        let pki = Pki::new();
        let err = server_config(&pki.path("absent.pem"), &pki.path("server.key")).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Read {
                    what: "--tls-cert",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("absent.pem"), "{err}");
        let err = server_config(&pki.path("server.pem"), &pki.path("absent.key")).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Read {
                    what: "--tls-key",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_key_file_without_a_key_is_refused() {
        let pki = Pki::new();
        // The certificate given twice: no key in the key file.
        let err = server_config(&pki.path("server.pem"), &pki.path("server.pem")).unwrap_err();
        assert!(matches!(err, TlsError::NoKey { .. }), "{err}");
        assert!(err.to_string().contains("no PEM private key"), "{err}");
    }

    #[test]
    fn a_certificate_file_without_a_certificate_is_refused() {
        let pki = Pki::new();
        let err = server_config(&pki.path("server.key"), &pki.path("server.key")).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::NoCertificate {
                    what: "--tls-cert",
                    ..
                }
            ),
            "{err}"
        );
        std::fs::write(pki.path("empty.pem"), "").unwrap();
        let err = load_certificates("--tls-ca", &pki.path("empty.pem")).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::NoCertificate {
                    what: "--tls-ca",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn another_certificates_key_is_a_mismatch() {
        let pki = Pki::new();
        let err = server_config(&pki.path("server.pem"), &pki.path("other.key")).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[tokio::test]
    async fn a_stalled_client_does_not_block_a_handshake() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let pki = Pki::new();
        let config = server_config(&pki.path("server.pem"), &pki.path("server.key")).unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut listener = TlsListener::new(tcp, config, Duration::from_secs(30)).unwrap();
        let addr = axum::serve::Listener::local_addr(&listener).unwrap();
        // A client that connects and never speaks, and one that speaks plain HTTP.
        let _silent = TcpStream::connect(addr).await.unwrap();
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // A real TLS client still gets through at once.
        let mut roots = rustls::RootCertStore::empty();
        for cert in load_certificates("--tls-ca", &pki.path("ca.pem")).unwrap() {
            roots.add(cert).unwrap();
        }
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let server = tokio::spawn(async move {
            let (mut io, _) = axum::serve::Listener::accept(&mut listener).await;
            io.write_all(b"hello").await.unwrap();
            io.shutdown().await.unwrap();
            listener
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
            .await
            .expect("handshake not blocked by the other clients")
            .unwrap();
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        let _listener = server.await.unwrap();
        // The plain-HTTP client got no HTTP answer: the connection closes without one.
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
        assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    }

    #[tokio::test]
    async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
        use tokio::io::AsyncReadExt;
        let pki = Pki::new();
        let config = server_config(&pki.path("server.pem"), &pki.path("server.key")).unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener = TlsListener::new(tcp, config, Duration::from_millis(200)).unwrap();
        let addr = axum::serve::Listener::local_addr(&listener).unwrap();
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
            .await
            .expect("the server closes the connection");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert!(started.elapsed() >= Duration::from_millis(150));
    }
}
