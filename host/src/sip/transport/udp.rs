//! UDP: one socket per listen address, several receive tasks per socket (so every I/O thread
//! can take datagrams), and sends straight from the calling thread.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use tokio::net::UdpSocket;

use super::{Proto, Sink, Source};

/// Largest UDP datagram.
const MAX_DATAGRAM: usize = 65_535;
/// Socket buffers big enough to ride out bursts at tens of thousands of messages per second.
const SOCKET_BUFFER: usize = 4 << 20;

/// The UDP sockets.
pub struct UdpTransport {
    sockets: RwLock<Vec<Arc<UdpSocket>>>,
}

impl UdpTransport {
    pub fn new() -> Self {
        Self { sockets: RwLock::new(Vec::new()) }
    }

    /// Binds `addr` and starts `tasks` receive loops on it; returns the bound address.
    pub async fn bind(&self, addr: SocketAddr, tasks: usize, sink: Arc<dyn Sink>) -> anyhow::Result<SocketAddr> {
        let std = std::net::UdpSocket::bind(addr).map_err(|e| anyhow::anyhow!("cannot listen on udp:{addr}: {e}"))?;
        std.set_nonblocking(true)?;
        let fd = std::os::fd::AsFd::as_fd(&std);
        let _ = nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::RcvBuf, &SOCKET_BUFFER);
        let _ = nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::SndBuf, &SOCKET_BUFFER);
        let socket = Arc::new(UdpSocket::from_std(std)?);
        let local = socket.local_addr()?;
        for _ in 0..tasks.max(1) {
            let (socket, sink) = (socket.clone(), sink.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; MAX_DATAGRAM];
                loop {
                    match socket.recv_from(&mut buf).await {
                        Ok((n, src)) => {
                            let bytes = Bytes::copy_from_slice(&buf[..n]);
                            sink.on_message(bytes, Source { proto: Proto::Udp, addr: src, local, conn: None });
                        }
                        // ICMP errors from earlier sends surface here (ECONNREFUSED); go on.
                        Err(e) => tracing::debug!(%local, "udp receive: {e}"),
                    }
                }
            });
        }
        self.sockets.write().unwrap_or_else(|e| e.into_inner()).push(socket);
        Ok(local)
    }

    /// Sends a datagram from the socket of `dest`'s address family; false if it failed.
    pub fn send(&self, dest: SocketAddr, bytes: Bytes) -> bool {
        let socket = {
            let sockets = self.sockets.read().unwrap_or_else(|e| e.into_inner());
            sockets
                .iter()
                .find(|s| s.local_addr().is_ok_and(|l| l.is_ipv4() == dest.is_ipv4()))
                .or_else(|| sockets.first())
                .cloned()
        };
        let Some(socket) = socket else {
            tracing::warn!(%dest, "no UDP socket to send from (add a udp listen address)");
            return false;
        };
        match socket.try_send_to(&bytes, dest) {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // The send buffer is full: finish on the runtime instead of blocking this thread.
                let handle = tokio::runtime::Handle::try_current()
                    .ok()
                    .or_else(|| crate::services::state().map(|s| s.runtime.clone()));
                match handle {
                    Some(h) => {
                        h.spawn(async move {
                            if let Err(e) = socket.send_to(&bytes, dest).await {
                                tracing::debug!(%dest, "udp send: {e}");
                            }
                        });
                        true
                    }
                    None => false,
                }
            }
            Err(e) => {
                tracing::debug!(%dest, "udp send: {e}");
                false
            }
        }
    }
}

impl Default for UdpTransport {
    fn default() -> Self {
        Self::new()
    }
}
