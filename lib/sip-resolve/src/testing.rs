//! A tiny authoritative DNS server for tests (feature `test-dns`).
//!
//! It serves a fixed zone from a table of [`ZoneRecord`]s on `127.0.0.1`, UDP and TCP on the
//! same free port, in a thread of its own (so it works from sync tests and from any tokio
//! runtime flavour), and stops when the [`DnsServer`] is dropped. Every query is logged for
//! assertions such as "no DNS query at all" or "A only".
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sip_resolve::testing::{DnsServer, ZoneRecord};
//! use sip_resolve::{Request, Resolver};
//! let dns = DnsServer::start(vec![
//!     ZoneRecord::srv("_sip._udp.example.com", 10, 0, 5070, "sip1.example.com"),
//!     ZoneRecord::a("sip1.example.com", [192, 0, 2, 1].into()),
//! ])?;
//! let resolver = Resolver::with_nameservers(&[dns.addr])?;
//! let targets = resolver.resolve(&Request::new("example.com")).await?;
//! # Ok(()) }
//! ```
//!
//! Semantics: names are case-insensitive; a CNAME at the query name is followed within the
//! zone; a name that owns records of other types, or has descendants, answers NOERROR with no
//! data, any other name NXDOMAIN. SRV answers carry the targets' A/AAAA records in the
//! additional section unless [`ServerConfig::additionals`] is off. UDP answers longer than
//! the client's payload size (512 without EDNS) or [`ServerConfig::max_udp_payload`] are sent
//! truncated (TC), so the client retries over TCP.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use hickory_resolver::proto::op::{Edns, Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME, NAPTR, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// Record data of a [`ZoneRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rdata {
    /// IPv4 address.
    A(Ipv4Addr),
    /// IPv6 address.
    Aaaa(Ipv6Addr),
    /// Alias to another name.
    Cname(String),
    /// RFC 2782 service record.
    Srv {
        /// Lower is tried first.
        priority: u16,
        /// Relative weight within a priority.
        weight: u16,
        /// Port of the service.
        port: u16,
        /// Host providing the service (`.` for "not available").
        target: String,
    },
    /// RFC 3403 naming authority pointer.
    Naptr {
        /// Processing order, lower first.
        order: u16,
        /// Preference within an order, lower first.
        preference: u16,
        /// Flags, `s` for SIP.
        flags: String,
        /// Service, e.g. `SIP+D2U`.
        services: String,
        /// Substitution expression (empty for SIP).
        regexp: String,
        /// Next name to query (the SRV owner for SIP).
        replacement: String,
    },
    /// Not a record: every query for this owner name is answered SERVFAIL.
    ServFail,
}

/// One entry of the zone served by [`DnsServer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneRecord {
    /// Owner name, with or without the trailing dot (always absolute).
    pub name: String,
    /// Time to live in seconds (60 by default).
    pub ttl: u32,
    /// The data.
    pub data: Rdata,
}

impl ZoneRecord {
    const DEFAULT_TTL: u32 = 60;

    fn new(name: &str, data: Rdata) -> Self {
        Self { name: name.to_owned(), ttl: Self::DEFAULT_TTL, data }
    }

    /// An A record.
    pub fn a(name: &str, addr: Ipv4Addr) -> Self {
        Self::new(name, Rdata::A(addr))
    }

    /// An AAAA record.
    pub fn aaaa(name: &str, addr: Ipv6Addr) -> Self {
        Self::new(name, Rdata::Aaaa(addr))
    }

    /// A CNAME record.
    pub fn cname(name: &str, target: &str) -> Self {
        Self::new(name, Rdata::Cname(target.to_owned()))
    }

    /// An SRV record.
    pub fn srv(name: &str, priority: u16, weight: u16, port: u16, target: &str) -> Self {
        Self::new(name, Rdata::Srv { priority, weight, port, target: target.to_owned() })
    }

    /// A SIP NAPTR record: flags `s`, empty regexp, as RFC 3263 §4.1 uses them.
    pub fn naptr(name: &str, order: u16, preference: u16, services: &str, replacement: &str) -> Self {
        Self::new(
            name,
            Rdata::Naptr {
                order,
                preference,
                flags: "s".to_owned(),
                services: services.to_owned(),
                regexp: String::new(),
                replacement: replacement.to_owned(),
            },
        )
    }

    /// Makes every query for `name` fail with SERVFAIL.
    pub fn servfail(name: &str) -> Self {
        Self::new(name, Rdata::ServFail)
    }

    /// Same record with another TTL.
    pub fn with_ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }
}

/// Behaviour of a [`DnsServer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Put the A/AAAA records of SRV targets in the additional section (default true).
    pub additionals: bool,
    /// Answer at all (default true). When false, queries are logged and dropped, and TCP
    /// connections are accepted but never answered: a server that times out.
    pub respond: bool,
    /// Largest UDP answer the server sends before truncating (default 1232, the EDNS
    /// flag-day value); the client's own limit applies too.
    pub max_udp_payload: u16,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { additionals: true, respond: true, max_udp_payload: 1232 }
    }
}

/// A running test DNS server. Stops (and joins its thread) on drop.
#[derive(Debug)]
pub struct DnsServer {
    /// Address to give the resolver: `127.0.0.1:port`, UDP and TCP.
    pub addr: SocketAddr,
    queries: Arc<Mutex<Vec<String>>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    /// Starts a server answering from `records` with the default [`ServerConfig`].
    pub fn start(records: Vec<ZoneRecord>) -> io::Result<Self> {
        Self::start_with(records, ServerConfig::default())
    }

    /// Starts a server that never answers (queries are still logged).
    pub fn start_unresponsive() -> io::Result<Self> {
        Self::start_with(Vec::new(), ServerConfig { respond: false, ..ServerConfig::default() })
    }

    /// Starts a server with an explicit configuration. Fails on an invalid name in
    /// `records` or when no port is free.
    pub fn start_with(records: Vec<ZoneRecord>, config: ServerConfig) -> io::Result<Self> {
        let zone = Arc::new(Zone::build(records, config)?);
        let (udp, tcp) = bind_pair()?;
        let addr = udp.local_addr()?;
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        let queries = Arc::new(Mutex::new(Vec::new()));
        let (shutdown, stop) = oneshot::channel();
        let log = Arc::clone(&queries);
        let thread = std::thread::Builder::new().name(format!("test-dns-{}", addr.port())).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("test DNS server: cannot start runtime: {e}");
                    return;
                }
            };
            runtime.block_on(serve(udp, tcp, zone, log, stop));
        })?;
        Ok(Self { addr, queries, shutdown: Some(shutdown), thread: Some(thread) })
    }

    /// Queries received so far, in order, as `"TYPE name."` (lowercase name), e.g.
    /// `"NAPTR example.com."`. A query retried over TCP appears twice.
    pub fn queries(&self) -> Vec<String> {
        self.queries.lock().map(|q| q.clone()).unwrap_or_default()
    }

    /// Forgets the logged queries.
    pub fn clear_queries(&self) {
        if let Ok(mut q) = self.queries.lock() {
            q.clear();
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Binds UDP and TCP on the same free loopback port (the resolver is given one address).
fn bind_pair() -> io::Result<(UdpSocket, TcpListener)> {
    let mut last = io::Error::new(io::ErrorKind::AddrInUse, "no free port");
    for _ in 0..50 {
        let udp = UdpSocket::bind(("127.0.0.1", 0))?;
        let addr = udp.local_addr()?;
        match TcpListener::bind(addr) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    zone: Arc<Zone>,
    log: Arc<Mutex<Vec<String>>>,
    mut stop: oneshot::Receiver<()>,
) {
    let (udp, tcp) = match (tokio::net::UdpSocket::from_std(udp), tokio::net::TcpListener::from_std(tcp)) {
        (Ok(u), Ok(t)) => (u, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("test DNS server: {e}");
            return;
        }
    };
    let mut buf = vec![0u8; 65535];
    loop {
        tokio::select! {
            _ = &mut stop => return,
            received = udp.recv_from(&mut buf) => {
                let Ok((len, peer)) = received else { continue };
                if let Some(answer) = zone.answer(&buf[..len], Some(&log), true) {
                    let _ = udp.send_to(&answer, peer).await;
                }
            }
            accepted = tcp.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                tokio::spawn(serve_tcp(stream, Arc::clone(&zone), Arc::clone(&log)));
            }
        }
    }
}

/// RFC 1035 §4.2.2: two-byte length prefix per message.
async fn serve_tcp(mut stream: tokio::net::TcpStream, zone: Arc<Zone>, log: Arc<Mutex<Vec<String>>>) {
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut msg).await.is_err() {
            return;
        }
        let Some(answer) = zone.answer(&msg, Some(&log), false) else { continue };
        let Ok(answer_len) = u16::try_from(answer.len()) else { continue };
        if stream.write_all(&answer_len.to_be_bytes()).await.is_err() || stream.write_all(&answer).await.is_err() {
            return;
        }
    }
}

enum Entry {
    Record(Box<Record>),
    ServFail,
}

struct Zone {
    entries: Vec<(String, Entry)>,
    config: ServerConfig,
}

/// Lowercase absolute name with trailing dot: the zone's lookup key.
fn key(name: &str) -> String {
    let mut k = name.trim_end_matches('.').to_ascii_lowercase();
    k.push('.');
    k
}

fn parse_name(name: &str) -> io::Result<Name> {
    Name::from_ascii(key(name))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("invalid name {name:?}: {e}")))
}

impl Zone {
    fn build(records: Vec<ZoneRecord>, config: ServerConfig) -> io::Result<Self> {
        let mut entries = Vec::with_capacity(records.len());
        for r in records {
            let owner = parse_name(&r.name)?;
            let data = match r.data {
                Rdata::A(ip) => RData::A(A(ip)),
                Rdata::Aaaa(ip) => RData::AAAA(AAAA(ip)),
                Rdata::Cname(target) => RData::CNAME(CNAME(parse_name(&target)?)),
                Rdata::Srv { priority, weight, port, target } => {
                    let target = if target == "." { Name::root() } else { parse_name(&target)? };
                    RData::SRV(SRV::new(priority, weight, port, target))
                }
                Rdata::Naptr { order, preference, flags, services, regexp, replacement } => {
                    let replacement = if replacement == "." { Name::root() } else { parse_name(&replacement)? };
                    RData::NAPTR(NAPTR::new(
                        order,
                        preference,
                        flags.into_bytes().into(),
                        services.into_bytes().into(),
                        regexp.into_bytes().into(),
                        replacement,
                    ))
                }
                Rdata::ServFail => {
                    entries.push((key(&r.name), Entry::ServFail));
                    continue;
                }
            };
            entries.push((key(&r.name), Entry::Record(Box::new(Record::from_rdata(owner, r.ttl, data)))));
        }
        Ok(Self { entries, config })
    }

    fn records(&self, owner: &str, rtype: RecordType) -> impl Iterator<Item = &Record> {
        self.entries.iter().filter_map(move |(o, e)| match e {
            Entry::Record(r) if o == owner && r.record_type() == rtype => Some(&**r),
            _ => None,
        })
    }

    /// Builds the wire answer to one query message; `None` when the packet is not a query
    /// or the server is configured not to respond.
    fn answer(&self, packet: &[u8], log: Option<&Mutex<Vec<String>>>, udp: bool) -> Option<Vec<u8>> {
        let request = Message::from_vec(packet).ok()?;
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let query = request.queries.first()?.clone();
        let qname = key(&query.name().to_ascii());
        let qtype = query.query_type();
        if let Some(log) = log
            && let Ok(mut log) = log.lock()
        {
            log.push(format!("{qtype} {qname}"));
        }
        if !self.config.respond {
            return None;
        }

        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.metadata.authoritative = true;
        response.add_query(query);
        // RFC 6891 §6.1.1: answer EDNS with EDNS.
        let client_payload = match &request.edns {
            Some(edns) => {
                let mut ours = Edns::new();
                ours.set_max_payload(self.config.max_udp_payload.max(512));
                response.set_edns(ours);
                edns.max_payload().max(512)
            }
            None => 512,
        };

        if self.entries.iter().any(|(o, e)| *o == qname && matches!(e, Entry::ServFail)) {
            response.metadata.response_code = ResponseCode::ServFail;
            return response.to_vec().ok();
        }

        // Follow CNAMEs inside the zone (RFC 1034 §4.3.2 step 3a), bounded against loops.
        let mut owner = qname.clone();
        for _ in 0..8 {
            let found: Vec<Record> = self.records(&owner, qtype).cloned().collect();
            if !found.is_empty() {
                response.add_answers(found);
                break;
            }
            if qtype == RecordType::CNAME {
                break;
            }
            let Some(cname) = self.records(&owner, RecordType::CNAME).next() else { break };
            response.add_answer(cname.clone());
            owner = match &cname.data {
                RData::CNAME(CNAME(target)) => key(&target.to_ascii()),
                _ => break,
            };
        }

        if response.answers.is_empty() {
            // RFC 8020: a name with descendants exists (empty non-terminal), so NODATA.
            let suffix = format!(".{qname}");
            let exists = self.entries.iter().any(|(o, _)| *o == qname || o.ends_with(&suffix));
            if !exists {
                response.metadata.response_code = ResponseCode::NXDomain;
            }
        } else if self.config.additionals {
            let targets: Vec<String> = response
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(srv) if !srv.target.is_root() => Some(key(&srv.target.to_ascii())),
                    _ => None,
                })
                .collect();
            for target in targets {
                let glue: Vec<Record> = self
                    .records(&target, RecordType::A)
                    .chain(self.records(&target, RecordType::AAAA))
                    .cloned()
                    .collect();
                response.add_additionals(glue);
            }
        }

        let bytes = response.to_vec().ok()?;
        let limit = usize::from(client_payload.min(self.config.max_udp_payload.max(512)));
        if udp && bytes.len() > limit {
            // RFC 1035 §4.2.1 / RFC 7766: truncate and let the client retry over TCP.
            return response.truncate().to_vec().ok();
        }
        Some(bytes)
    }
}
