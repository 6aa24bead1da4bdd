//! RFC 3263 next-hop resolution for SIP.
//!
//! Given the host part of a SIP URI (or of an outbound proxy), its port, its `;transport=`
//! parameter and whether the scheme is `sips:`, [`Resolver::resolve`] returns the ordered list
//! of `(transport, socket address)` [`Target`]s the transaction layer should try, following
//! RFC 3263 §4.1 (transport selection) and §4.2 (port and address), with SRV records ordered
//! per RFC 2782.
//!
//! | request                         | lookups (RFC 3263)                              |
//! |---------------------------------|-------------------------------------------------|
//! | IP literal                      | none; port default 5060 (5061 for TLS)          |
//! | name with port                  | A/AAAA                                          |
//! | name with `;transport=`         | SRV for that transport, then A/AAAA             |
//! | name, no port, no transport     | NAPTR → SRV → A/AAAA, then SRV, then A/AAAA      |
//!
//! DNS queries go through [`hickory_resolver`] (tokio runtime), whose cache honours record
//! TTLs. Timeouts are short by default (2 s per try, 2 tries) because SIP has its own
//! transaction timers and the 32 s Timer B must not be eaten by DNS.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sip_resolve::ResolveError> {
//! use sip_resolve::{Request, Resolver};
//! let resolver = Resolver::from_system_conf()?;
//! let targets = resolver.resolve(&Request::new("example.com")).await?;
//! for t in &targets {
//!     println!("{} {}", t.transport, t.addr);
//! }
//! # Ok(()) }
//! ```
//!
//! With the `test-dns` feature, [`testing::DnsServer`] provides a tiny authoritative DNS
//! server for tests.
#![warn(missing_docs)]

mod error;
mod select;
#[cfg(feature = "test-dns")]
pub mod testing;

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::rdata::SRV;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use tracing::{debug, warn};

pub use error::ResolveError;
use select::{Picker, order_srv, select_naptr};

/// A SIP transport protocol that RFC 3263 can select.
///
/// `Tls` is TLS over TCP (`SIPS+D2T`, `_sips._tcp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP (`SIP+D2U`, `_sip._udp`).
    Udp,
    /// TCP (`SIP+D2T`, `_sip._tcp`).
    Tcp,
    /// TLS over TCP (`SIPS+D2T`, `_sips._tcp`).
    Tls,
}

impl Transport {
    /// The default port of the transport: 5061 for TLS, 5060 otherwise (RFC 3261 §19.1.2,
    /// RFC 3263 §4.2).
    pub const fn default_port(self) -> u16 {
        match self {
            Self::Tls => 5061,
            Self::Udp | Self::Tcp => 5060,
        }
    }

    /// The lowercase token used in the `;transport=` URI parameter.
    pub const fn as_param(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }

    /// Parses a `;transport=` parameter value (case-insensitive); `None` for transports this
    /// crate does not resolve (e.g. `sctp`, `ws`).
    pub fn from_param(value: &str) -> Option<Self> {
        [Self::Udp, Self::Tcp, Self::Tls].into_iter().find(|t| value.eq_ignore_ascii_case(t.as_param()))
    }

    /// The SRV service/protocol labels for this transport (RFC 3263 §4.1: TLS is
    /// `_sips._tcp`).
    const fn srv_prefix(self) -> &'static str {
        match self {
            Self::Udp => "_sip._udp",
            Self::Tcp => "_sip._tcp",
            Self::Tls => "_sips._tcp",
        }
    }
}

impl fmt::Display for Transport {
    /// Uppercase, as in a Via header (`UDP`, `TCP`, `TLS`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
        })
    }
}

/// One place to send the request: a transport and a socket address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// Transport to use.
    pub transport: Transport,
    /// Address and port to send to.
    pub addr: SocketAddr,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.transport, self.addr)
    }
}

/// What to resolve: the parts of a SIP URI that RFC 3263 looks at.
///
/// Callers pass the `maddr` parameter as `host` when present (RFC 3263 §4: the TARGET is
/// `maddr` if present, else the host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// Host name, IPv4 literal, or IPv6 literal with or without brackets.
    pub host: &'a str,
    /// Explicit port from the URI, if any.
    pub port: Option<u16>,
    /// The `;transport=` parameter, if any (see [`Transport::from_param`]).
    pub transport: Option<Transport>,
    /// True for a `sips:` URI: only TLS targets are acceptable.
    pub secure: bool,
}

impl<'a> Request<'a> {
    /// A `sip:` request for `host` with no port and no transport parameter.
    pub const fn new(host: &'a str) -> Self {
        Self { host, port: None, transport: None, secure: false }
    }
}

/// Preference between IPv4 and IPv6 addresses of one host (RFC 3263 does not order them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpPreference {
    /// A records only.
    Ipv4Only,
    /// AAAA records only.
    Ipv6Only,
    /// Both, IPv4 addresses first (default: SIP deployments are still mostly IPv4).
    #[default]
    Ipv4ThenIpv6,
    /// Both, IPv6 addresses first.
    Ipv6ThenIpv4,
}

/// How SRV records of equal priority are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrvSelection {
    /// RFC 2782 weighted random selection (default).
    #[default]
    Random,
    /// RFC 2782 weighted random selection from a seeded generator: reproducible, for tests.
    Seeded(u64),
    /// No randomness: highest weight first, ties by target name. For tests and for operators
    /// who want a stable primary.
    ByWeight,
}

/// Resolver settings. `Options::default()` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Time to wait for one DNS answer before retrying (default 2 s).
    pub timeout: Duration,
    /// Number of tries per DNS query, first one included (default 2; 0 counts as 1).
    pub attempts: usize,
    /// Upper bound for one whole [`Resolver::resolve`] call, all lookups included
    /// (default 10 s, well inside SIP's 32 s Timer B).
    pub deadline: Duration,
    /// Transports the caller can use, in the order the fallback SRV queries of RFC 3263 §4.1
    /// are listed in the result when there is no NAPTR record. NAPTR and SRV results for other
    /// transports are ignored, and an explicit `;transport=` outside this list is an error.
    /// Default: `[Tls, Tcp, Udp]`.
    pub transports: Vec<Transport>,
    /// IPv4/IPv6 preference (default: both, IPv4 first).
    pub ip_preference: IpPreference,
    /// SRV ordering within a priority (default: RFC 2782 weighted random).
    pub srv_selection: SrvSelection,
    /// Answer A/AAAA lookups from `/etc/hosts` first, like the system resolver (default true).
    pub use_hosts_file: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            attempts: 2,
            deadline: Duration::from_secs(10),
            transports: vec![Transport::Tls, Transport::Tcp, Transport::Udp],
            ip_preference: IpPreference::default(),
            srv_selection: SrvSelection::default(),
            use_hosts_file: true,
        }
    }
}

/// RFC 3263 resolver. Cheap to clone (clones share the DNS cache and connections).
#[derive(Clone)]
pub struct Resolver {
    dns: TokioResolver,
    options: Arc<Options>,
    picker: Arc<Picker>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver").field("options", &self.options).finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver using the name servers and search list of `/etc/resolv.conf`, with default
    /// [`Options`]. Timeouts and attempts come from [`Options`], not from `resolv.conf`.
    pub fn from_system_conf() -> Result<Self, ResolveError> {
        Self::from_system_conf_with(Options::default())
    }

    /// Like [`Resolver::from_system_conf`] with explicit options.
    pub fn from_system_conf_with(options: Options) -> Result<Self, ResolveError> {
        let (config, opts) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| ResolveError::Config(format!("cannot use /etc/resolv.conf: {e}")))?;
        Self::build(config, opts, options)
    }

    /// A resolver querying exactly these name servers (UDP, TCP on truncation), with no
    /// search list and default [`Options`]. Fails only when `servers` is empty.
    pub fn with_nameservers(servers: &[SocketAddr]) -> Result<Self, ResolveError> {
        Self::with_nameservers_and_options(servers, Options::default())
    }

    /// Like [`Resolver::with_nameservers`] with explicit options.
    pub fn with_nameservers_and_options(servers: &[SocketAddr], options: Options) -> Result<Self, ResolveError> {
        if servers.is_empty() {
            return Err(ResolveError::Config("no name server given".to_owned()));
        }
        let name_servers = servers
            .iter()
            .map(|s| {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.port();
                NameServerConfig::new(s.ip(), true, vec![udp, tcp])
            })
            .collect();
        Self::build(ResolverConfig::from_name_servers(name_servers), ResolverOpts::default(), options)
    }

    fn build(config: ResolverConfig, mut opts: ResolverOpts, options: Options) -> Result<Self, ResolveError> {
        opts.timeout = options.timeout;
        // hickory counts retries after the first try.
        opts.attempts = options.attempts.saturating_sub(1);
        opts.ip_strategy = match options.ip_preference {
            IpPreference::Ipv4Only => LookupIpStrategy::Ipv4Only,
            IpPreference::Ipv6Only => LookupIpStrategy::Ipv6Only,
            IpPreference::Ipv4ThenIpv6 => LookupIpStrategy::Ipv4AndIpv6,
            IpPreference::Ipv6ThenIpv4 => LookupIpStrategy::Ipv6AndIpv4,
        };
        opts.use_hosts_file = if options.use_hosts_file { ResolveHosts::Auto } else { ResolveHosts::Never };
        let dns = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| ResolveError::Config(e.to_string()))?;
        Ok(Self { dns, picker: Arc::new(Picker::new(options.srv_selection)), options: Arc::new(options) })
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Drops every cached DNS answer.
    pub fn clear_cache(&self) {
        self.dns.clear_cache();
    }

    /// Resolves `req` to the ordered list of targets to try (RFC 3263 §4). The list is never
    /// empty on success and contains no duplicates.
    pub async fn resolve(&self, req: &Request<'_>) -> Result<Vec<Target>, ResolveError> {
        let start = Instant::now();
        match tokio::time::timeout(self.options.deadline, self.resolve_inner(req, start)).await {
            Ok(result) => result,
            Err(_) => Err(ResolveError::Timeout {
                host: req.host.to_owned(),
                query: "deadline".to_owned(),
                after: start.elapsed(),
            }),
        }
    }

    async fn resolve_inner(&self, req: &Request<'_>, start: Instant) -> Result<Vec<Target>, ResolveError> {
        let mut ctx = Ctx { host: req.host, start, failure: None };
        let explicit = self.explicit_transport(req)?;

        // RFC 3263 §4.1/§4.2: a numeric TARGET is used as is, no DNS at all.
        let host = parse_host(req.host)?;
        let name = match host {
            Host::Ip(ip) => {
                let transport = explicit.unwrap_or_else(|| self.fallback_transport(req.secure));
                let port = req.port.unwrap_or(transport.default_port());
                return Ok(vec![Target { transport, addr: SocketAddr::new(ip, port) }]);
            }
            Host::Name(name) => name,
        };

        // RFC 3263 §4.2: an explicit port means A/AAAA only; §4.1: UDP for sip:, TLS for sips:
        // unless a transport parameter says otherwise.
        if let Some(port) = req.port {
            let transport = explicit.unwrap_or_else(|| self.fallback_transport(req.secure));
            return self.address_step(&mut ctx, &name, transport, port, "A/AAAA empty").await;
        }

        // RFC 3263 §4.1: NAPTR only when neither port nor transport is given.
        if explicit.is_none() {
            let targets = self.naptr_step(&mut ctx, &name, req.secure).await?;
            if !targets.is_empty() {
                return Ok(targets);
            }
        }

        // RFC 3263 §4.1: no (usable) NAPTR: SRV for the transport given, or for every supported
        // transport (only `_sips._tcp` for a sips: URI).
        let transports: Vec<Transport> = match explicit {
            Some(t) => vec![t],
            None => self.options.transports.iter().copied().filter(|t| !req.secure || *t == Transport::Tls).collect(),
        };
        let targets = self.srv_step(&mut ctx, &name, &transports).await?;
        if !targets.is_empty() {
            return Ok(targets);
        }

        // RFC 3263 §4.2: no SRV records: A/AAAA with the transport's default port.
        let transport = explicit.unwrap_or_else(|| self.fallback_transport(req.secure));
        let detail = if explicit.is_some() { "SRV/A/AAAA all empty" } else { "NAPTR/SRV/A/AAAA all empty" };
        self.address_step(&mut ctx, &name, transport, transport.default_port(), detail).await
    }

    /// The transport fixed by the request, if any, checked against the URI scheme and the
    /// configured transports.
    fn explicit_transport(&self, req: &Request<'_>) -> Result<Option<Transport>, ResolveError> {
        let invalid = |reason: String| ResolveError::InvalidRequest { host: req.host.to_owned(), reason };
        let transport = match (req.transport, req.secure) {
            // RFC 3261 §26.2.1: sips: requires TLS; there is no DTLS transport here.
            (Some(Transport::Udp), true) => return Err(invalid("a sips: URI cannot use transport=udp".to_owned())),
            // RFC 3261 §26.2.2: sips: with transport=tcp means TLS over TCP.
            (Some(Transport::Tcp), true) => Some(Transport::Tls),
            (t, _) => t,
        };
        if let Some(t) = transport
            && !self.options.transports.contains(&t)
        {
            return Err(invalid(format!("transport {t} is not enabled")));
        }
        if req.secure && !self.options.transports.contains(&Transport::Tls) {
            return Err(invalid("a sips: URI needs TLS, which is not enabled".to_owned()));
        }
        Ok(transport)
    }

    /// RFC 3263 §4.1: without NAPTR/SRV, UDP for sip: (TCP when UDP is disabled), TLS for sips:.
    fn fallback_transport(&self, secure: bool) -> Transport {
        if secure {
            return Transport::Tls;
        }
        let enabled = &self.options.transports;
        [Transport::Udp, Transport::Tcp, Transport::Tls]
            .into_iter()
            .find(|t| enabled.contains(t))
            .unwrap_or(Transport::Udp)
    }

    /// RFC 3263 §4.1 NAPTR step. Returns no targets when there is no usable NAPTR record or
    /// the SRV records it points to lead nowhere, so the caller falls back to plain SRV.
    async fn naptr_step(&self, ctx: &mut Ctx<'_>, name: &Name, secure: bool) -> Result<Vec<Target>, ResolveError> {
        let lookup = match self.lookup(name, RecordType::NAPTR).await {
            Ok(lookup) => lookup,
            Err(failure) => {
                ctx.absorb(failure)?;
                return Ok(Vec::new());
            }
        };
        let records = lookup.answers().iter().filter_map(|r| match &r.data {
            RData::NAPTR(n) => Some(n),
            _ => None,
        });
        let choices = select_naptr(records, secure, &self.options.transports);
        if choices.is_empty() {
            debug!(%name, "no usable NAPTR record, trying SRV");
            return Ok(Vec::new());
        }
        let sets = join_all(choices.iter().map(|c| self.srv_lookup(&c.srv_name))).await;
        let mut found = Vec::new();
        for (choice, set) in choices.iter().zip(sets) {
            match set {
                Ok(set) if set.has_targets() => found.push((choice.transport, set)),
                Ok(_) => debug!(srv = %choice.srv_name, "NAPTR replacement has no usable SRV record"),
                Err(failure) => ctx.absorb(failure)?,
            }
        }
        self.expand(ctx, found).await
    }

    /// RFC 3263 §4.1 SRV step (no NAPTR, or a transport parameter without port).
    async fn srv_step(
        &self,
        ctx: &mut Ctx<'_>,
        name: &Name,
        transports: &[Transport],
    ) -> Result<Vec<Target>, ResolveError> {
        let mut names = Vec::with_capacity(transports.len());
        for t in transports {
            let srv_name =
                Name::from_ascii(t.srv_prefix()).and_then(|prefix| prefix.append_name(name)).map_err(|e| {
                    ResolveError::InvalidHost {
                        host: ctx.host.to_owned(),
                        reason: format!("cannot form SRV name: {e}"),
                    }
                })?;
            names.push(srv_name);
        }
        let sets = join_all(names.iter().map(|n| self.srv_lookup(n))).await;
        let mut found = Vec::new();
        let mut unavailable = false;
        let mut timeout = None;
        for (transport, set) in transports.iter().zip(sets) {
            match set {
                Ok(set) if set.has_targets() => found.push((*transport, set)),
                Ok(set) => unavailable |= !set.records.is_empty(),
                // Keep going with the other transports; report the timeout only if nothing
                // else answered.
                Err(Failure::Timeout(query)) => timeout = Some(query),
                Err(failure) => ctx.absorb(failure)?,
            }
        }
        if found.is_empty() {
            if let Some(query) = timeout {
                return Err(ctx.timeout(query));
            }
            // RFC 2782: target "." means "decidedly not available"; RFC 3263 §4.2 only falls
            // back to A/AAAA when no SRV record was found at all.
            if unavailable {
                return Err(ResolveError::Unavailable { host: ctx.host.to_owned() });
            }
        }
        self.expand(ctx, found).await
    }

    /// Orders each SRV set (RFC 2782) and expands its targets to addresses, using the
    /// additional section when it has them, else A/AAAA lookups (run concurrently).
    async fn expand(&self, ctx: &mut Ctx<'_>, sets: Vec<(Transport, SrvSet)>) -> Result<Vec<Target>, ResolveError> {
        if sets.is_empty() {
            return Ok(Vec::new());
        }
        let mut entries: Vec<(Transport, SRV)> = Vec::new();
        for (transport, set) in &sets {
            entries.extend(order_srv(&set.records, &self.picker).into_iter().map(|r| (*transport, r)));
        }

        // Addresses per target name: first from the additional sections, else look them up.
        let mut known: Vec<(Name, Vec<IpAddr>)> = Vec::new();
        for (_, srv) in &entries {
            if known.iter().any(|(n, _)| *n == srv.target) {
                continue;
            }
            let glue: Vec<IpAddr> = sets
                .iter()
                .flat_map(|(_, s)| s.glue.iter())
                .filter(|(n, _)| *n == srv.target)
                .map(|(_, ip)| *ip)
                .collect();
            let glue = self.filter_family(glue);
            if !glue.is_empty() {
                known.push((srv.target.clone(), glue));
            }
        }
        let missing: Vec<Name> = {
            let mut seen = HashSet::new();
            entries
                .iter()
                .map(|(_, srv)| srv.target.clone())
                .filter(|n| !known.iter().any(|(k, _)| k == n) && seen.insert(n.clone()))
                .collect()
        };
        let looked_up = join_all(missing.iter().map(|n| self.lookup_addrs(n))).await;
        let mut last_failure = None;
        for (target, result) in missing.into_iter().zip(looked_up) {
            match result {
                Ok(ips) => known.push((target, ips)),
                Err(failure) => {
                    warn!(target = %target, "SRV target does not resolve: {}", failure.describe());
                    last_failure = Some(failure);
                }
            }
        }

        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for (transport, srv) in &entries {
            let Some((_, ips)) = known.iter().find(|(n, _)| *n == srv.target) else { continue };
            for ip in ips {
                let target = Target { transport: *transport, addr: SocketAddr::new(*ip, srv.port) };
                if seen.insert(target) {
                    out.push(target);
                }
            }
        }
        if out.is_empty() {
            // SRV records exist, so RFC 3263 §4.2 does not fall back to the domain's own
            // A/AAAA records: report why the targets failed.
            return Err(match last_failure {
                Some(Failure::Timeout(query)) => ctx.timeout(query),
                Some(Failure::Other(query, e)) => ctx.dns(query, e),
                _ => ResolveError::NoRecords {
                    host: ctx.host.to_owned(),
                    detail: "SRV targets have no A/AAAA records".to_owned(),
                },
            });
        }
        Ok(out)
    }

    /// RFC 3263 §4.2 A/AAAA step for the domain itself.
    async fn address_step(
        &self,
        ctx: &mut Ctx<'_>,
        name: &Name,
        transport: Transport,
        port: u16,
        detail: &str,
    ) -> Result<Vec<Target>, ResolveError> {
        match self.lookup_addrs(name).await {
            Ok(ips) => Ok(ips.into_iter().map(|ip| Target { transport, addr: SocketAddr::new(ip, port) }).collect()),
            Err(Failure::Empty { nx: true }) => Err(ResolveError::NxDomain { host: ctx.host.to_owned() }),
            // An earlier failed lookup (e.g. SERVFAIL on SRV) says more than "empty".
            Err(Failure::Empty { nx: false }) => Err(ctx
                .failure
                .take()
                .unwrap_or_else(|| ResolveError::NoRecords { host: ctx.host.to_owned(), detail: detail.to_owned() })),
            Err(Failure::Timeout(query)) => Err(ctx.timeout(query)),
            Err(Failure::Other(query, e)) => Err(ctx.dns(query, e)),
        }
    }

    /// One DNS query, with errors sorted into what RFC 3263 processing needs to know.
    async fn lookup(&self, name: &Name, rtype: RecordType) -> Result<Lookup, Failure> {
        match self.dns.lookup(name.clone(), rtype).await {
            Ok(lookup) if lookup.answers().iter().any(|r| r.record_type() == rtype) => Ok(lookup),
            Ok(_) => Err(Failure::Empty { nx: false }),
            Err(e) => Err(Failure::from_net(format!("{rtype} {name}"), e)),
        }
    }

    async fn srv_lookup(&self, name: &Name) -> Result<SrvSet, Failure> {
        let lookup = match self.lookup(name, RecordType::SRV).await {
            Ok(lookup) => lookup,
            Err(Failure::Empty { .. }) => return Ok(SrvSet::default()),
            Err(failure) => return Err(failure),
        };
        let records = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(srv) => Some(srv.clone()),
                _ => None,
            })
            .collect();
        // RFC 2782 / RFC 3263 §4.2: servers may include the targets' addresses in the
        // additional section, saving a round trip.
        let glue = lookup
            .additionals()
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some((r.name.clone(), IpAddr::V4(a.0))),
                RData::AAAA(a) => Some((r.name.clone(), IpAddr::V6(a.0))),
                _ => None,
            })
            .collect();
        Ok(SrvSet { records, glue })
    }

    /// A/AAAA for one name, per [`IpPreference`], deduplicated.
    async fn lookup_addrs(&self, name: &Name) -> Result<Vec<IpAddr>, Failure> {
        match self.dns.lookup_ip(name.clone()).await {
            Ok(lookup) => {
                let mut seen = HashSet::new();
                let ips: Vec<IpAddr> = lookup.iter().filter(|ip| seen.insert(*ip)).collect();
                let ips = self.filter_family(ips);
                if ips.is_empty() { Err(Failure::Empty { nx: false }) } else { Ok(ips) }
            }
            Err(e) => Err(Failure::from_net(format!("A/AAAA {name}"), e)),
        }
    }

    /// Applies [`IpPreference`] to addresses that did not come through `lookup_ip` (glue).
    fn filter_family(&self, mut ips: Vec<IpAddr>) -> Vec<IpAddr> {
        match self.options.ip_preference {
            IpPreference::Ipv4Only => ips.retain(IpAddr::is_ipv4),
            IpPreference::Ipv6Only => ips.retain(IpAddr::is_ipv6),
            IpPreference::Ipv4ThenIpv6 => ips.sort_by_key(IpAddr::is_ipv6),
            IpPreference::Ipv6ThenIpv4 => ips.sort_by_key(IpAddr::is_ipv4),
        }
        ips
    }
}

/// The SRV records of one owner name and the addresses found in the additional section.
#[derive(Debug, Default)]
struct SrvSet {
    records: Vec<SRV>,
    glue: Vec<(Name, IpAddr)>,
}

impl SrvSet {
    fn has_targets(&self) -> bool {
        self.records.iter().any(|r| !r.target.is_root())
    }
}

/// Outcome of a failed lookup, as far as RFC 3263 processing is concerned.
#[derive(Debug)]
enum Failure {
    /// NXDOMAIN (`nx`) or NODATA: move on to the next step.
    Empty { nx: bool },
    /// No answer in time: give up, later steps would most likely time out too.
    Timeout(String),
    /// SERVFAIL, REFUSED, network errors: move on, report if nothing else works.
    Other(String, NetError),
}

impl Failure {
    fn from_net(query: String, e: NetError) -> Self {
        if e.is_no_records_found() {
            return Self::Empty { nx: e.is_nx_domain() };
        }
        match &e {
            NetError::Timeout => Self::Timeout(query),
            NetError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => Self::Timeout(query),
            _ => Self::Other(query, e),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Empty { nx: true } => "NXDOMAIN".to_owned(),
            Self::Empty { nx: false } => "no records".to_owned(),
            Self::Timeout(query) => format!("{query}: timeout"),
            Self::Other(query, e) => format!("{query}: {e}"),
        }
    }
}

/// Per-call state: the host for error messages, the start time, and the first non-fatal
/// failure (reported if nothing else works).
struct Ctx<'a> {
    host: &'a str,
    start: Instant,
    failure: Option<ResolveError>,
}

impl Ctx<'_> {
    fn timeout(&self, query: String) -> ResolveError {
        ResolveError::Timeout { host: self.host.to_owned(), query, after: self.start.elapsed() }
    }

    fn dns(&self, query: String, e: NetError) -> ResolveError {
        ResolveError::Dns { host: self.host.to_owned(), query, source: Arc::new(e) }
    }

    /// Handles the failure of a NAPTR/SRV lookup: empty answers and server errors let
    /// resolution continue (some middleboxes answer SERVFAIL to NAPTR), a timeout stops it.
    fn absorb(&mut self, failure: Failure) -> Result<(), ResolveError> {
        match failure {
            Failure::Empty { .. } => Ok(()),
            Failure::Timeout(query) => Err(self.timeout(query)),
            Failure::Other(query, e) => {
                warn!(host = self.host, %query, "DNS lookup failed, continuing: {e}");
                if self.failure.is_none() {
                    self.failure = Some(self.dns(query, e));
                }
                Ok(())
            }
        }
    }
}

enum Host {
    Ip(IpAddr),
    Name(Name),
}

/// Splits IP literals from names (RFC 3261 §25.1 `host`), accepting IPv6 with or without
/// brackets.
fn parse_host(host: &str) -> Result<Host, ResolveError> {
    let invalid = |reason: &str| ResolveError::InvalidHost { host: host.to_owned(), reason: reason.to_owned() };
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(|| invalid("unbalanced '['"))?;
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(ip) => Ok(Host::Ip(IpAddr::V6(ip))),
            Err(_) => Err(invalid("not an IPv6 address inside brackets")),
        };
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    if host.is_empty() {
        return Err(invalid("empty host"));
    }
    if host.starts_with('.') || host.contains("..") {
        return Err(invalid("empty label"));
    }
    if !host.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_')) {
        return Err(invalid("not a domain name or IP address"));
    }
    // from_utf8 applies IDNA (internationalized names become xn-- labels).
    let name = Name::from_utf8(host).map_err(|e| invalid(&e.to_string()))?;
    Ok(Host::Name(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_parsing() {
        assert!(matches!(parse_host("192.0.2.1"), Ok(Host::Ip(IpAddr::V4(_)))));
        assert!(matches!(parse_host("[2001:db8::1]"), Ok(Host::Ip(IpAddr::V6(_)))));
        assert!(matches!(parse_host("2001:db8::1"), Ok(Host::Ip(IpAddr::V6(_)))));
        assert!(matches!(parse_host("example.com"), Ok(Host::Name(_))));
        assert!(matches!(parse_host("example.com."), Ok(Host::Name(n)) if n.is_fqdn()));
        assert!(matches!(parse_host("bücher.example"), Ok(Host::Name(n)) if n.to_ascii().starts_with("xn--")));
        for bad in ["", "[192.0.2.1]", "[::1", "exa mple.com", "a..b", "host:5060", "[foo]"] {
            assert!(matches!(parse_host(bad), Err(ResolveError::InvalidHost { .. })), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn transport_params() {
        assert_eq!(Transport::from_param("TLS"), Some(Transport::Tls));
        assert_eq!(Transport::from_param("udp"), Some(Transport::Udp));
        assert_eq!(Transport::from_param("sctp"), None);
        assert_eq!(Transport::Tls.default_port(), 5061);
        assert_eq!(Transport::Udp.to_string(), "UDP");
    }
}
