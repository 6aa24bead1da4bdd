//! UDP: one socket per listen address, read by receiver threads that process each datagram to
//! the end (parse, transaction, route, reply) before they take the next one; sends go straight
//! out from whichever thread has something to send.
//!
//! Why threads and not tokio tasks: handing each request from an I/O task to a worker thread
//! cost two thread wake-ups per request, which was most of the CPU a PUBLISH took. A receiver
//! that runs the route itself is Kamailio's model (its UDP children) and needs no hand-off; a
//! route that waits on a database blocks one receiver, and `[core] udp_workers` says how many
//! there are.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use bytes::Bytes;
use nix::sys::socket::{MsgFlags, SockaddrStorage};

use super::{Proto, Sink, Source};

/// Largest UDP datagram.
const MAX_DATAGRAM: usize = 65_535;
/// Socket buffers big enough to ride out bursts at tens of thousands of messages per second.
const SOCKET_BUFFER: usize = 4 << 20;

/// The UDP sockets and their receiver threads.
pub struct UdpTransport {
    /// Each socket with its bound address (asked once: `getsockname` per send showed in
    /// profiles).
    sockets: RwLock<Vec<(Arc<UdpSocket>, SocketAddr)>>,
    receivers: Mutex<Vec<JoinHandle<()>>>,
    stopping: Arc<AtomicBool>,
}

impl UdpTransport {
    pub fn new() -> Self {
        Self { sockets: RwLock::new(Vec::new()), receivers: Mutex::new(Vec::new()), stopping: Arc::default() }
    }

    /// Binds `addr`; returns the bound address. Nothing is read until
    /// [`UdpTransport::start_receivers`]: datagrams wait in the socket buffer meanwhile.
    pub fn bind(&self, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
        let socket = UdpSocket::bind(addr).map_err(|e| anyhow::anyhow!("cannot listen on udp:{addr}: {e}"))?;
        let fd = std::os::fd::AsFd::as_fd(&socket);
        let _ = nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::RcvBuf, &SOCKET_BUFFER);
        let _ = nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::SndBuf, &SOCKET_BUFFER);
        let local = socket.local_addr()?;
        self.sockets.write().unwrap_or_else(|e| e.into_inner()).push((Arc::new(socket), local));
        Ok(local)
    }

    /// Starts `per_socket` receiver threads on every bound socket; each hands datagrams to
    /// `sink` on its own thread ([`Sink::on_datagram`]).
    pub fn start_receivers(&self, per_socket: usize, sink: Arc<dyn Sink>) -> std::io::Result<()> {
        let sockets = self.sockets.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut receivers = self.receivers.lock().unwrap_or_else(|e| e.into_inner());
        for (socket, local) in sockets {
            for n in 0..per_socket.max(1) {
                let (socket, sink, stopping) = (socket.clone(), sink.clone(), self.stopping.clone());
                let thread =
                    std::thread::Builder::new().name(format!("udp-{}-{n}", local.port())).spawn(move || {
                        receive_loop(&socket, local, &*sink, &stopping);
                    })?;
                receivers.push(thread);
            }
        }
        Ok(())
    }

    /// Stops the receiver threads: each finishes the datagram it is processing, then exits.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        let receivers = std::mem::take(&mut *self.receivers.lock().unwrap_or_else(|e| e.into_inner()));
        // A receiver blocked in recv wakes for a datagram: send each one an empty one.
        let sockets = self.sockets.read().unwrap_or_else(|e| e.into_inner()).clone();
        for (socket, local) in &sockets {
            let local = *local;
            let wake = match local.ip() {
                ip if !ip.is_unspecified() => local,
                std::net::IpAddr::V4(_) => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), local.port()),
                std::net::IpAddr::V6(_) => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), local.port()),
            };
            for _ in 0..receivers.len() {
                let _ = socket.send_to(&[], wake);
            }
        }
        for r in receivers {
            let _ = r.join();
        }
    }

    /// Sends a datagram from the socket of `dest`'s address family; false if it failed.
    pub fn send(&self, dest: SocketAddr, bytes: Bytes) -> bool {
        let socket = {
            let sockets = self.sockets.read().unwrap_or_else(|e| e.into_inner());
            sockets
                .iter()
                .find(|(_, local)| local.is_ipv4() == dest.is_ipv4())
                .or_else(|| sockets.first())
                .map(|(s, _)| s.clone())
        };
        let Some(socket) = socket else {
            tracing::warn!(%dest, "no UDP socket to send from (add a udp listen address)");
            return false;
        };
        // The socket blocks (its receivers sleep in recv); this send must not, since it may run
        // on an I/O thread.
        let to: SockaddrStorage = dest.into();
        match nix::sys::socket::sendto(socket.as_raw_fd(), &bytes, &to, MsgFlags::MSG_DONTWAIT) {
            Ok(_) => true,
            Err(nix::errno::Errno::EAGAIN) => {
                // The send buffer is full: finish on a blocking thread instead of this one.
                std::thread::spawn(move || {
                    if let Err(e) = socket.send_to(&bytes, dest) {
                        tracing::debug!(%dest, "udp send: {e}");
                    }
                });
                true
            }
            Err(e) => {
                tracing::debug!(%dest, "udp send: {e}");
                false
            }
        }
    }
}

fn receive_loop(socket: &UdpSocket, local: SocketAddr, sink: &dyn Sink, stopping: &AtomicBool) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = socket.recv_from(&mut buf);
        if stopping.load(Ordering::Acquire) {
            return;
        }
        match received {
            Ok((0, _)) => {}
            Ok((n, src)) => {
                let bytes = Bytes::copy_from_slice(&buf[..n]);
                let source = Source { proto: Proto::Udp, addr: src, local, conn: None };
                // The core catches its own panics per job; this keeps the receiver alive anyway.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink.on_datagram(bytes, source))).is_err() {
                    tracing::error!(%local, "a panic while processing a datagram; the receiver goes on");
                }
            }
            // ICMP errors from earlier sends surface here (ECONNREFUSED); go on.
            Err(e) => tracing::debug!(%local, "udp receive: {e}"),
        }
    }
}

impl Default for UdpTransport {
    fn default() -> Self {
        Self::new()
    }
}
