//! SIP transports: UDP sockets read by receiver threads, and TCP connections owned by tokio.
//!
//! Incoming messages are handed to a [`Sink`] (the SIP core) as `Bytes` plus where they came
//! from. Outgoing messages go to a [`Dest`]: UDP is sent from any thread straight on the socket;
//! TCP goes through the connection's writer task, reusing the peer's open connection when there
//! is one (a phone behind NAT only accepts requests on the connection it opened).

mod tcp;
mod udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use tcp::TcpTransport;
pub use udp::UdpTransport;

use crate::config::{ListenAddr, Transport as ListenTransport};

/// Transport of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    /// Upper-case, as in a Via header.
    pub fn via_name(self) -> &'static str {
        match self {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
        }
    }

    /// Lower-case, as in `;transport=`.
    pub fn param(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }

    /// Whether the transport is reliable (no retransmissions, timers J/K/I/D are 0).
    pub fn reliable(self) -> bool {
        self == Proto::Tcp
    }
}

/// A TCP connection's identity.
pub type ConnId = u64;

/// Where to send a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dest {
    pub proto: Proto,
    pub addr: SocketAddr,
    /// TCP: the connection to use (the one a request came in on), if still open.
    pub conn: Option<ConnId>,
}

/// Where an incoming message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub proto: Proto,
    pub addr: SocketAddr,
    /// The local socket it arrived on.
    pub local: SocketAddr,
    pub conn: Option<ConnId>,
}

/// What transports hand incoming messages to.
pub trait Sink: Send + Sync + 'static {
    /// A message from a stream reader (an I/O task): anything that may block goes elsewhere.
    fn on_message(&self, bytes: Bytes, src: Source);
    /// A datagram, on a UDP receiver thread that may process it to the end.
    fn on_datagram(&self, bytes: Bytes, src: Source) {
        self.on_message(bytes, src)
    }
}

/// Limits of the stream transports.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    pub max_message: usize,
    pub max_connections: usize,
    pub lifetime: Duration,
    /// Exported as `puahost_sip_tcp_connections`.
    pub open_gauge: &'static std::sync::atomic::AtomicI64,
}

/// One listening address, as configured.
#[derive(Debug, Clone)]
pub struct Listener {
    pub proto: Proto,
    pub bound: SocketAddr,
    /// `host:port` to put in Via, Record-Route and Contact.
    pub advertised: (String, u16),
}

/// All transports.
pub struct Transports {
    pub udp: UdpTransport,
    pub tcp: TcpTransport,
    pub listeners: Vec<Listener>,
}

impl Transports {
    /// Binds every `listen` address (inside the runtime). Fails with the address that could not
    /// be bound.
    pub async fn bind(listen: &[ListenAddr], limits: StreamLimits, sink: Arc<dyn Sink>) -> anyhow::Result<Transports> {
        let mut listeners = Vec::new();
        let udp = UdpTransport::new();
        let tcp = TcpTransport::new(limits, sink.clone());
        for l in listen {
            let bound = match l.transport {
                ListenTransport::Udp => udp.bind(l.addr)?,
                ListenTransport::Tcp => tcp.listen(l.addr).await?,
            };
            let proto = match l.transport {
                ListenTransport::Udp => Proto::Udp,
                ListenTransport::Tcp => Proto::Tcp,
            };
            let advertised = l.advertise.clone().unwrap_or_else(|| (host_text(bound), bound.port()));
            tracing::info!(proto = proto.param(), %bound, advertised = %format!("{}:{}", advertised.0, advertised.1), "SIP listening");
            listeners.push(Listener { proto, bound, advertised });
        }
        Ok(Transports { udp, tcp, listeners })
    }

    /// Starts reading the UDP sockets with `per_socket` receiver threads each.
    pub fn start_receivers(&self, per_socket: usize, sink: Arc<dyn Sink>) -> std::io::Result<()> {
        self.udp.start_receivers(per_socket, sink)
    }

    /// Stops reading: UDP receivers finish what they are processing and exit.
    pub fn stop(&self) {
        self.udp.stop();
    }

    /// Sends `bytes` to `dest`. `on_error` runs (on an I/O thread) when the message could not
    /// be sent, e.g. a TCP connection could not be opened.
    pub fn send(&self, dest: &Dest, bytes: Bytes, on_error: Option<Box<dyn FnOnce() + Send>>) {
        let ok = match dest.proto {
            Proto::Udp => self.udp.send(dest.addr, bytes),
            Proto::Tcp => {
                self.tcp.send(dest, bytes, on_error);
                return;
            }
        };
        if !ok && let Some(f) = on_error {
            f();
        }
    }

    /// The listener to use for sending to `addr` over `proto` (same address family).
    pub fn listener_for(&self, proto: Proto, addr: &SocketAddr) -> Option<&Listener> {
        self.listeners
            .iter()
            .find(|l| l.proto == proto && l.bound.is_ipv4() == addr.is_ipv4())
            .or_else(|| self.listeners.iter().find(|l| l.proto == proto))
    }
}

/// An address as written in a URI or Via host: IPv6 in brackets.
pub fn host_text(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    }
}
