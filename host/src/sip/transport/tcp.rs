//! TCP: listeners, inbound and outbound connections, framing by Content-Length.
//!
//! Each connection has a reader task (framing, keep-alive pongs, size limit, idle lifetime) and
//! a writer task fed by a channel, so any thread can send without blocking. Connections are
//! indexed by id (the one a request came in on) and by peer address (to reuse a connection the
//! peer opened, as a phone behind NAT requires).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use sip_message::{Frame, frame_stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{ConnId, Dest, Proto, Sink, Source, StreamLimits};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

struct Conn {
    peer: SocketAddr,
    tx: mpsc::UnboundedSender<Bytes>,
}

struct Shared {
    limits: StreamLimits,
    sink: Arc<dyn Sink>,
    next_id: AtomicU64,
    open: AtomicUsize,
    conns: Mutex<HashMap<ConnId, Conn>>,
    by_peer: Mutex<HashMap<SocketAddr, ConnId>>,
}

/// The TCP side.
pub struct TcpTransport {
    shared: Arc<Shared>,
}

impl TcpTransport {
    pub fn new(limits: StreamLimits, sink: Arc<dyn Sink>) -> Self {
        Self {
            shared: Arc::new(Shared {
                limits,
                sink,
                next_id: AtomicU64::new(1),
                open: AtomicUsize::new(0),
                conns: Mutex::new(HashMap::new()),
                by_peer: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Listens on `addr`; returns the bound address.
    pub async fn listen(&self, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
        let listener =
            TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on tcp:{addr}: {e}"))?;
        let local = listener.local_addr()?;
        let shared = self.shared.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        if shared.open.load(Ordering::Relaxed) >= shared.limits.max_connections {
                            tracing::warn!(%peer, limit = shared.limits.max_connections, "TCP connection refused: too many connections");
                            drop(stream);
                            continue;
                        }
                        let _ = stream.set_nodelay(true);
                        Shared::run(shared.clone(), stream, peer, local);
                    }
                    Err(e) => {
                        tracing::warn!(%local, "TCP accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Ok(local)
    }

    /// Sends on `dest.conn` if it is open, else on an open connection to `dest.addr`, else on a
    /// new connection.
    pub fn send(&self, dest: &Dest, bytes: Bytes, on_error: Option<Box<dyn FnOnce() + Send>>) {
        let shared = &self.shared;
        let existing = {
            let conns = shared.conns.lock().unwrap_or_else(|e| e.into_inner());
            dest.conn.and_then(|id| conns.get(&id)).map(|c| c.tx.clone()).or_else(|| {
                let id = *shared.by_peer.lock().unwrap_or_else(|e| e.into_inner()).get(&dest.addr)?;
                conns.get(&id).map(|c| c.tx.clone())
            })
        };
        if let Some(tx) = existing
            && tx.send(bytes.clone()).is_ok()
        {
            return;
        }
        let Some(handle) = runtime() else {
            if let Some(f) = on_error {
                f();
            }
            return;
        };
        let (shared, addr) = (shared.clone(), dest.addr);
        handle.spawn(async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    let local = stream.local_addr().unwrap_or(addr);
                    let tx = Shared::run(shared, stream, addr, local);
                    let _ = tx.send(bytes);
                }
                Ok(Err(e)) => {
                    tracing::debug!(%addr, "TCP connect failed: {e}");
                    if let Some(f) = on_error {
                        f();
                    }
                }
                Err(_) => {
                    tracing::debug!(%addr, "TCP connect timed out");
                    if let Some(f) = on_error {
                        f();
                    }
                }
            }
        });
    }
}

fn runtime() -> Option<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current().ok().or_else(|| crate::services::state().map(|s| s.runtime.clone()))
}

impl Shared {
    /// Registers a connection and starts its reader and writer; returns its send channel.
    fn run(
        shared: Arc<Shared>,
        stream: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> mpsc::UnboundedSender<Bytes> {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        shared.open.fetch_add(1, Ordering::Relaxed);
        shared.limits.open_gauge.fetch_add(1, Ordering::Relaxed);
        shared.conns.lock().unwrap_or_else(|e| e.into_inner()).insert(id, Conn { peer, tx: tx.clone() });
        shared.by_peer.lock().unwrap_or_else(|e| e.into_inner()).insert(peer, id);
        let (mut reader, mut writer) = stream.into_split();
        let writer_task = tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if let Err(e) = writer.write_all(&bytes).await {
                    tracing::debug!(%peer, "TCP write: {e}");
                    break;
                }
            }
            let _ = writer.shutdown().await;
        });
        let pong = tx.clone();
        tokio::spawn(async move {
            let src = Source { proto: Proto::Tcp, addr: peer, local, conn: Some(id) };
            let mut buf = BytesMut::with_capacity(8192);
            let limits = shared.limits;
            'conn: loop {
                // Cut out every complete message already buffered.
                loop {
                    match frame_stream(&buf, limits.max_message) {
                        Frame::KeepAlive(n) => {
                            // A CRLFCRLF ping gets a CRLF pong (RFC 5626 §4.4.1).
                            if buf.starts_with(b"\r\n\r\n") {
                                let _ = pong.send(Bytes::from_static(b"\r\n"));
                            }
                            buf.advance(n);
                        }
                        Frame::Complete(len) => {
                            let msg = buf.split_to(len).freeze();
                            shared.sink.on_message(msg, src);
                        }
                        Frame::Incomplete => break,
                        Frame::Error(e) => {
                            tracing::warn!(%peer, "TCP stream error ({e}); connection closed");
                            break 'conn;
                        }
                    }
                }
                if buf.capacity() - buf.len() < 4096 {
                    buf.reserve(8192);
                }
                match tokio::time::timeout(limits.lifetime, reader.read_buf(&mut buf)).await {
                    Ok(Ok(0)) => break,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "TCP read: {e}");
                        break;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TCP connection idle for its lifetime; closed");
                        break;
                    }
                }
            }
            shared.conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            {
                let mut by_peer = shared.by_peer.lock().unwrap_or_else(|e| e.into_inner());
                if by_peer.get(&peer) == Some(&id) {
                    by_peer.remove(&peer);
                }
            }
            shared.open.fetch_sub(1, Ordering::Relaxed);
            shared.limits.open_gauge.fetch_sub(1, Ordering::Relaxed);
            writer_task.abort();
        });
        tx
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        self.shared.conns.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("peer", &self.peer).finish()
    }
}
