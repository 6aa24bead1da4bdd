//! RFC 3263 resolution against the crate's own test DNS server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use sip_resolve::testing::{DnsServer, ServerConfig, ZoneRecord};
use sip_resolve::{IpPreference, Options, Request, ResolveError, Resolver, SrvSelection, Target, Transport};

const V4_1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const V4_2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const V4_3: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
const V4_4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 4);
const V6_1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

fn options() -> Options {
    Options {
        timeout: Duration::from_secs(1),
        srv_selection: SrvSelection::ByWeight,
        use_hosts_file: false,
        ..Options::default()
    }
}

fn resolver(dns: &DnsServer) -> Resolver {
    Resolver::with_nameservers_and_options(&[dns.addr], options()).unwrap()
}

fn t(transport: Transport, ip: impl Into<IpAddr>, port: u16) -> Target {
    Target { transport, addr: SocketAddr::new(ip.into(), port) }
}

fn req(host: &str) -> Request<'_> {
    Request::new(host)
}

/// A zone with every kind of record for example.com, so tests can check that the resolver
/// only asks what RFC 3263 tells it to.
fn full_zone() -> Vec<ZoneRecord> {
    vec![
        ZoneRecord::naptr("example.com", 10, 10, "SIP+D2T", "_sip._tcp.example.com"),
        ZoneRecord::naptr("example.com", 20, 10, "SIP+D2U", "_sip._udp.example.com"),
        ZoneRecord::srv("_sip._tcp.example.com", 10, 10, 5062, "tcp1.example.com"),
        ZoneRecord::srv("_sip._udp.example.com", 10, 10, 5064, "udp1.example.com"),
        ZoneRecord::a("tcp1.example.com", V4_1),
        ZoneRecord::aaaa("tcp1.example.com", V6_1),
        ZoneRecord::a("udp1.example.com", V4_2),
        ZoneRecord::a("example.com", V4_3),
        ZoneRecord::aaaa("example.com", V6_1),
    ]
}

#[tokio::test]
async fn ipv4_literal_needs_no_dns() {
    let dns = DnsServer::start(full_zone()).unwrap();
    let r = resolver(&dns);
    assert_eq!(r.resolve(&req("192.0.2.7")).await.unwrap(), [t(Transport::Udp, [192, 0, 2, 7], 5060)]);
    let with_port = Request { port: Some(5080), transport: Some(Transport::Tcp), ..req("192.0.2.7") };
    assert_eq!(r.resolve(&with_port).await.unwrap(), [t(Transport::Tcp, [192, 0, 2, 7], 5080)]);
    let tls = Request { transport: Some(Transport::Tls), ..req("192.0.2.7") };
    assert_eq!(r.resolve(&tls).await.unwrap(), [t(Transport::Tls, [192, 0, 2, 7], 5061)]);
    assert!(dns.queries().is_empty(), "unexpected queries {:?}", dns.queries());
}

#[tokio::test]
async fn ipv6_literal_with_or_without_brackets_needs_no_dns() {
    let dns = DnsServer::start(full_zone()).unwrap();
    let r = resolver(&dns);
    let expected = [t(Transport::Udp, V6_1, 5060)];
    assert_eq!(r.resolve(&req("[2001:db8::1]")).await.unwrap(), expected);
    assert_eq!(r.resolve(&req("2001:db8::1")).await.unwrap(), expected);
    let sips = Request { secure: true, ..req("[2001:db8::1]") };
    assert_eq!(r.resolve(&sips).await.unwrap(), [t(Transport::Tls, V6_1, 5061)]);
    assert!(dns.queries().is_empty(), "unexpected queries {:?}", dns.queries());
}

#[tokio::test]
async fn host_with_port_uses_a_aaaa_only() {
    let dns = DnsServer::start(full_zone()).unwrap();
    let r = resolver(&dns);
    let request = Request { port: Some(5070), ..req("example.com") };
    assert_eq!(r.resolve(&request).await.unwrap(), [t(Transport::Udp, V4_3, 5070), t(Transport::Udp, V6_1, 5070)]);
    let mut queries = dns.queries();
    queries.sort();
    assert_eq!(queries, ["A example.com.", "AAAA example.com."]);

    // sips: with a port: TLS at that port.
    let sips = Request { port: Some(5071), secure: true, ..req("example.com") };
    assert_eq!(r.resolve(&sips).await.unwrap(), [t(Transport::Tls, V4_3, 5071), t(Transport::Tls, V6_1, 5071)]);
}

#[tokio::test]
async fn naptr_srv_a_chain_ordered_by_naptr_order() {
    let dns = DnsServer::start(full_zone()).unwrap();
    let r = resolver(&dns);
    assert_eq!(
        r.resolve(&req("example.com")).await.unwrap(),
        [t(Transport::Tcp, V4_1, 5062), t(Transport::Tcp, V6_1, 5062), t(Transport::Udp, V4_2, 5064)]
    );
    // Addresses came from the additional section: no A/AAAA query for the targets, and
    // no fallback SRV/A queries for the domain.
    let mut queries = dns.queries();
    queries.sort();
    assert_eq!(queries, ["NAPTR example.com.", "SRV _sip._tcp.example.com.", "SRV _sip._udp.example.com."]);
}

#[tokio::test]
async fn naptr_order_beats_server_order_and_preference_breaks_ties() {
    let dns = DnsServer::start(vec![
        ZoneRecord::naptr("example.net", 50, 50, "SIP+D2U", "_sip._udp.example.net"),
        ZoneRecord::naptr("example.net", 10, 90, "SIP+D2T", "_sip._tcp.example.net"),
        ZoneRecord::naptr("example.net", 10, 20, "SIPS+D2T", "_sips._tcp.example.net"),
        ZoneRecord::srv("_sip._udp.example.net", 0, 0, 5060, "a.example.net"),
        ZoneRecord::srv("_sip._tcp.example.net", 0, 0, 5060, "a.example.net"),
        ZoneRecord::srv("_sips._tcp.example.net", 0, 0, 5061, "a.example.net"),
        ZoneRecord::a("a.example.net", V4_1),
    ])
    .unwrap();
    let got = resolver(&dns).resolve(&req("example.net")).await.unwrap();
    assert_eq!(got, [t(Transport::Tls, V4_1, 5061), t(Transport::Tcp, V4_1, 5060), t(Transport::Udp, V4_1, 5060)]);
}

#[tokio::test]
async fn srv_targets_resolved_when_additional_section_is_empty() {
    let config = ServerConfig { additionals: false, ..ServerConfig::default() };
    let dns = DnsServer::start_with(full_zone(), config).unwrap();
    let r = resolver(&dns);
    assert_eq!(
        r.resolve(&req("example.com")).await.unwrap(),
        [t(Transport::Tcp, V4_1, 5062), t(Transport::Tcp, V6_1, 5062), t(Transport::Udp, V4_2, 5064)]
    );
    let queries = dns.queries();
    for q in ["A tcp1.example.com.", "AAAA tcp1.example.com.", "A udp1.example.com."] {
        assert!(queries.iter().any(|x| x == q), "{q} missing from {queries:?}");
    }
}

#[tokio::test]
async fn srv_fallback_when_there_is_no_naptr() {
    let dns = DnsServer::start(vec![
        ZoneRecord::srv("_sip._udp.example.org", 10, 10, 5070, "udp.example.org"),
        ZoneRecord::srv("_sip._tcp.example.org", 10, 10, 5080, "tcp.example.org"),
        ZoneRecord::a("udp.example.org", V4_1),
        ZoneRecord::a("tcp.example.org", V4_2),
        ZoneRecord::a("example.org", V4_3),
    ])
    .unwrap();
    let r = resolver(&dns);
    // Default transport order for the fallback: TLS, TCP, UDP.
    assert_eq!(
        r.resolve(&req("example.org")).await.unwrap(),
        [t(Transport::Tcp, V4_2, 5080), t(Transport::Udp, V4_1, 5070)]
    );
    let mut queries = dns.queries();
    queries.sort();
    assert_eq!(
        queries,
        [
            "NAPTR example.org.",
            "SRV _sip._tcp.example.org.",
            "SRV _sip._udp.example.org.",
            "SRV _sips._tcp.example.org.",
        ]
    );

    // The configured transport list restricts and orders the SRV queries.
    let udp_first = Options { transports: vec![Transport::Udp, Transport::Tcp], ..options() };
    let r = Resolver::with_nameservers_and_options(&[dns.addr], udp_first).unwrap();
    assert_eq!(
        r.resolve(&req("example.org")).await.unwrap(),
        [t(Transport::Udp, V4_1, 5070), t(Transport::Tcp, V4_2, 5080)]
    );
}

#[tokio::test]
async fn srv_fallback_when_naptr_has_no_usable_record() {
    let dns = DnsServer::start(vec![
        ZoneRecord::naptr("example.org", 10, 10, "SIP+D2S", "_sip._sctp.example.org"),
        ZoneRecord::srv("_sip._udp.example.org", 10, 10, 5070, "udp.example.org"),
        ZoneRecord::a("udp.example.org", V4_1),
    ])
    .unwrap();
    assert_eq!(resolver(&dns).resolve(&req("example.org")).await.unwrap(), [t(Transport::Udp, V4_1, 5070)]);
}

fn weighted_zone() -> Vec<ZoneRecord> {
    vec![
        ZoneRecord::srv("_sip._udp.example.com", 20, 100, 5060, "backup.example.com"),
        ZoneRecord::srv("_sip._udp.example.com", 10, 10, 5060, "light.example.com"),
        ZoneRecord::srv("_sip._udp.example.com", 10, 80, 5060, "heavy.example.com"),
        ZoneRecord::srv("_sip._udp.example.com", 10, 0, 5060, "zero.example.com"),
        ZoneRecord::a("backup.example.com", V4_4),
        ZoneRecord::a("light.example.com", V4_2),
        ZoneRecord::a("heavy.example.com", V4_1),
        ZoneRecord::a("zero.example.com", V4_3),
    ]
}

#[tokio::test]
async fn srv_priority_then_weight_deterministic() {
    let dns = DnsServer::start(weighted_zone()).unwrap();
    let request = Request { transport: Some(Transport::Udp), ..req("example.com") };
    assert_eq!(
        resolver(&dns).resolve(&request).await.unwrap(),
        [
            t(Transport::Udp, V4_1, 5060),
            t(Transport::Udp, V4_2, 5060),
            t(Transport::Udp, V4_3, 5060),
            t(Transport::Udp, V4_4, 5060),
        ]
    );
}

#[tokio::test]
async fn srv_weighted_random_keeps_priority_and_favours_weight() {
    let dns = DnsServer::start(weighted_zone()).unwrap();
    let opts = Options { srv_selection: SrvSelection::Seeded(3), ..options() };
    let r = Resolver::with_nameservers_and_options(&[dns.addr], opts).unwrap();
    let request = Request { transport: Some(Transport::Udp), ..req("example.com") };
    let mut heavy_first = 0;
    for _ in 0..200 {
        let got = r.resolve(&request).await.unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[3], t(Transport::Udp, V4_4, 5060), "priority 20 must come last: {got:?}");
        if got[0].addr.ip() == IpAddr::V4(V4_1) {
            heavy_first += 1;
        }
    }
    // Weight 80 of 90: about 178 of 200.
    assert!((150..=195).contains(&heavy_first), "heavy first {heavy_first} of 200");
}

#[tokio::test]
async fn a_aaaa_fallback_with_default_port() {
    let dns =
        DnsServer::start(vec![ZoneRecord::a("plain.example.com", V4_1), ZoneRecord::aaaa("plain.example.com", V6_1)])
            .unwrap();
    let r = resolver(&dns);
    assert_eq!(
        r.resolve(&req("plain.example.com")).await.unwrap(),
        [t(Transport::Udp, V4_1, 5060), t(Transport::Udp, V6_1, 5060)]
    );

    let v6_first = Options { ip_preference: IpPreference::Ipv6ThenIpv4, ..options() };
    let r6 = Resolver::with_nameservers_and_options(&[dns.addr], v6_first).unwrap();
    assert_eq!(
        r6.resolve(&req("plain.example.com")).await.unwrap(),
        [t(Transport::Udp, V6_1, 5060), t(Transport::Udp, V4_1, 5060)]
    );
    let v4_only = Options { ip_preference: IpPreference::Ipv4Only, ..options() };
    let r4 = Resolver::with_nameservers_and_options(&[dns.addr], v4_only).unwrap();
    assert_eq!(r4.resolve(&req("plain.example.com")).await.unwrap(), [t(Transport::Udp, V4_1, 5060)]);
}

#[tokio::test]
async fn cname_followed_for_host() {
    let dns = DnsServer::start(vec![
        ZoneRecord::cname("alias.example.com", "real.example.com"),
        ZoneRecord::a("real.example.com", V4_2),
    ])
    .unwrap();
    let request = Request { port: Some(5090), ..req("alias.example.com") };
    assert_eq!(resolver(&dns).resolve(&request).await.unwrap(), [t(Transport::Udp, V4_2, 5090)]);
}

#[tokio::test]
async fn sips_uses_only_tls() {
    let dns = DnsServer::start(vec![
        ZoneRecord::naptr("example.com", 10, 10, "SIP+D2U", "_sip._udp.example.com"),
        ZoneRecord::naptr("example.com", 20, 10, "SIPS+D2T", "_sips._tcp.example.com"),
        ZoneRecord::srv("_sip._udp.example.com", 10, 10, 5060, "udp.example.com"),
        ZoneRecord::srv("_sips._tcp.example.com", 10, 10, 5061, "tls.example.com"),
        ZoneRecord::a("udp.example.com", V4_1),
        ZoneRecord::a("tls.example.com", V4_2),
        ZoneRecord::srv("_sips._tcp.example.net", 10, 10, 5063, "tls.example.com"),
        ZoneRecord::srv("_sip._udp.example.net", 10, 10, 5060, "udp.example.com"),
        ZoneRecord::a("example.org", V4_3),
    ])
    .unwrap();
    let r = resolver(&dns);
    let sips = |host| Request { secure: true, ..req(host) };
    // NAPTR: the SIP+D2U record is discarded for a sips: URI (RFC 3263 §4.1).
    assert_eq!(r.resolve(&sips("example.com")).await.unwrap(), [t(Transport::Tls, V4_2, 5061)]);
    // SRV fallback: only _sips._tcp is queried.
    dns.clear_queries();
    assert_eq!(r.resolve(&sips("example.net")).await.unwrap(), [t(Transport::Tls, V4_2, 5063)]);
    assert!(!dns.queries().iter().any(|q| q.contains("_sip._")), "{:?}", dns.queries());
    // A fallback: TLS on 5061.
    assert_eq!(r.resolve(&sips("example.org")).await.unwrap(), [t(Transport::Tls, V4_3, 5061)]);
    // sips: with transport=tcp means TLS.
    let tcp = Request { transport: Some(Transport::Tcp), ..sips("example.org") };
    assert_eq!(r.resolve(&tcp).await.unwrap(), [t(Transport::Tls, V4_3, 5061)]);
    // sips: over UDP does not exist.
    let udp = Request { transport: Some(Transport::Udp), ..sips("example.org") };
    let err = r.resolve(&udp).await.unwrap_err();
    assert!(matches!(err, ResolveError::InvalidRequest { .. }), "{err}");
}

#[tokio::test]
async fn transport_param_without_port_queries_that_srv_only() {
    let dns = DnsServer::start(full_zone()).unwrap();
    let r = resolver(&dns);
    let tcp = Request { transport: Some(Transport::Tcp), ..req("example.com") };
    assert_eq!(r.resolve(&tcp).await.unwrap(), [t(Transport::Tcp, V4_1, 5062), t(Transport::Tcp, V6_1, 5062)]);
    assert_eq!(dns.queries(), ["SRV _sip._tcp.example.com."]);

    // No SRV for TLS: A/AAAA of the domain on 5061.
    dns.clear_queries();
    let tls = Request { transport: Some(Transport::Tls), ..req("example.com") };
    assert_eq!(r.resolve(&tls).await.unwrap(), [t(Transport::Tls, V4_3, 5061), t(Transport::Tls, V6_1, 5061)]);
    let queries = dns.queries();
    assert_eq!(queries.first().map(String::as_str), Some("SRV _sips._tcp.example.com."));
    assert!(!queries.iter().any(|q| q.starts_with("NAPTR")), "{queries:?}");
}

#[tokio::test]
async fn nxdomain_is_reported_clearly() {
    let dns = DnsServer::start(full_zone()).unwrap();
    let err = resolver(&dns).resolve(&req("nonexistent.example.com")).await.unwrap_err();
    assert!(matches!(err, ResolveError::NxDomain { .. }), "{err:?}");
    assert_eq!(err.to_string(), "nonexistent.example.com does not exist (NXDOMAIN)");
}

#[tokio::test]
async fn existing_name_without_sip_records_is_reported_clearly() {
    // empty.example.com exists (it has a child) but owns no record.
    let dns = DnsServer::start(vec![ZoneRecord::a("child.empty.example.com", V4_1)]).unwrap();
    let r = resolver(&dns);
    let err = r.resolve(&req("empty.example.com")).await.unwrap_err();
    assert_eq!(err.to_string(), "no SIP service for empty.example.com (NAPTR/SRV/A/AAAA all empty)");
    let with_port = Request { port: Some(5060), ..req("empty.example.com") };
    let err = r.resolve(&with_port).await.unwrap_err();
    assert_eq!(err.to_string(), "no SIP service for empty.example.com (A/AAAA empty)");
}

#[tokio::test]
async fn srv_dot_target_means_unavailable() {
    let dns = DnsServer::start(vec![
        ZoneRecord::srv("_sip._udp.example.com", 0, 0, 0, "."),
        ZoneRecord::a("example.com", V4_1),
    ])
    .unwrap();
    let request = Request { transport: Some(Transport::Udp), ..req("example.com") };
    let err = resolver(&dns).resolve(&request).await.unwrap_err();
    assert!(matches!(err, ResolveError::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn naptr_servfail_falls_back_to_srv() {
    let dns = DnsServer::start(vec![
        ZoneRecord::servfail("example.com"),
        ZoneRecord::srv("_sip._udp.example.com", 0, 0, 5070, "sip.example.net"),
        ZoneRecord::a("sip.example.net", V4_1),
    ])
    .unwrap();
    assert_eq!(resolver(&dns).resolve(&req("example.com")).await.unwrap(), [t(Transport::Udp, V4_1, 5070)]);
}

#[tokio::test]
async fn srv_target_failure_is_reported() {
    let dns =
        DnsServer::start(vec![ZoneRecord::srv("_sip._udp.example.com", 0, 0, 5070, "missing.example.net")]).unwrap();
    let request = Request { transport: Some(Transport::Udp), ..req("example.com") };
    let err = resolver(&dns).resolve(&request).await.unwrap_err();
    assert_eq!(err.to_string(), "no SIP service for example.com (SRV targets have no A/AAAA records)");
}

#[tokio::test]
async fn truncated_udp_answer_is_retried_over_tcp() {
    let mut zone = Vec::new();
    for i in 0..40u8 {
        let target = format!("host-with-a-rather-long-name-{i}.example.com");
        zone.push(ZoneRecord::srv("_sip._udp.example.com", 10, u16::from(i), 5060, &target));
        zone.push(ZoneRecord::a(&target, Ipv4Addr::new(198, 51, 100, i)));
    }
    let config = ServerConfig { max_udp_payload: 512, ..ServerConfig::default() };
    let dns = DnsServer::start_with(zone, config).unwrap();
    let request = Request { transport: Some(Transport::Udp), ..req("example.com") };
    let got = resolver(&dns).resolve(&request).await.unwrap();
    assert_eq!(got.len(), 40);
    // ByWeight: highest weight first.
    assert_eq!(got[0], t(Transport::Udp, [198, 51, 100, 39], 5060));
    let srv_queries = dns.queries().iter().filter(|q| q.starts_with("SRV")).count();
    assert!(srv_queries >= 2, "expected a UDP then a TCP query: {:?}", dns.queries());
}

#[tokio::test]
async fn answers_are_cached() {
    let dns = DnsServer::start(full_zone()).unwrap();
    let r = resolver(&dns);
    let first = r.resolve(&req("example.com")).await.unwrap();
    let count = dns.queries().len();
    assert_eq!(r.resolve(&req("example.com")).await.unwrap(), first);
    assert_eq!(dns.queries().len(), count, "second resolution should be served from cache");
    r.clear_cache();
    r.resolve(&req("example.com")).await.unwrap();
    assert!(dns.queries().len() > count);
}

#[tokio::test]
async fn unresponsive_server_times_out_within_configured_timeout() {
    let dns = DnsServer::start_unresponsive().unwrap();
    let opts = Options { timeout: Duration::from_millis(300), attempts: 2, ..options() };
    let r = Resolver::with_nameservers_and_options(&[dns.addr], opts).unwrap();
    let start = Instant::now();
    let err = r.resolve(&req("example.com")).await.unwrap_err();
    let elapsed = start.elapsed();
    assert!(err.is_timeout(), "{err:?}");
    assert!(err.to_string().starts_with("DNS timeout resolving example.com (NAPTR example.com) after"), "{err}");
    // Two tries of 300 ms, plus scheduling slack.
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    assert!(elapsed >= Duration::from_millis(500), "gave up too early: {elapsed:?}");
}

#[tokio::test]
async fn overall_deadline_bounds_resolution() {
    let dns = DnsServer::start_unresponsive().unwrap();
    let opts = Options { timeout: Duration::from_secs(5), deadline: Duration::from_millis(200), ..options() };
    let r = Resolver::with_nameservers_and_options(&[dns.addr], opts).unwrap();
    let start = Instant::now();
    let err = r.resolve(&Request { port: Some(5060), ..req("example.com") }).await.unwrap_err();
    assert!(matches!(&err, ResolveError::Timeout { query, .. } if query == "deadline"), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn invalid_hosts_are_rejected_without_dns() {
    let dns = DnsServer::start(Vec::new()).unwrap();
    let r = resolver(&dns);
    for host in ["", "[192.0.2.1]", "exa mple.com", "[::1"] {
        let err = r.resolve(&req(host)).await.unwrap_err();
        assert!(matches!(err, ResolveError::InvalidHost { .. }), "{host:?}: {err:?}");
    }
    assert!(dns.queries().is_empty());
}

#[test]
fn server_works_outside_a_runtime_and_stops_on_drop() {
    let dns = DnsServer::start(vec![ZoneRecord::a("x.example.com", V4_1)]).unwrap();
    let addr = dns.addr;
    drop(dns);
    // The port is free again once the server is dropped.
    assert!(std::net::UdpSocket::bind(addr).is_ok());
}

#[test]
fn system_configuration_loads_or_reports_a_config_error() {
    // Construction only: no query is sent.
    match Resolver::from_system_conf() {
        Ok(r) => assert_eq!(r.options(), &Options::default()),
        Err(e) => assert!(matches!(e, ResolveError::Config(_)), "{e:?}"),
    }
}
