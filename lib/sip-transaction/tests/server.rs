//! Server transactions: retransmission absorption, Timers G/H/I/J/L, ACK and CANCEL matching,
//! RFC 2543 matching and the completed-transaction cap.

mod common;

use bytes::Bytes;
use common::*;
use sip_transaction::{Config, Event, Reliability, RequestEvent, ServerState, TransactionLayer, TxId};

const UDP: Reliability = Reliability::Unreliable;
const TCP: Reliability = Reliability::Reliable;

fn receive(l: &mut TransactionLayer<Peer>, clock: &Clock, at: f64, raw: &[u8], rel: Reliability) -> RequestEvent<Peer> {
    with_msg(raw, |m| l.receive_request(clock.at(at), m, "peer", rel))
}

fn new_tx(ev: RequestEvent<Peer>) -> TxId {
    match ev {
        RequestEvent::New(id) => id,
        other => panic!("expected New, got {other:?}"),
    }
}

#[test]
fn non_invite_retransmissions_get_the_last_response_until_timer_j() {
    let clock = Clock::new();
    let mut l = layer();
    let req = request("SUBSCRIBE", "z9hG4bKs1");
    let id = new_tx(receive(&mut l, &clock, 0.0, &req, UDP));
    assert_eq!(l.server_state(id), Some(ServerState::Trying));
    assert_eq!(receive(&mut l, &clock, 0.1, &req, UDP), RequestEvent::Retransmission(None));

    let trying = Bytes::from(response(&req, 100, None));
    assert_eq!(l.send_response(clock.at(0.2), id, 100, trying.clone()), Some(("peer", trying.clone())));
    assert_eq!(l.server_state(id), Some(ServerState::Proceeding));
    assert_eq!(receive(&mut l, &clock, 0.5, &req, UDP), RequestEvent::Retransmission(Some(("peer", trying))));

    let ok = Bytes::from(response(&req, 202, Some("s1")));
    assert_eq!(l.send_response(clock.at(1.0), id, 202, ok.clone()), Some(("peer", ok.clone())));
    assert_eq!(l.server_state(id), Some(ServerState::Completed));
    assert_eq!(receive(&mut l, &clock, 1.5, &req, UDP), RequestEvent::Retransmission(Some(("peer", ok.clone()))));
    let other = Bytes::from(response(&req, 500, Some("s1")));
    assert_eq!(l.send_response(clock.at(1.6), id, 500, other), None, "a second final is discarded");
    assert_eq!(l.stats().absorbed, 3);

    let trace = run_until(&mut l, &clock, 100.0);
    assert!(trace.sent.is_empty(), "non-INVITE responses are not retransmitted on a timer");
    assert_eq!(trace.events, [(33.0, Event::Terminated(id))], "Timer J = 64*T1 after the final");
    assert_eq!(l.len(), (0, 0));
    assert!(matches!(receive(&mut l, &clock, 40.0, &req, UDP), RequestEvent::New(_)));
}

#[test]
fn non_invite_over_reliable_transport_is_dropped_right_after_the_final() {
    let clock = Clock::new();
    let mut l = layer();
    let req = request("PUBLISH", "z9hG4bKp1");
    let id = new_tx(receive(&mut l, &clock, 0.0, &req, TCP));
    let ok = Bytes::from(response(&req, 200, Some("s")));
    assert_eq!(l.send_response(clock.at(0.1), id, 200, ok.clone()), Some(("peer", ok)));
    assert_eq!(events(&mut l), [Event::Terminated(id)]);
    assert_eq!(l.len(), (0, 0));
    assert_eq!(l.poll_timeout(), None);
    assert_eq!(l.send_response(clock.at(0.2), id, 200, Bytes::new()), None, "gone");
}

#[test]
fn invite_sends_100_trying_and_answers_retransmissions_with_it() {
    let clock = Clock::new();
    let mut l = layer();
    let req = request("INVITE", "z9hG4bKi1");
    let id = new_tx(receive(&mut l, &clock, 0.0, &req, UDP));
    assert_eq!(l.server_state(id), Some(ServerState::Proceeding));
    let sent = transmits(&mut l);
    assert_eq!(sent.len(), 1);
    with_msg(&sent[0].1, |m| {
        assert_eq!(m.status_code(), Some(100));
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bKi1"));
    });
    assert_eq!(
        receive(&mut l, &clock, 0.5, &req, UDP),
        RequestEvent::Retransmission(Some(("peer", sent[0].1.clone())))
    );
    let ringing = Bytes::from(response(&req, 180, Some("s")));
    l.send_response(clock.at(0.6), id, 180, ringing.clone());
    assert_eq!(receive(&mut l, &clock, 1.0, &req, UDP), RequestEvent::Retransmission(Some(("peer", ringing))));

    let mut quiet = TransactionLayer::<Peer>::new(Config { auto_100_trying: false, ..Config::default() });
    let id = new_tx(receive(&mut quiet, &clock, 0.0, &req, UDP));
    assert!(transmits(&mut quiet).is_empty());
    assert_eq!(receive(&mut quiet, &clock, 0.5, &req, UDP), RequestEvent::Retransmission(None));
    assert_eq!(quiet.server_state(id), Some(ServerState::Proceeding));
}

#[test]
fn invite_non_2xx_is_retransmitted_on_timer_g_until_the_ack() {
    let clock = Clock::new();
    let mut l = layer();
    let req = request("INVITE", "z9hG4bKi2");
    let id = new_tx(receive(&mut l, &clock, 0.0, &req, UDP));
    transmits(&mut l);
    let not_found = Bytes::from(response(&req, 404, Some("s2")));
    assert!(l.send_response(clock.at(0.0), id, 404, not_found.clone()).is_some());
    assert_eq!(l.server_state(id), Some(ServerState::Completed));

    let trace = run_until(&mut l, &clock, 12.0);
    let times: Vec<f64> = trace.sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, [0.5, 1.5, 3.5, 7.5, 11.5], "Timer G: T1 doubling, capped at T2");
    assert!(trace.sent.iter().all(|(_, b)| *b == not_found));
    assert_eq!(receive(&mut l, &clock, 12.0, &req, UDP), RequestEvent::Retransmission(Some(("peer", not_found))));

    let ack = request_via("ACK", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKi2", Some("s2"), 1);
    assert_eq!(receive(&mut l, &clock, 12.5, &ack, UDP), RequestEvent::AckAbsorbed);
    assert_eq!(l.server_state(id), Some(ServerState::Confirmed));
    assert_eq!(receive(&mut l, &clock, 13.0, &ack, UDP), RequestEvent::AckAbsorbed);
    assert_eq!(receive(&mut l, &clock, 13.0, &req, UDP), RequestEvent::Retransmission(None));
    let trace = run_until(&mut l, &clock, 100.0);
    assert!(trace.sent.is_empty(), "no retransmission after the ACK");
    assert_eq!(trace.events, [(17.5, Event::Terminated(id))], "Timer I = T4 after the ACK");
    assert_eq!(receive(&mut l, &clock, 20.0, &ack, UDP), RequestEvent::AckToTu);
}

#[test]
fn invite_non_2xx_without_ack_ends_on_timer_h() {
    let clock = Clock::new();
    let mut l = layer();
    let req = request("INVITE", "z9hG4bKi3");
    let id = new_tx(receive(&mut l, &clock, 0.0, &req, UDP));
    assert_eq!(transmits(&mut l).len(), 1, "100 Trying");
    l.send_response(clock.at(1.0), id, 486, response(&req, 486, Some("s3")).into());
    let trace = run_until(&mut l, &clock, 100.0);
    let times: Vec<f64> = trace.sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, [1.5, 2.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5], "G runs until H");
    assert_eq!(trace.events, [(33.0, Event::AckTimeout(id)), (33.0, Event::Terminated(id))]);
    assert_eq!(l.len(), (0, 0));
}

#[test]
fn invite_over_reliable_transport_waits_for_the_ack_without_retransmitting() {
    let clock = Clock::new();
    let mut l = layer();
    let req = request("INVITE", "z9hG4bKi4");
    let id = new_tx(receive(&mut l, &clock, 0.0, &req, TCP));
    l.send_response(clock.at(0.0), id, 480, response(&req, 480, Some("s4")).into());
    assert_eq!(l.poll_timeout(), Some(clock.at(32.0)), "only Timer H");
    let ack = request_via("ACK", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKi4", Some("s4"), 1);
    transmits(&mut l);
    assert_eq!(receive(&mut l, &clock, 1.0, &ack, TCP), RequestEvent::AckAbsorbed);
    assert_eq!(events(&mut l), [Event::Terminated(id)], "Timer I is zero");
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn invite_2xx_absorbs_retransmitted_invites_during_timer_l() {
    let clock = Clock::new();
    let mut l = layer();
    let req = request("INVITE", "z9hG4bKi5");
    let id = new_tx(receive(&mut l, &clock, 0.0, &req, UDP));
    transmits(&mut l);
    let ok = Bytes::from(response(&req, 200, Some("s5")));
    assert_eq!(l.send_response(clock.at(1.0), id, 200, ok.clone()), Some(("peer", ok.clone())));
    assert_eq!(l.server_state(id), Some(ServerState::Accepted));
    assert_eq!(receive(&mut l, &clock, 1.5, &req, UDP), RequestEvent::Retransmission(None));
    // The TU (UAS core or forking proxy) may send further 2xx; other responses are refused.
    assert_eq!(l.send_response(clock.at(2.0), id, 200, ok.clone()), Some(("peer", ok.clone())));
    assert_eq!(l.send_response(clock.at(2.0), id, 486, ok.clone()), None);
    // The ACK of a 2xx has its own branch: end-to-end, to the TU.
    let ack = request_via("ACK", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKack5", Some("s5"), 1);
    assert_eq!(receive(&mut l, &clock, 2.5, &ack, UDP), RequestEvent::AckToTu);
    let trace = run_until(&mut l, &clock, 100.0);
    assert!(trace.sent.is_empty(), "the TU retransmits the 2xx, not the transaction");
    assert_eq!(trace.events, [(33.0, Event::Terminated(id))], "Timer L = 64*T1");
    assert!(matches!(receive(&mut l, &clock, 40.0, &req, UDP), RequestEvent::New(_)));
}

#[test]
fn cancel_matches_its_invite_and_has_its_own_transaction() {
    let clock = Clock::new();
    let mut l = layer();
    let invite_req = request("INVITE", "z9hG4bKi6");
    let invite = new_tx(receive(&mut l, &clock, 0.0, &invite_req, UDP));
    let cancel_req = request("CANCEL", "z9hG4bKi6");
    let cancel = match receive(&mut l, &clock, 1.0, &cancel_req, UDP) {
        RequestEvent::Cancel { cancel, invite: Some(i) } => {
            assert_eq!(i, invite);
            cancel
        }
        other => panic!("{other:?}"),
    };
    assert_ne!(cancel, invite);
    let ok = Bytes::from(response(&cancel_req, 200, Some("c")));
    assert!(l.send_response(clock.at(1.1), cancel, 200, ok.clone()).is_some());
    assert_eq!(receive(&mut l, &clock, 1.5, &cancel_req, UDP), RequestEvent::Retransmission(Some(("peer", ok))));
    assert!(l.send_response(clock.at(1.2), invite, 487, response(&invite_req, 487, Some("s6")).into()).is_some());

    // Same branch but another sent-by: another transaction, so no INVITE to cancel.
    let foreign = request_via("CANCEL", "SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bKi6", None, 1);
    assert!(matches!(receive(&mut l, &clock, 2.0, &foreign, UDP), RequestEvent::Cancel { invite: None, .. }));
    let unknown = request("CANCEL", "z9hG4bKnothing");
    assert!(matches!(receive(&mut l, &clock, 2.0, &unknown, UDP), RequestEvent::Cancel { invite: None, .. }));
}

#[test]
fn rfc2543_requests_match_on_dialog_fields() {
    let clock = Clock::new();
    let mut l = layer();
    let via = "SIP/2.0/UDP 192.0.2.7:5060";
    let invite_req = request_via("INVITE", via, None, 5);
    let invite = new_tx(receive(&mut l, &clock, 0.0, &invite_req, UDP));
    assert!(matches!(receive(&mut l, &clock, 0.5, &invite_req, UDP), RequestEvent::Retransmission(Some(_))));
    let cseq6 = request_via("INVITE", via, None, 6);
    assert!(matches!(receive(&mut l, &clock, 0.6, &cseq6, UDP), RequestEvent::New(_)), "another CSeq");

    let cancel = request_via("CANCEL", via, None, 5);
    assert!(matches!(
        receive(&mut l, &clock, 0.7, &cancel, UDP),
        RequestEvent::Cancel { invite: Some(i), .. } if i == invite
    ));

    l.send_response(clock.at(1.0), invite, 603, response(&invite_req, 603, Some("srv")).into());
    let wrong_tag = request_via("ACK", via, Some("other"), 5);
    assert_eq!(receive(&mut l, &clock, 1.1, &wrong_tag, UDP), RequestEvent::AckToTu);
    let ack = request_via("ACK", via, Some("srv"), 5);
    assert_eq!(receive(&mut l, &clock, 1.2, &ack, UDP), RequestEvent::AckAbsorbed);
    assert_eq!(l.server_state(invite), Some(ServerState::Confirmed));

    // Non-INVITE without cookie: retransmission matched, another To-tag is another request.
    let info = request_via("INFO", via, Some("d1"), 9);
    let info_id = new_tx(receive(&mut l, &clock, 2.0, &info, UDP));
    assert_eq!(receive(&mut l, &clock, 2.1, &info, UDP), RequestEvent::Retransmission(None));
    let info2 = request_via("INFO", via, Some("d2"), 9);
    assert!(matches!(receive(&mut l, &clock, 2.2, &info2, UDP), RequestEvent::New(i) if i != info_id));
}

#[test]
fn branch_matching_is_case_insensitive_and_includes_sent_by_and_method() {
    let clock = Clock::new();
    let mut l = layer();
    let a = request_via("OPTIONS", "SIP/2.0/UDP Host.Example.COM;branch=z9hG4bKAbC", None, 1);
    let id = new_tx(receive(&mut l, &clock, 0.0, &a, UDP));
    let same = request_via("OPTIONS", "SIP/2.0/UDP host.example.com;branch=z9hG4bKabc", None, 1);
    assert_eq!(receive(&mut l, &clock, 0.1, &same, UDP), RequestEvent::Retransmission(None));
    let port = request_via("OPTIONS", "SIP/2.0/UDP host.example.com:5070;branch=z9hG4bKabc", None, 1);
    assert!(matches!(receive(&mut l, &clock, 0.1, &port, UDP), RequestEvent::New(i) if i != id));
    let method = request_via("INFO", "SIP/2.0/UDP host.example.com;branch=z9hG4bKabc", None, 1);
    assert!(matches!(receive(&mut l, &clock, 0.1, &method, UDP), RequestEvent::New(_)));
    assert_eq!(l.len(), (0, 3));
}

#[test]
fn unmatchable_requests_are_reported() {
    let clock = Clock::new();
    let mut l = layer();
    let no_via = b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n";
    assert_eq!(receive(&mut l, &clock, 0.0, no_via, UDP), RequestEvent::Unmatchable("no usable top Via"));
    let no_call_id =
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a@b>\r\nTo: <sip:a@b>\r\nCSeq: 1 OPTIONS\r\n\r\n";
    assert_eq!(receive(&mut l, &clock, 0.0, no_call_id, UDP), RequestEvent::Unmatchable("no usable Call-ID"));
    let resp = response(&request("OPTIONS", "z9hG4bKx"), 200, Some("t"));
    assert_eq!(receive(&mut l, &clock, 0.0, &resp, UDP), RequestEvent::Unmatchable("not a request"));
    assert_eq!(l.stats().unmatchable, 3);
    assert_eq!(l.len(), (0, 0));
}

#[test]
fn the_cap_evicts_the_oldest_completed_transactions() {
    let clock = Clock::new();
    let mut l = TransactionLayer::<Peer>::new(Config { max_completed: 3, ..Config::default() });
    let reqs: Vec<_> = (0..5).map(|i| request("MESSAGE", &format!("z9hG4bKcap{i}"))).collect();
    let mut ids = Vec::new();
    for (i, req) in reqs.iter().enumerate() {
        let id = new_tx(receive(&mut l, &clock, i as f64, req, UDP));
        l.send_response(clock.at(i as f64), id, 200, response(req, 200, Some("t")).into());
        ids.push(id);
    }
    // An unanswered transaction is not counted against the cap.
    let pending = new_tx(receive(&mut l, &clock, 6.0, &request("MESSAGE", "z9hG4bKpending"), UDP));
    assert_eq!(l.len(), (0, 4));
    assert_eq!(l.stats().evicted, 2);
    assert_eq!(events(&mut l), [Event::Terminated(ids[0]), Event::Terminated(ids[1])]);
    assert!(matches!(receive(&mut l, &clock, 7.0, &reqs[0], UDP), RequestEvent::New(_)), "evicted: forgotten");
    assert!(matches!(receive(&mut l, &clock, 7.0, &reqs[4], UDP), RequestEvent::Retransmission(Some(_))));
    assert_eq!(l.server_state(pending), Some(ServerState::Trying));
    // Evicted transactions take their timers with them: only the survivors' J remain.
    let trace = run_until(&mut l, &clock, 100.0);
    let ended: Vec<_> = trace.events.iter().map(|(_, e)| *e).collect();
    assert_eq!(ended, [Event::Terminated(ids[2]), Event::Terminated(ids[3]), Event::Terminated(ids[4])]);
}

#[test]
fn transport_error_ends_a_server_transaction() {
    let clock = Clock::new();
    let mut l = layer();
    let req = request("NOTIFY", "z9hG4bKn1");
    let id = new_tx(receive(&mut l, &clock, 0.0, &req, TCP));
    l.transport_error(clock.at(0.1), id);
    assert_eq!(events(&mut l), [Event::TransportError(id), Event::Terminated(id)]);
    assert_eq!(l.send_response(clock.at(0.2), id, 200, Bytes::new()), None);
}
