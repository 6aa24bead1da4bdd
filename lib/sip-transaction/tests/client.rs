//! Client transactions: retransmission schedules, timeouts, ACK and CANCEL generation.

mod common;

use bytes::Bytes;
use common::*;
use sip_message::Method;
use sip_transaction::{ClientState, Event, Reliability, ResponseEvent, TxError};

const UDP: Reliability = Reliability::Unreliable;
const TCP: Reliability = Reliability::Reliable;

fn times(trace: &Trace) -> Vec<f64> {
    trace.sent.iter().map(|(t, _)| *t).collect()
}

#[test]
fn non_invite_retransmits_with_timer_e_capped_at_t2_and_times_out_at_64_t1() {
    let clock = Clock::new();
    let mut l = layer();
    let req = Bytes::from(request("MESSAGE", "z9hG4bKm1"));
    let (id, (to, first)) = l.send_request(clock.at(0.0), req.clone(), "peer", UDP).unwrap();
    assert_eq!((to, &first), ("peer", &req));
    assert_eq!(l.client_state(id), Some(ClientState::Trying));
    let trace = run_until(&mut l, &clock, 100.0);
    assert_eq!(times(&trace), [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]);
    assert!(trace.sent.iter().all(|(_, b)| *b == req), "retransmissions are the request bytes");
    assert_eq!(trace.events, [(32.0, Event::Timeout(id)), (32.0, Event::Terminated(id))]);
    assert_eq!(l.len(), (0, 0));
    assert_eq!(l.poll_timeout(), None);
    assert_eq!(l.stats().timeouts, 1);
}

#[test]
fn non_invite_over_reliable_transport_does_not_retransmit_but_times_out() {
    let clock = Clock::new();
    let mut l = layer();
    let (id, _) = l.send_request(clock.at(0.0), request("SUBSCRIBE", "z9hG4bKs1").into(), "peer", TCP).unwrap();
    let trace = run_until(&mut l, &clock, 100.0);
    assert!(trace.sent.is_empty());
    assert_eq!(trace.events, [(32.0, Event::Timeout(id)), (32.0, Event::Terminated(id))]);
}

#[test]
fn non_invite_provisional_switches_timer_e_to_t2() {
    let clock = Clock::new();
    let mut l = layer();
    let req = request("PUBLISH", "z9hG4bKp1");
    let (id, _) = l.send_request(clock.at(0.0), req.clone().into(), "peer", UDP).unwrap();
    let trace = run_until(&mut l, &clock, 1.0);
    assert_eq!(times(&trace), [0.5]);
    let ev = with_msg(&response(&req, 100, None), |m| l.receive_response(clock.at(1.0), m));
    assert_eq!(ev, ResponseEvent::Provisional(id));
    assert_eq!(l.client_state(id), Some(ClientState::Proceeding));
    // The armed E (1 s interval) still fires at 1.5; from then on every T2.
    let trace = run_until(&mut l, &clock, 100.0);
    assert_eq!(times(&trace), [1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]);
    assert_eq!(trace.events.first(), Some(&(32.0, Event::Timeout(id))));
}

#[test]
fn non_invite_final_is_delivered_once_then_absorbed_until_timer_k() {
    let clock = Clock::new();
    let mut l = layer();
    let req = request("SUBSCRIBE", "z9hG4bKs2");
    let (id, _) = l.send_request(clock.at(0.0), req.clone().into(), "peer", UDP).unwrap();
    let ok = response(&req, 202, Some("b1"));
    assert_eq!(with_msg(&ok, |m| l.receive_response(clock.at(0.2), m)), ResponseEvent::Final(id));
    assert_eq!(l.client_state(id), Some(ClientState::Completed));
    assert_eq!(with_msg(&ok, |m| l.receive_response(clock.at(0.3), m)), ResponseEvent::Absorbed);
    let prov = response(&req, 180, Some("b1"));
    assert_eq!(with_msg(&prov, |m| l.receive_response(clock.at(0.4), m)), ResponseEvent::Absorbed);
    let trace = run_until(&mut l, &clock, 100.0);
    assert!(trace.sent.is_empty(), "no retransmission after the final");
    assert_eq!(trace.events, [(5.2, Event::Terminated(id))], "Timer K = T4");
    assert_eq!(with_msg(&ok, |m| l.receive_response(clock.at(6.0), m)), ResponseEvent::Stray);
}

#[test]
fn non_invite_over_reliable_transport_ends_at_the_final() {
    let clock = Clock::new();
    let mut l = layer();
    let req = request("NOTIFY", "z9hG4bKn1");
    let (id, _) = l.send_request(clock.at(0.0), req.clone().into(), "peer", TCP).unwrap();
    let ok = response(&req, 200, Some("b1"));
    assert_eq!(with_msg(&ok, |m| l.receive_response(clock.at(0.1), m)), ResponseEvent::Final(id));
    assert_eq!(events(&mut l), [Event::Terminated(id)]);
    assert_eq!(l.len(), (0, 0));
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn invite_retransmits_with_timer_a_doubling_and_times_out_with_timer_b() {
    let clock = Clock::new();
    let mut l = layer();
    let (id, _) = l.send_request(clock.at(0.0), request("INVITE", "z9hG4bKi1").into(), "peer", UDP).unwrap();
    assert_eq!(l.client_state(id), Some(ClientState::Calling));
    let trace = run_until(&mut l, &clock, 100.0);
    assert_eq!(times(&trace), [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]);
    assert_eq!(trace.events, [(32.0, Event::Timeout(id)), (32.0, Event::Terminated(id))]);
}

#[test]
fn invite_provisional_stops_timers_a_and_b() {
    let clock = Clock::new();
    let mut l = layer();
    let req = request("INVITE", "z9hG4bKi2");
    let (id, _) = l.send_request(clock.at(0.0), req.clone().into(), "peer", UDP).unwrap();
    let ringing = response(&req, 180, Some("b2"));
    assert_eq!(with_msg(&ringing, |m| l.receive_response(clock.at(0.1), m)), ResponseEvent::Provisional(id));
    assert_eq!(l.poll_timeout(), None, "Proceeding has no timer; the TU owns Timer C");
    assert_eq!(with_msg(&ringing, |m| l.receive_response(clock.at(0.2), m)), ResponseEvent::Provisional(id));
}

#[test]
fn invite_non_2xx_final_is_acked_by_the_layer_and_delivered_once() {
    let clock = Clock::new();
    let mut l = layer();
    let req = request("INVITE", "z9hG4bKi3");
    let (id, _) = l.send_request(clock.at(0.0), req.clone().into(), "peer", UDP).unwrap();
    let busy = response(&req, 486, Some("busy-tag"));
    assert_eq!(with_msg(&busy, |m| l.receive_response(clock.at(0.2), m)), ResponseEvent::Final(id));
    assert_eq!(l.client_state(id), Some(ClientState::Completed));
    let sent = transmits(&mut l);
    assert_eq!(sent.len(), 1);
    let (to, ack) = &sent[0];
    assert_eq!(*to, "peer");
    with_msg(ack, |m| {
        m.validate().unwrap();
        assert_eq!(m.method(), Some(Method::Ack));
        assert_eq!(m.request_uri_str(), Some("sip:bob@example.com"));
        assert_eq!(m.vias().count(), 1, "only the top Via");
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bKi3"));
        assert_eq!(m.to().unwrap().tag(), Some("busy-tag"));
        assert_eq!(m.from().unwrap().tag(), Some("a1"));
        assert_eq!(m.call_id(), Ok("call-1@192.0.2.1"));
        let cseq = m.cseq().unwrap();
        assert_eq!((cseq.number, cseq.method), (1, Method::Ack));
        let routes: Vec<_> = m.routes().map(|r| r.unwrap().uri_str()).collect();
        assert_eq!(routes, ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]);
    });
    // The retransmitted 486 is absorbed and the same ACK goes out again.
    assert_eq!(with_msg(&busy, |m| l.receive_response(clock.at(1.0), m)), ResponseEvent::Absorbed);
    assert_eq!(transmits(&mut l), [("peer", ack.clone())]);
    assert_eq!(with_msg(&busy, |m| l.receive_response(clock.at(2.0), m)), ResponseEvent::Absorbed);
    assert_eq!(transmits(&mut l).len(), 1);
    // No request retransmission after the final; Timer D (32 s) ends it.
    let trace = run_until(&mut l, &clock, 100.0);
    assert!(trace.sent.is_empty());
    assert_eq!(trace.events, [(32.2, Event::Terminated(id))]);
}

#[test]
fn invite_non_2xx_over_reliable_transport_acks_and_ends() {
    let clock = Clock::new();
    let mut l = layer();
    let req = request("INVITE", "z9hG4bKi4");
    let (id, _) = l.send_request(clock.at(0.0), req.clone().into(), "peer", TCP).unwrap();
    let busy = response(&req, 603, Some("t"));
    assert_eq!(with_msg(&busy, |m| l.receive_response(clock.at(0.2), m)), ResponseEvent::Final(id));
    assert_eq!(transmits(&mut l).len(), 1);
    assert_eq!(events(&mut l), [Event::Terminated(id)], "Timer D is zero");
}

#[test]
fn invite_2xx_moves_to_accepted_and_passes_further_2xx_up() {
    let clock = Clock::new();
    let mut l = layer();
    let req = request("INVITE", "z9hG4bKi5");
    let (id, _) = l.send_request(clock.at(0.0), req.clone().into(), "peer", UDP).unwrap();
    let ok = response(&req, 200, Some("fork1"));
    assert_eq!(with_msg(&ok, |m| l.receive_response(clock.at(0.2), m)), ResponseEvent::Final(id));
    assert_eq!(l.client_state(id), Some(ClientState::Accepted));
    assert!(transmits(&mut l).is_empty(), "the ACK of a 2xx is the TU's");
    assert_eq!(with_msg(&ok, |m| l.receive_response(clock.at(0.7), m)), ResponseEvent::Additional2xx(id));
    let other_fork = response(&req, 200, Some("fork2"));
    assert_eq!(with_msg(&other_fork, |m| l.receive_response(clock.at(0.8), m)), ResponseEvent::Additional2xx(id));
    let late = response(&req, 486, Some("fork3"));
    assert_eq!(with_msg(&late, |m| l.receive_response(clock.at(0.9), m)), ResponseEvent::Absorbed);
    let trace = run_until(&mut l, &clock, 100.0);
    assert!(trace.sent.is_empty());
    assert_eq!(trace.events, [(32.2, Event::Terminated(id))], "Timer M = 64*T1");
    assert_eq!(with_msg(&ok, |m| l.receive_response(clock.at(40.0), m)), ResponseEvent::Stray);
}

#[test]
fn cancel_request_builds_a_matching_cancel() {
    let clock = Clock::new();
    let mut l = layer();
    let req = request("INVITE", "z9hG4bKi6");
    let (invite, _) = l.send_request(clock.at(0.0), req.clone().into(), "peer", UDP).unwrap();
    let ringing = response(&req, 180, Some("r"));
    with_msg(&ringing, |m| l.receive_response(clock.at(0.1), m));
    let cancel = l.cancel_request(invite).unwrap();
    with_msg(&cancel, |m| {
        m.validate().unwrap();
        assert_eq!(m.method(), Some(Method::Cancel));
        assert_eq!(m.request_uri_str(), Some("sip:bob@example.com"));
        assert_eq!(m.vias().count(), 1);
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bKi6"));
        assert_eq!(m.to().unwrap().tag(), None, "To as in the INVITE, not the provisional's");
        assert_eq!(m.from().unwrap().tag(), Some("a1"));
        assert_eq!(m.call_id(), Ok("call-1@192.0.2.1"));
        let cseq = m.cseq().unwrap();
        assert_eq!((cseq.number, cseq.method), (1, Method::Cancel));
        assert_eq!(m.routes().count(), 2);
    });
    // The CANCEL is its own client transaction (same branch, other method).
    let (ctx, _) = l.send_request(clock.at(0.2), cancel.clone(), "peer", UDP).unwrap();
    assert_ne!(ctx, invite);
    let ok = with_msg(&cancel, |m| {
        let mut out = Vec::new();
        sip_message::write_reply(&mut out, m, 200, "OK", &Default::default()).unwrap();
        out
    });
    assert_eq!(with_msg(&ok, |m| l.receive_response(clock.at(0.3), m)), ResponseEvent::Final(ctx));
    let terminated = response(&req, 487, Some("r"));
    assert_eq!(with_msg(&terminated, |m| l.receive_response(clock.at(0.4), m)), ResponseEvent::Final(invite));
    assert_eq!(l.cancel_request(invite), None, "nothing to cancel after the final");
    assert_eq!(l.cancel_request(ctx), None, "not an INVITE");
}

#[test]
fn send_request_rejects_bad_requests() {
    let clock = Clock::new();
    let mut l = layer();
    let now = clock.at(0.0);
    let send = |l: &mut sip_transaction::TransactionLayer<Peer>, raw: Vec<u8>| {
        l.send_request(now, raw.into(), "peer", UDP).map(|(id, _)| id)
    };
    assert_eq!(send(&mut l, request("ACK", "z9hG4bKa")), Err(TxError::Ack));
    assert_eq!(send(&mut l, request("MESSAGE", "1234")), Err(TxError::BadBranch));
    assert_eq!(send(&mut l, request("MESSAGE", "z9hG4bK")), Err(TxError::BadBranch));
    assert!(matches!(send(&mut l, b"garbage".to_vec()), Err(TxError::Parse(_))));
    let resp = response(&request("MESSAGE", "z9hG4bKr"), 200, Some("x"));
    assert_eq!(send(&mut l, resp), Err(TxError::NotARequest));
    let bad_cseq = String::from_utf8(request("MESSAGE", "z9hG4bKc")).unwrap().replace("1 MESSAGE", "1 INFO");
    assert_eq!(send(&mut l, bad_cseq.into_bytes()), Err(TxError::BadCSeq));
    assert!(send(&mut l, request("MESSAGE", "z9hG4bKdup")).is_ok());
    assert_eq!(send(&mut l, request("MESSAGE", "z9hG4bKdup")), Err(TxError::DuplicateBranch));
    assert_eq!(l.len(), (1, 0));
}

#[test]
fn transport_error_ends_the_client_transaction() {
    let clock = Clock::new();
    let mut l = layer();
    let (id, _) = l.send_request(clock.at(0.0), request("OPTIONS", "z9hG4bKo1").into(), "peer", UDP).unwrap();
    l.transport_error(clock.at(0.1), id);
    assert_eq!(events(&mut l), [Event::TransportError(id), Event::Terminated(id)]);
    assert_eq!(l.poll_timeout(), None);
    l.transport_error(clock.at(0.2), id);
    assert!(events(&mut l).is_empty(), "unknown ids are ignored");
}

#[test]
fn responses_match_on_branch_and_cseq_method() {
    let clock = Clock::new();
    let mut l = layer();
    let req = request("OPTIONS", "z9hG4bKCaSe");
    let (id, _) = l.send_request(clock.at(0.0), req.clone().into(), "peer", UDP).unwrap();
    let ok = String::from_utf8(response(&req, 200, Some("t"))).unwrap();
    let other_method = ok.replace("1 OPTIONS", "1 INFO");
    assert_eq!(with_msg(other_method.as_bytes(), |m| l.receive_response(clock.at(0.1), m)), ResponseEvent::Stray);
    let lower = ok.replace("z9hG4bKCaSe", "z9hg4bkcase");
    assert_eq!(with_msg(lower.as_bytes(), |m| l.receive_response(clock.at(0.1), m)), ResponseEvent::Final(id));
    assert_eq!(l.stats().stray, 1);
}
