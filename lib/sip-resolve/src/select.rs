//! Pure record-selection logic: NAPTR filtering/sorting (RFC 3263 §4.1, RFC 3403) and SRV
//! ordering (RFC 2782). Kept free of I/O so it can be unit-tested exhaustively.

use std::sync::Mutex;

use hickory_resolver::proto::rr::Name;
use hickory_resolver::proto::rr::rdata::{NAPTR, SRV};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::{SrvSelection, Transport};

/// A NAPTR record that RFC 3263 lets us use, reduced to what the next step needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NaptrChoice {
    pub transport: Transport,
    /// The SRV owner name to query next (the NAPTR replacement field).
    pub srv_name: Name,
}

/// Maps a NAPTR service field to a transport (RFC 3263 §4.1 and the IANA registry it
/// creates: `SIP+D2U`, `SIP+D2T`, `SIPS+D2T`). Services we do not implement (SCTP,
/// WebSocket, ...) map to `None` and are skipped.
fn naptr_service(services: &[u8]) -> Option<Transport> {
    if services.eq_ignore_ascii_case(b"SIP+D2U") {
        Some(Transport::Udp)
    } else if services.eq_ignore_ascii_case(b"SIP+D2T") {
        Some(Transport::Tcp)
    } else if services.eq_ignore_ascii_case(b"SIPS+D2T") {
        Some(Transport::Tls)
    } else {
        None
    }
}

/// Filters and orders NAPTR records per RFC 3263 §4.1:
/// - only terminal records with the `S` flag are used (SIP defines no other flag and no
///   regexp rewriting; the replacement names the SRV record);
/// - for a `sips:` URI only `SIPS+` services are kept;
/// - services whose transport the client does not support are discarded;
/// - the rest is sorted by order, then preference (RFC 3403 §4.1).
///
/// All usable records are returned, not only the lowest order: RFC 3263 §4.1 has the client
/// move on to the next record when the first one's SRV lookup fails, and returning them all
/// turns that into a failover list for the transport layer.
pub(crate) fn select_naptr<'a>(
    records: impl IntoIterator<Item = &'a NAPTR>,
    secure: bool,
    supported: &[Transport],
) -> Vec<NaptrChoice> {
    let mut usable: Vec<(u16, u16, NaptrChoice)> = records
        .into_iter()
        .filter(|r| r.flags.eq_ignore_ascii_case(b"s"))
        .filter(|r| !r.replacement.is_root())
        .filter_map(|r| {
            let transport = naptr_service(&r.services)?;
            if secure && transport != Transport::Tls {
                return None;
            }
            if !supported.contains(&transport) {
                return None;
            }
            Some((r.order, r.preference, NaptrChoice { transport, srv_name: r.replacement.clone() }))
        })
        .collect();
    // Stable sort: equal (order, preference) keep the server's order.
    usable.sort_by_key(|(order, pref, _)| (*order, *pref));
    let mut out: Vec<NaptrChoice> = Vec::with_capacity(usable.len());
    for (_, _, choice) in usable {
        if !out.contains(&choice) {
            out.push(choice);
        }
    }
    out
}

/// Source of randomness for RFC 2782 weighted selection.
#[derive(Debug)]
pub(crate) enum Picker {
    /// Thread-local CSPRNG (production).
    Random,
    /// Reproducible sequence, for tests.
    Seeded(Mutex<SmallRng>),
    /// No randomness: within a priority, highest weight first.
    ByWeight,
}

impl Picker {
    pub(crate) fn new(selection: SrvSelection) -> Self {
        match selection {
            SrvSelection::Random => Self::Random,
            SrvSelection::Seeded(seed) => Self::Seeded(Mutex::new(SmallRng::seed_from_u64(seed))),
            SrvSelection::ByWeight => Self::ByWeight,
        }
    }
}

/// Orders SRV records per RFC 2782: ascending priority; within a priority, repeated weighted
/// random selection ("Usage rules" of RFC 2782). Records whose target is `.` are dropped;
/// the caller detects the "service decidedly not available" case before calling this.
pub(crate) fn order_srv(records: &[SRV], picker: &Picker) -> Vec<SRV> {
    let mut records: Vec<SRV> = records.iter().filter(|r| !r.target.is_root()).cloned().collect();
    records.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(records.len());
    let mut start = 0;
    while start < records.len() {
        let priority = records[start].priority;
        let end = records[start..].iter().position(|r| r.priority != priority).map_or(records.len(), |n| start + n);
        let group = records[start..end].to_vec();
        match picker {
            Picker::ByWeight => {
                let mut group = group;
                group.sort_by(|a, b| {
                    b.weight.cmp(&a.weight).then_with(|| a.target.cmp(&b.target)).then_with(|| a.port.cmp(&b.port))
                });
                out.extend(group);
            }
            Picker::Random => weighted_order(group, &mut out, |total| rand::rng().random_range(0..=total)),
            Picker::Seeded(rng) => {
                let mut rng = rng.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                weighted_order(group, &mut out, |total| rng.random_range(0..=total));
            }
        }
        start = end;
    }
    out
}

/// RFC 2782 selection within one priority: put weight-0 records first, draw a number in
/// `0..=sum(weights)`, take the first record whose running sum reaches it, remove it and
/// repeat. Weight-0 records thus have a small chance of being selected early when others
/// have weight, and are ordered first-come when all weights are 0.
fn weighted_order(mut group: Vec<SRV>, out: &mut Vec<SRV>, mut draw: impl FnMut(u32) -> u32) {
    // Stable: zero-weight records first, otherwise the server's order.
    group.sort_by_key(|r| r.weight != 0);
    while !group.is_empty() {
        let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
        let pick = draw(total);
        let mut running = 0u32;
        let mut chosen = group.len() - 1;
        for (i, r) in group.iter().enumerate() {
            running += u32::from(r.weight);
            if running >= pick {
                chosen = i;
                break;
            }
        }
        out.push(group.remove(chosen));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn name(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    fn srv(priority: u16, weight: u16, target: &str) -> SRV {
        SRV::new(priority, weight, 5060, name(target))
    }

    fn naptr(order: u16, pref: u16, flags: &str, services: &str, replacement: &str) -> NAPTR {
        NAPTR::new(order, pref, flags.as_bytes().into(), services.as_bytes().into(), Box::default(), name(replacement))
    }

    const ALL: [Transport; 3] = [Transport::Tls, Transport::Tcp, Transport::Udp];

    #[test]
    fn naptr_sorted_by_order_then_preference_and_filtered() {
        let records = [
            naptr(20, 10, "s", "SIP+D2U", "_sip._udp.example.com."),
            naptr(10, 20, "S", "sip+d2t", "_sip._tcp.example.com."),
            naptr(10, 10, "s", "SIPS+D2T", "_sips._tcp.example.com."),
            naptr(5, 10, "s", "SIP+D2S", "_sip._sctp.example.com."),
            naptr(5, 10, "u", "SIP+D2U", "."),
            naptr(5, 10, "", "SIP+D2U", "other.example.com."),
            naptr(5, 10, "s", "SIP+D2U", "."),
        ];
        let got = select_naptr(&records, false, &ALL);
        let got: Vec<_> = got.iter().map(|c| (c.transport, c.srv_name.to_string())).collect();
        assert_eq!(
            got,
            vec![
                (Transport::Tls, "_sips._tcp.example.com.".to_owned()),
                (Transport::Tcp, "_sip._tcp.example.com.".to_owned()),
                (Transport::Udp, "_sip._udp.example.com.".to_owned()),
            ]
        );
    }

    #[test]
    fn naptr_sips_keeps_only_sips_services() {
        let records = [
            naptr(10, 10, "s", "SIP+D2U", "_sip._udp.example.com."),
            naptr(20, 10, "s", "SIPS+D2T", "_sips._tcp.example.com."),
        ];
        let got = select_naptr(&records, true, &ALL);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].transport, Transport::Tls);
    }

    #[test]
    fn naptr_unsupported_transport_dropped() {
        let records = [
            naptr(10, 10, "s", "SIPS+D2T", "_sips._tcp.example.com."),
            naptr(20, 10, "s", "SIP+D2U", "_sip._udp.example.com."),
        ];
        let got = select_naptr(&records, false, &[Transport::Udp, Transport::Tcp]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].transport, Transport::Udp);
    }

    fn targets(v: &[SRV]) -> Vec<String> {
        v.iter().map(|r| r.target.to_string()).collect()
    }

    #[test]
    fn srv_priority_then_weight_deterministic() {
        let records = [
            srv(20, 100, "c.example."),
            srv(10, 10, "b.example."),
            srv(10, 60, "a.example."),
            srv(10, 0, "z.example."),
            srv(0, 0, "."),
        ];
        let got = order_srv(&records, &Picker::ByWeight);
        assert_eq!(targets(&got), ["a.example.", "b.example.", "z.example.", "c.example."]);
    }

    #[test]
    fn srv_weighted_random_respects_priority_and_weight_distribution() {
        let records = [srv(10, 90, "heavy.example."), srv(10, 10, "light.example."), srv(20, 0, "backup.example.")];
        let picker = Picker::new(SrvSelection::Seeded(42));
        let mut heavy_first = 0;
        for _ in 0..2000 {
            let got = targets(&order_srv(&records, &picker));
            assert_eq!(got.len(), 3);
            // Priority is never violated.
            assert_eq!(got[2], "backup.example.");
            if got[0] == "heavy.example." {
                heavy_first += 1;
            }
        }
        // Expected 90% (+ tiny bias of the 0..=total draw); allow generous slack.
        assert!((1700..=1900).contains(&heavy_first), "heavy first {heavy_first} of 2000");
    }

    #[test]
    fn srv_seeded_is_reproducible() {
        let records = [srv(1, 1, "a."), srv(1, 1, "b."), srv(1, 1, "c."), srv(1, 1, "d.")];
        let a = Picker::new(SrvSelection::Seeded(7));
        let b = Picker::new(SrvSelection::Seeded(7));
        for _ in 0..20 {
            assert_eq!(targets(&order_srv(&records, &a)), targets(&order_srv(&records, &b)));
        }
    }

    #[test]
    fn srv_all_zero_weights_keep_server_order() {
        let records = [srv(1, 0, "a."), srv(1, 0, "b."), srv(1, 0, "c.")];
        let got = order_srv(&records, &Picker::new(SrvSelection::Random));
        assert_eq!(targets(&got), ["a.", "b.", "c."]);
    }

    #[test]
    fn srv_zero_weight_rarely_first() {
        let records = [srv(1, 0, "zero."), srv(1, 100, "big.")];
        let picker = Picker::new(SrvSelection::Seeded(1));
        let zero_first = (0..1000).filter(|_| targets(&order_srv(&records, &picker))[0] == "zero.").count();
        // RFC 2782: the draw is 0..=100, only 0 selects the zero-weight record (~1%).
        assert!(zero_first < 40, "zero-weight first {zero_first} of 1000");
    }
}
