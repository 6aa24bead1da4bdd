//! Requests modules send (`Host::send_request`): PUBLISH, SUBSCRIBE, NOTIFY, MESSAGE, ...
//!
//! The Call-ID, From tag and CSeq are settled at once (the module stores them). A next hop that
//! is an IP address (a NOTIFY to a phone's Contact, nearly always) is sent at once from the
//! caller's thread; a name is resolved on the runtime first. The final reply, a local 408 (no answer within 64*T1), a 503
//! (could not send) or a 478 (next hop unresolvable) reaches the module's callback exactly once,
//! on a worker.

use std::sync::Arc;

use plugin_api::ffi::{FfiReplyCallback, FfiRequest, FfiSentRequest};
use sip_message::{Body, Method, RequestSpec, SipUri, write_request};

use super::core::{Dispatch, Owner, SipCore};
use super::proxy::{resolve, resolve_literal, send_client, unique_token};
use super::transport::Dest;

/// Splits Kamailio-style raw header text (`Name: value\r\n...`) into pairs.
fn header_pairs(raw: &str) -> Result<Vec<(&str, &str)>, String> {
    raw.split("\r\n")
        .map(|l| l.trim_end_matches('\n'))
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').ok_or_else(|| format!("extra header line `{l}` has no colon"))?;
            let n = n.trim();
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.!%*+`'~".contains(&b)) {
                return Err(format!("bad header name `{n}` in extra headers"));
            }
            Ok((n, v.trim()))
        })
        .collect()
}

fn check(req: &FfiRequest) -> Result<(), String> {
    let method = req.method.as_str();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!("bad method `{method}`"));
    }
    SipUri::parse(req.ruri.as_str()).map_err(|e| format!("bad Request-URI `{}`: {e}", req.ruri))?;
    if req.from.is_empty() || req.to.is_empty() {
        return Err("From and To must be set".into());
    }
    header_pairs(req.extra_headers.as_str())?;
    Ok(())
}

/// Sends `req` for `module`; `callback` gets the final reply.
pub fn send_request(
    core: &Arc<SipCore>,
    module: &str,
    req: &FfiRequest,
    callback: FfiReplyCallback,
) -> Result<FfiSentRequest, String> {
    check(req)?;
    let host_hint = core
        .local_address(super::transport::Proto::Udp)
        .or_else(|| core.local_address(super::transport::Proto::Tcp))
        .unwrap_or_default();
    let call_id = if req.call_id.is_empty() {
        format!("{}@{}", unique_token(), host_hint.split(':').next().unwrap_or("puahost"))
    } else {
        req.call_id.to_string()
    };
    let from_tag = if req.from_tag.is_empty() { unique_token() } else { req.from_tag.to_string() };
    let cseq = if req.cseq == 0 { 1 } else { req.cseq };
    let sent = FfiSentRequest { call_id: call_id.as_str().into(), from_tag: from_tag.as_str().into(), cseq };

    let next_hop = if !req.outbound_proxy.is_empty() {
        req.outbound_proxy.to_string()
    } else if let Some(first) = req.route_set.first() {
        // A Route value is a name-addr: take the URI inside <...>.
        let r = first.as_str();
        r.find('<')
            .and_then(|s| r[s + 1..].find('>').map(|e| r[s + 1..s + 1 + e].to_string()))
            .unwrap_or_else(|| r.to_string())
    } else {
        req.ruri.to_string()
    };
    if let Some(dest) = resolve_literal(core, &next_hop) {
        // No DNS to wait for: no hand-off to the runtime either.
        send_to(core, module.to_string(), req, callback, dest, &call_id, &from_tag, cseq);
        return Ok(sent);
    }
    let (core, module, req) = (core.clone(), module.to_string(), req.clone());
    core.runtime.clone().spawn(async move {
        let dest = match resolve(&core, &next_hop).await {
            Ok(d) => d,
            Err(e) => {
                tracing::info!(%module, next_hop = %next_hop, "request not sent: {e}");
                core.deliver(module, callback, 478, "Unresolvable destination", None, Dispatch::Worker);
                return;
            }
        };
        send_to(&core, module, &req, callback, dest, &call_id, &from_tag, cseq);
    });
    Ok(sent)
}

/// Builds the request for `dest` and starts its client transaction; failures reach the
/// callback on a worker.
#[allow(clippy::too_many_arguments)]
fn send_to(
    core: &Arc<SipCore>,
    module: String,
    req: &FfiRequest,
    callback: FfiReplyCallback,
    dest: Dest,
    call_id: &str,
    from_tag: &str,
    cseq: u32,
) {
    {
        let Some(listener) = core.transports().and_then(|t| t.listener_for(dest.proto, &dest.addr)).cloned() else {
            core.deliver(module, callback, 503, "Service Unavailable", None, Dispatch::Worker);
            return;
        };
        let sent_by = format!("{}:{}", listener.advertised.0, listener.advertised.1);
        let branch = format!("z9hG4bK{}", unique_token());
        let extra = header_pairs(req.extra_headers.as_str()).unwrap_or_default();
        let routes: Vec<&str> = req.route_set.iter().map(|r| r.as_str()).collect();
        let body = (!req.content_type.is_empty())
            .then(|| Body { content_type: req.content_type.as_str(), bytes: req.body.as_slice() });
        let spec = RequestSpec {
            method: Method::from_token(req.method.as_str()),
            uri: req.ruri.as_str(),
            via_transport: dest.proto.via_name(),
            via_sent_by: &sent_by,
            branch: &branch,
            rport: dest.proto == super::transport::Proto::Udp,
            max_forwards: 70,
            from: req.from.as_str(),
            from_tag,
            to: req.to.as_str(),
            to_tag: (!req.to_tag.is_empty()).then_some(req.to_tag.as_str()),
            call_id,
            cseq,
            contact: (!req.contact.is_empty()).then_some(req.contact.as_str()),
            routes: &routes,
            headers: &extra,
            body,
        };
        let mut out = Vec::with_capacity(512 + req.body.len());
        if let Err(e) = write_request(&mut out, &spec) {
            tracing::warn!(%module, "cannot build the request: {e}");
            core.deliver(module, callback, 503, "Service Unavailable", None, Dispatch::Worker);
            return;
        }
        if let Err(Owner::Uac { module, callback }) =
            send_client(core, out.into(), dest, Owner::Uac { module, callback })
        {
            core.deliver(module, callback, 503, "Service Unavailable", None, Dispatch::Worker);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_headers() {
        assert_eq!(
            header_pairs("Event: presence\r\nX-A: b c\r\n").unwrap(),
            vec![("Event", "presence"), ("X-A", "b c")]
        );
        assert!(header_pairs("").unwrap().is_empty());
        assert!(header_pairs("no colon\r\n").is_err());
        assert!(header_pairs("Bad Name: x\r\n").is_err());
    }
}
