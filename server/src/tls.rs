//! Optional TLS on every listener, with the certificate reloaded on SIGHUP.
//!
//! Tasks: one accept loop per listener, and one handshake task per connection (so a
//! slow or silent client cannot stall accepts); finished handshakes are handed to the
//! HTTP or gRPC server over a channel. A SIGHUP task re-reads the certificate and key
//! and swaps the configuration every new handshake uses; on a read error the old
//! configuration stays and the error is logged.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Certificate and key files, and the configurations built from them.
pub struct TlsState {
    cert: PathBuf,
    key: PathBuf,
    /// (HTTP config with ALPN h2 + http/1.1, gRPC config with ALPN h2)
    configs: RwLock<(Arc<rustls::ServerConfig>, Arc<rustls::ServerConfig>)>,
}

fn build(cert: &Path, key: &Path, alpn: &[&[u8]]) -> anyhow::Result<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read TLS certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("invalid PEM in {}", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read TLS key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("certificate and key do not match")?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

impl TlsState {
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<TlsState>> {
        let state = TlsState {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            configs: RwLock::new(Self::configs(cert, key)?),
        };
        Ok(Arc::new(state))
    }

    fn configs(
        cert: &Path,
        key: &Path,
    ) -> anyhow::Result<(Arc<rustls::ServerConfig>, Arc<rustls::ServerConfig>)> {
        Ok((
            Arc::new(build(cert, key, &[b"h2", b"http/1.1"])?),
            Arc::new(build(cert, key, &[b"h2"])?),
        ))
    }

    /// Re-read the files; keep the old configuration on error.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = Self::configs(&self.cert, &self.key)?;
        *self.configs.write().expect("tls config lock poisoned") = fresh;
        Ok(())
    }

    fn http(&self) -> Arc<rustls::ServerConfig> {
        self.configs
            .read()
            .expect("tls config lock poisoned")
            .0
            .clone()
    }

    fn grpc(&self) -> Arc<rustls::ServerConfig> {
        self.configs
            .read()
            .expect("tls config lock poisoned")
            .1
            .clone()
    }
}

/// Reload the certificate on every SIGHUP.
pub fn spawn_reloader(state: Arc<TlsState>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match state.reload() {
                Ok(()) => tracing::info!(cert = %state.cert.display(), "TLS certificate reloaded"),
                Err(err) => {
                    tracing::error!(error = %format!("{err:#}"), "TLS reload failed; keeping the previous certificate")
                }
            }
        }
    }))
}

type Handshaken = (TlsStream<TcpStream>, SocketAddr);

fn spawn_acceptor(
    listener: TcpListener,
    config: impl Fn() -> Arc<rustls::ServerConfig> + Send + 'static,
) -> mpsc::Receiver<Handshaken> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = crate::conn::accept(&listener).await;
            if tx.is_closed() {
                break;
            }
            let acceptor = tokio_rustls::TlsAcceptor::from(config());
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send((stream, addr)).await;
                    }
                    Ok(Err(err)) => tracing::debug!(error = %err, %addr, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                }
            });
        }
    });
    rx
}

/// An `axum::serve` listener yielding TLS streams.
pub struct TlsListener {
    rx: mpsc::Receiver<Handshaken>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, state: Arc<TlsState>) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        Ok(TlsListener {
            rx: spawn_acceptor(listener, move || state.http()),
            local,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(pair) => pair,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// A TLS connection for tonic, carrying the peer address for `remote_addr()`.
pub struct GrpcTlsIo {
    stream: TlsStream<TcpStream>,
    peer: SocketAddr,
}

impl tonic::transport::server::Connected for GrpcTlsIo {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(self.peer),
        }
    }
}

impl AsyncRead for GrpcTlsIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for GrpcTlsIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A stream of TLS connections for `tonic`'s `serve_with_incoming_shutdown`.
pub fn grpc_incoming(
    listener: TcpListener,
    state: Arc<TlsState>,
) -> impl tokio_stream::Stream<Item = Result<GrpcTlsIo, io::Error>> {
    use tokio_stream::StreamExt;
    let rx = spawn_acceptor(listener, move || state.grpc());
    tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|(stream, peer)| Ok(GrpcTlsIo { stream, peer }))
}
