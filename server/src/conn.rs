//! Connection hygiene for every listener: a deadline for the first bytes and every
//! request head, a cap on open connections, graceful drain.
//!
//! HTTP listeners are served by [`serve_http`] (hyper-util's auto builder: HTTP/1.1
//! and h2). gRPC connections come from [`grpc_plain_incoming`] or, with TLS, from
//! `tls::grpc_incoming` wrapped by [`slotted`]: both hold one slot of the listener's
//! semaphore per open connection, and a connection that sends nothing within the
//! header timeout (or never finishes its TLS handshake) is closed.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Connection limits of every listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// A connection holding one slot of its listener (freed when it closes) and, for
/// HTTP, recording whether the peer has sent anything yet.
pub struct Tracked<I> {
    inner: I,
    spoke: Option<Arc<AtomicBool>>,
    _slot: OwnedSemaphorePermit,
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && let Some(spoke) = &self.spoke
        {
            spoke.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<I: tonic::transport::server::Connected> tonic::transport::server::Connected for Tracked<I> {
    type ConnectInfo = I::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Accept the next connection, riding out transient accept errors (out of file
/// descriptors, aborted handshakes) without spinning.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(pair) => return pair,
            Err(err) => {
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One HTTP listener: HTTP/1.1 and h2, a deadline for every request head (new and
/// idle keep-alive connections alike), at most `max_connections` open (a connection
/// past it is closed at once), graceful drain on shutdown.
pub async fn serve_http<L>(
    mut listener: L,
    app: axum::Router,
    limits: ConnLimits,
    shutdown: CancellationToken,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_timeout))
        .keep_alive_timeout(limits.header_timeout);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection limit reached; closing");
            drop(io);
            continue;
        };
        let app = app.clone();
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                app.clone().oneshot(request.map(axum::body::Body::new))
            },
        );
        let spoke = Arc::new(AtomicBool::new(false));
        let io = Tracked {
            inner: io,
            spoke: Some(spoke.clone()),
            _slot: slot,
        };
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            // hyper's header timeout starts once it reads a request head; the protocol
            // sniffing before it has none, so a silent connection is cut here.
            let silent = async {
                tokio::time::sleep(header_timeout).await;
                if spoke.load(Ordering::Relaxed) {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = connection => {}
                _ = silent => tracing::debug!(%peer, "connection sent nothing; closed"),
            }
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await;
}

/// Plain-TCP gRPC connections: at most `max_connections` open, and each must send
/// its first bytes within the header timeout (checked off the accept loop, so a silent
/// client delays nobody).
pub fn grpc_plain_incoming(
    listener: TcpListener,
    limits: ConnLimits,
) -> impl tokio_stream::Stream<Item = Result<Tracked<TcpStream>, io::Error>> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = accept(&listener).await;
            if tx.is_closed() {
                break;
            }
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "gRPC connection limit reached; closing");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(limits.header_timeout, tcp.readable()).await {
                    Ok(Ok(())) => {
                        let _ = tx
                            .send(Ok(Tracked {
                                inner: tcp,
                                spoke: None,
                                _slot: slot,
                            }))
                            .await;
                    }
                    _ => tracing::debug!(%peer, "gRPC connection sent nothing; closed"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Hold a slot for every connection of an incoming stream (TLS gRPC); past the limit
/// a connection is closed at once.
pub fn slotted<I>(
    incoming: impl tokio_stream::Stream<Item = Result<I, io::Error>>,
    limits: ConnLimits,
) -> impl tokio_stream::Stream<Item = Result<Tracked<I>, io::Error>> {
    use tokio_stream::StreamExt;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    incoming.filter_map(move |conn| match conn {
        Ok(inner) => match slots.clone().try_acquire_owned() {
            Ok(slot) => Some(Ok(Tracked {
                inner,
                spoke: None,
                _slot: slot,
            })),
            Err(_) => {
                tracing::debug!("gRPC connection limit reached; closing");
                None
            }
        },
        Err(err) => Some(Err(err)),
    })
}
