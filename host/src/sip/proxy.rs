//! The stateful relay (Kamailio's `t_relay`): a request leaves in a client transaction with
//! our Via on top, and its responses come back upstream through the server transaction.
//!
//! Next hop: the destination URI (`$du`) when set, else the first hop of a path vector, else
//! the first Route after popping ours (loose routing, RFC 3261 §16.4), else the Request-URI
//! (after `rewriteuri`), resolved per RFC 3263. A path vector (registrar's `lookup` of a
//! contact saved with Path, RFC 3327) becomes Route headers above the request's own. Max-Forwards is decremented (483 at
//! zero), a Record-Route is added on request (`record_route()`), INVITEs get a 100 Trying
//! upstream at once, and a CANCEL is answered here and sent downstream. ACKs to 2xx (no
//! transaction) and stray 2xx responses to INVITE are forwarded statelessly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use sip_message::{HeaderName, Message, Method, ReplyOptions, SipUri, write_reply};
use sip_transaction::TxId;

use super::context::{RequestCtx, SipMsg};
use super::core::{Dispatch, Owner, SipCore};
use super::edit::{Edits, first_header_start, line_range, remove_first_value};
use super::transport::{Dest, Proto, Source};

/// What the relay keeps per relayed request: the request (to answer it locally on timeout,
/// transport error or CANCEL) and the client transaction carrying it.
pub struct RelayState {
    pub request: SipMsg,
    pub src: Source,
    /// The client transaction carrying it, and where it went (a CANCEL follows it there).
    pub client: Option<(TxId, Dest)>,
    pub to_tag: String,
    /// Modules' callbacks for every reply of the client transaction (`sip_on_relay_reply`).
    pub watchers: Option<RelayWatchers>,
}

/// The callbacks modules registered for a relayed request's replies, with the module names.
/// Behind a mutex: calls for one transaction never overlap.
pub type RelayWatchers = Arc<Mutex<Vec<(String, plugin_api::ffi::FfiReplyCallback)>>>;

/// Tells the watchers about a reply (`msg`) or a local final (`code reason`): right here when
/// `dispatch` is inline (a UDP receiver, before the reply goes upstream, so a module sees the
/// 200 before the caller can send its ACK), else on a worker.
fn notify_watchers(
    core: &SipCore,
    watchers: RelayWatchers,
    code: u16,
    reason: &str,
    msg: Option<SipMsg>,
    dispatch: Dispatch,
) {
    let reason = reason.to_string();
    let run = move || {
        let (ffi_msg, reason) = match &msg {
            Some(m) => {
                (m.ffi(), m.view().reason().map(|r| String::from_utf8_lossy(r).into_owned()).unwrap_or_default())
            }
            None => (plugin_api::ffi::FfiMsg::EMPTY, reason),
        };
        let status = msg.as_ref().and_then(|m| m.view().status_code()).unwrap_or(code);
        let reply = plugin_api::ffi::FfiReply {
            status,
            reason: abi_stable::std_types::RStr::from_str(&reason),
            local: msg.is_none(),
            msg: ffi_msg,
        };
        let watchers = watchers.lock().unwrap_or_else(|e| e.into_inner());
        for (module, callback) in watchers.iter() {
            if let abi_stable::std_types::RErr(e) = callback.call(&reply) {
                tracing::error!(%module, "relay reply callback failed: {}", e.message);
                crate::services::plugin_error();
            }
        }
    };
    match dispatch {
        Dispatch::Inline => run(),
        Dispatch::Worker => core.workers.submit(Box::new(run)),
    }
}

/// A unique token for branches, tags and Call-IDs (unique, not secret).
pub fn unique_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        t ^ (u64::from(std::process::id()) << 32)
    });
    // SplitMix64 over seed + counter: distinct for every call, well spread.
    let mut z = seed.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("{:016x}", z ^ (z >> 31))
}

/// Builds a reply to `request` (for local answers).
pub fn build_reply(
    request: &Message<'_>,
    src: &Source,
    code: u16,
    reason: &str,
    to_tag: &str,
    headers: &[(&str, &str)],
    body: Option<sip_message::Body<'_>>,
) -> Option<Bytes> {
    let via = request.top_via().ok();
    // Compared as addresses, not as text: formatting the source address for every reply showed
    // in profiles, and most requests need no `received`.
    let via_host_differs = via.as_ref().is_none_or(|v| {
        v.host().as_str().trim_matches(['[', ']']).parse::<std::net::IpAddr>().ok() != Some(src.addr.ip())
    });
    let wants_rport = via.as_ref().and_then(|v| v.rport()).is_some();
    let add_received = !src.proto.reliable() && (via_host_differs || wants_rport);
    let received = if add_received { src.addr.ip().to_string() } else { String::new() };
    let opts = ReplyOptions {
        to_tag: (code > 100).then_some(to_tag),
        received: add_received.then_some(received.as_str()),
        rport: wants_rport.then_some(src.addr.port()),
        headers,
        body,
    };
    let mut out = Vec::with_capacity(512 + body.map_or(0, |b| b.bytes.len()));
    match write_reply(&mut out, request, code, reason, &opts) {
        Ok(()) => Some(out.into()),
        Err(e) => {
            tracing::warn!("cannot build a {code} reply: {e}");
            None
        }
    }
}

/// Sends `bytes` as the response of server transaction `server` with status `code`.
pub fn respond(core: &Arc<SipCore>, server: TxId, code: u16, bytes: Bytes) -> bool {
    let now = Instant::now();
    core.with_layer(
        |l| l.send_response(now, server, code, bytes),
        |sent| match sent {
            Some((dest, bytes)) => {
                core.send(&dest, bytes, None);
                true
            }
            None => false,
        },
    )
}

/// Answers a relayed request locally (timeout, transport error, unresolvable next hop).
pub fn reply_upstream(core: &Arc<SipCore>, server: TxId, code: u16, reason: &str) {
    let mut state = core.relayed.lock().unwrap_or_else(|e| e.into_inner()).remove(&server);
    if let Some(watchers) = state.as_mut().and_then(|s| s.watchers.take()) {
        notify_watchers(core, watchers, code, reason, None, Dispatch::Worker);
    }
    if let Some(s) = state
        && let Some(bytes) = build_reply(&s.request.view(), &s.src, code, reason, &s.to_tag, &[], None)
    {
        respond(core, server, code, bytes);
    }
}

/// Forwards a response upstream: our Via off, through the server transaction. The relay's
/// watchers see it first (`first`: not an additional 2xx).
pub fn forward_response(core: &Arc<SipCore>, server: TxId, msg: &SipMsg, first: bool, dispatch: Dispatch) {
    let view = msg.view();
    let code = view.status_code().unwrap_or(0);
    let watchers = if !first {
        None
    } else if code >= 200 {
        core.relayed.lock().unwrap_or_else(|e| e.into_inner()).remove(&server).and_then(|mut s| s.watchers.take())
    } else {
        core.relayed.lock().unwrap_or_else(|e| e.into_inner()).get(&server).and_then(|s| s.watchers.clone())
    };
    if let Some(watchers) = watchers {
        let owned = SipMsg { buf: msg.buf.clone(), parsed: msg.parsed.clone() };
        notify_watchers(core, watchers, code, "", Some(owned), dispatch);
    }
    if code == 100 {
        return; // hop by hop
    }
    let mut edits = Edits::new();
    remove_first_value(&mut edits, &view, HeaderName::VIA);
    let bytes: Bytes = edits.apply(&msg.buf).into();
    if code >= 200 {
        core.relayed.lock().unwrap_or_else(|e| e.into_inner()).remove(&server);
    }
    respond(core, server, code, bytes);
}

/// A response that matches no client transaction (a retransmitted 2xx to INVITE): forwarded
/// statelessly when our Via is on top, to the address in the next Via.
pub fn forward_stray(core: &Arc<SipCore>, msg: &SipMsg) {
    let view = msg.view();
    let mut vias = view.vias();
    let (Some(Ok(top)), Some(Ok(next))) = (vias.next(), vias.next()) else { return };
    if !core.is_myself_host(top.host().as_str(), top.port()) {
        return;
    }
    let proto = if next.transport().eq_ignore_ascii_case("tcp") { Proto::Tcp } else { Proto::Udp };
    let ip = next.received_ip().or_else(|| next.host().ip());
    let Some(ip) = ip else {
        tracing::debug!("stray response: next Via has no IP to send to");
        return;
    };
    let port = match next.rport() {
        Some(Some(p)) => p,
        _ => next.port().unwrap_or(5060),
    };
    let mut edits = Edits::new();
    remove_first_value(&mut edits, &view, HeaderName::VIA);
    let bytes: Bytes = edits.apply(&msg.buf).into();
    core.send(&Dest { proto, addr: std::net::SocketAddr::new(ip, port), conn: None }, bytes, None);
}

/// A CANCEL arrived (with its own server transaction `cancel`).
pub fn on_cancel(core: &Arc<SipCore>, msg: SipMsg, src: Source, cancel: TxId, invite: Option<TxId>) {
    let view = msg.view();
    let to_tag = RequestCtx::new(SipMsg { buf: msg.buf.clone(), parsed: msg.parsed.clone() }, src, None).to_tag;
    let client = invite
        .and_then(|i| core.relayed.lock().unwrap_or_else(|e| e.into_inner()).get(&i).and_then(|s| s.client.clone()));
    let (code, reason) = if invite.is_some() { (200, "OK") } else { (481, "Call/Transaction Does Not Exist") };
    if let Some(bytes) = build_reply(&view, &src, code, reason, &to_tag, &[], None) {
        respond(core, cancel, code, bytes);
    }
    let Some((client, dest)) = client else { return };
    let cancel_bytes = core.layer.lock().unwrap_or_else(|e| e.into_inner()).cancel_request(client);
    if let Some(bytes) = cancel_bytes {
        let _ = send_client(core, bytes, dest, Owner::Cancel);
    }
}

/// Starts a client transaction for `bytes` to `dest` owned by `owner`; a transport error ends
/// it with a local 503 for the owner. When no transaction can be started, the owner comes back.
pub fn send_client(core: &Arc<SipCore>, bytes: Bytes, dest: Dest, owner: Owner) -> Result<TxId, Owner> {
    let now = Instant::now();
    let reliable = if dest.proto.reliable() {
        sip_transaction::Reliability::Reliable
    } else {
        sip_transaction::Reliability::Unreliable
    };
    let mut owner = Some(owner);
    let sent = core.with_layer(
        |l| {
            let r = l.send_request(now, bytes, dest.clone(), reliable);
            if let Ok((tx, _)) = &r {
                // Registered before the request leaves, so no response can beat it.
                if let Some(o) = owner.take() {
                    core.owners.lock().unwrap_or_else(|e| e.into_inner()).insert(*tx, o);
                }
            }
            r
        },
        |r| r,
    );
    match sent {
        Ok((tx, (dest, bytes))) => {
            let c = core.clone();
            core.send(
                &dest,
                bytes,
                Some(Box::new(move || {
                    let now = Instant::now();
                    c.with_layer(|l| l.transport_error(now, tx), |()| ());
                })),
            );
            Ok(tx)
        }
        Err(e) => {
            tracing::warn!("cannot start a client transaction: {e}");
            // `owner` is still ours: the layer refused before registering anything.
            Err(owner.take().unwrap_or(Owner::Cancel))
        }
    }
}

/// Where to send a request: the first Route (after popping ours) or the Request-URI.
struct NextHop {
    uri: String,
    pop_route: bool,
    /// A path vector's Route headers to add (name-addrs, in order).
    path: Option<Vec<String>>,
    /// Header lines (entries of the header index) left out (`consume_credentials`).
    removed: Vec<u32>,
}

/// The destination URI, when set, only changes where the request goes: our own Route is
/// still popped, as Kamailio's loose routing does before `$du` is used. Without one, a path
/// vector's first hop is next (it becomes the topmost Route).
fn next_hop(
    core: &SipCore,
    view: &Message<'_>,
    ruri: &str,
    dst_uri: Option<&str>,
    path: Option<Vec<String>>,
) -> NextHop {
    let mut routes = view.routes();
    let first = routes.next().and_then(Result::ok).map(|r| r.uri_str().to_string());
    let hop = match first {
        Some(top) if core.is_myself(&top) => {
            let second = routes.next().and_then(Result::ok).map(|r| r.uri_str().to_string());
            NextHop {
                uri: second.unwrap_or_else(|| ruri.to_string()),
                pop_route: true,
                path: None,
                removed: Vec::new(),
            }
        }
        Some(top) => NextHop { uri: top, pop_route: false, path: None, removed: Vec::new() },
        None => NextHop { uri: ruri.to_string(), pop_route: false, path: None, removed: Vec::new() },
    };
    let path = path.filter(|p| !p.is_empty());
    let first_path = path
        .as_ref()
        .and_then(|p| p.first())
        .and_then(|r| r.strip_prefix('<')?.split_once('>').map(|(u, _)| u.to_string()));
    match (dst_uri, first_path) {
        (Some(du), _) => NextHop { uri: du.to_string(), path, ..hop },
        (None, Some(p)) => NextHop { uri: p, path, ..hop },
        (None, None) => hop,
    }
}

/// Where a path vector's Route headers go: before the first Route header, or after the last
/// Via when there is none (Kamailio's `insert_path_as_route`).
fn path_position(view: &Message<'_>) -> usize {
    let entries = view.header_entries();
    if let Some(e) = entries.iter().find(|e| e.name == HeaderName::ROUTE) {
        return e.name_start as usize;
    }
    entries
        .iter()
        .rposition(|e| e.name == HeaderName::VIA)
        .and_then(|i| line_range(view, i))
        .map_or_else(|| first_header_start(view), |(_, end)| end)
}

/// A SIP URI whose host is an IP address, as a destination, without DNS (RFC 3263 §4.1-4.2:
/// the transport param or UDP, the port or 5060); `None` for names, `sips:`, TLS, or a
/// transport this host does not listen on (the full resolver then decides or explains).
pub fn resolve_literal(core: &SipCore, uri: &str) -> Option<Dest> {
    let u = SipUri::parse(uri).ok()?;
    if u.scheme() == sip_message::uri::Scheme::Sips {
        return None;
    }
    let ip: std::net::IpAddr = u.host()?.as_str().trim_start_matches('[').trim_end_matches(']').parse().ok()?;
    let proto = match u.transport() {
        None => Proto::Udp,
        Some(t) if t.eq_ignore_ascii_case("udp") => Proto::Udp,
        Some(t) if t.eq_ignore_ascii_case("tcp") => Proto::Tcp,
        Some(_) => return None,
    };
    core.transports()?.listeners.iter().any(|l| l.proto == proto).then(|| Dest {
        proto,
        addr: std::net::SocketAddr::new(ip, u.port().unwrap_or(5060)),
        conn: None,
    })
}

/// Resolves a SIP URI to a destination we can send to (UDP or TCP).
pub async fn resolve(core: &SipCore, uri: &str) -> Result<Dest, String> {
    let u = SipUri::parse(uri).map_err(|e| format!("bad next-hop URI `{uri}`: {e}"))?;
    let host = u.host().ok_or_else(|| format!("next-hop URI `{uri}` has no host"))?;
    let transport = match u.transport().map(|t| t.to_ascii_lowercase()) {
        Some(t) if t == "udp" => Some(sip_resolve::Transport::Udp),
        Some(t) if t == "tcp" => Some(sip_resolve::Transport::Tcp),
        Some(t) if t == "tls" => Some(sip_resolve::Transport::Tls),
        _ => None,
    };
    let secure = u.scheme() == sip_message::uri::Scheme::Sips;
    let req = sip_resolve::Request { host: host.as_str(), port: u.port(), transport, secure };
    let targets = core.resolver.resolve(&req).await.map_err(|e| e.to_string())?;
    let have = |p: Proto| core.transports().is_some_and(|t| t.listeners.iter().any(|l| l.proto == p));
    targets
        .into_iter()
        .find_map(|t| {
            let proto = match t.transport {
                sip_resolve::Transport::Udp => Proto::Udp,
                sip_resolve::Transport::Tcp => Proto::Tcp,
                sip_resolve::Transport::Tls => return None,
            };
            have(proto).then_some(Dest { proto, addr: t.addr, conn: None })
        })
        .ok_or_else(|| format!("no target of `{uri}` uses a transport this host listens on"))
}

/// The edits every forwarded request gets.
fn forward_edits(
    core: &SipCore,
    view: &Message<'_>,
    hop: &NextHop,
    new_ruri: Option<&str>,
    record_route: bool,
    dest: &Dest,
    branch: &str,
) -> Option<Edits> {
    let transports = core.transports()?;
    let listener = transports.listener_for(dest.proto, &dest.addr)?;
    let (adv_host, adv_port) = (&listener.advertised.0, listener.advertised.1);
    let mut edits = Edits::new();
    let top = first_header_start(view);
    edits.insert(top, format!("Via: SIP/2.0/{} {adv_host}:{adv_port};branch={branch}\r\n", dest.proto.via_name()));
    if record_route {
        let transport =
            if dest.proto == Proto::Udp { String::new() } else { format!(";transport={}", dest.proto.param()) };
        edits.insert(top, format!("Record-Route: <sip:{adv_host}:{adv_port}{transport};lr>\r\n"));
    }
    if let Some(uri) = new_ruri {
        let s = view.start_line();
        edits.replace(s.uri_start as usize, s.uri_end as usize, uri.as_bytes().to_vec());
    }
    if hop.pop_route {
        remove_first_value(&mut edits, view, HeaderName::ROUTE);
    }
    if let Some(path) = &hop.path {
        let block: String = path.iter().map(|r| format!("Route: {r}\r\n")).collect();
        edits.insert(path_position(view), block);
    }
    for &i in &hop.removed {
        if let Some((start, end)) = line_range(view, i as usize) {
            edits.replace(start, end, Vec::new());
        }
    }
    match view.header_entries().iter().find(|e| e.name == HeaderName::MAX_FORWARDS) {
        Some(e) => {
            let n: u32 =
                std::str::from_utf8(view.entry_value(e)).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(70);
            edits.replace(e.value_start as usize, e.value_end as usize, n.saturating_sub(1).to_string());
        }
        None => edits.insert(top, "Max-Forwards: 69\r\n"),
    }
    Some(edits)
}

/// Relays the request of `ctx` (after its route ran). A next hop that is an IP address is
/// forwarded at once on this thread; a name is resolved on the runtime first.
pub fn relay(core: &Arc<SipCore>, ctx: RequestCtx) {
    let view = ctx.msg.view();
    if matches!(view.max_forwards(), Ok(Some(0))) {
        if view.method() != Some(Method::Ack)
            && let Err(e) = super::router::reply(core, &ctx, 483, "Too Many Hops", &[], None)
        {
            tracing::debug!("483 not sent: {e}");
        }
        return;
    }
    let is_invite = view.method() == Some(Method::Invite);
    let ruri = ctx.ruri();
    let mut hop = next_hop(core, &view, &ruri, ctx.dst_uri.borrow().as_deref(), ctx.path.borrow().clone());
    hop.removed = ctx.removed_headers.borrow().clone();
    let new_ruri = ctx.new_ruri.borrow().clone();
    let record_route = ctx.record_route.get();
    let Some(server) = ctx.tx else {
        // No transaction (an ACK to a 2xx): forward statelessly, with a branch derived from the
        // incoming one so its retransmissions look the same downstream.
        let branch = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            view.top_via().ok().and_then(|v| v.branch()).unwrap_or("").hash(&mut h);
            format!("z9hG4bK{:016x}a", h.finish())
        };
        let forward_ack = move |core: &Arc<SipCore>, msg: &SipMsg, hop: &NextHop, dest: Dest| {
            if let Some(edits) = forward_edits(core, &msg.view(), hop, new_ruri.as_deref(), false, &dest, &branch) {
                core.send(&dest, edits.apply(&msg.buf).into(), None);
            }
        };
        if let Some(dest) = resolve_literal(core, &hop.uri) {
            forward_ack(core, &ctx.msg, &hop, dest);
            return;
        }
        let (core, msg) = (core.clone(), ctx.msg);
        core.runtime.clone().spawn(async move {
            match resolve(&core, &hop.uri).await {
                Ok(dest) => forward_ack(&core, &msg, &hop, dest),
                Err(e) => tracing::info!("ACK not forwarded: {e}"),
            }
        });
        return;
    };
    if is_invite && let Some(bytes) = build_reply(&view, &ctx.src, 100, "Trying", &ctx.to_tag, &[], None) {
        respond(core, server, 100, bytes);
    }
    core.relayed.lock().unwrap_or_else(|e| e.into_inner()).insert(
        server,
        RelayState {
            request: SipMsg { buf: ctx.msg.buf.clone(), parsed: ctx.msg.parsed.clone() },
            src: ctx.src,
            client: None,
            to_tag: ctx.to_tag.clone(),
            watchers: {
                let w = std::mem::take(&mut *ctx.relay_watchers.borrow_mut());
                (!w.is_empty()).then(|| Arc::new(Mutex::new(w)))
            },
        },
    );
    let forward = move |core: &Arc<SipCore>, msg: &SipMsg, hop: &NextHop, dest: Dest| {
        let branch = format!("z9hG4bK{}", unique_token());
        let Some(edits) = forward_edits(core, &msg.view(), hop, new_ruri.as_deref(), record_route, &dest, &branch)
        else {
            reply_upstream(core, server, 500, "Server Internal Error");
            return;
        };
        let bytes: Bytes = edits.apply(&msg.buf).into();
        match send_client(core, bytes, dest.clone(), Owner::Proxy { server }) {
            Ok(client) => {
                if let Some(s) = core.relayed.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&server) {
                    s.client = Some((client, dest));
                }
            }
            Err(_) => reply_upstream(core, server, 500, "Server Internal Error"),
        }
    };
    if let Some(dest) = resolve_literal(core, &hop.uri) {
        forward(core, &ctx.msg, &hop, dest);
        return;
    }
    let (core, msg) = (core.clone(), ctx.msg);
    core.runtime.clone().spawn(async move {
        match resolve(&core, &hop.uri).await {
            Ok(dest) => forward(&core, &msg, &hop, dest),
            Err(e) => {
                tracing::info!(next_hop = %hop.uri, "relay failed: {e}");
                reply_upstream(&core, server, 478, "Unresolvable destination");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::context::route_set;

    fn with_path(raw: &str, path: &str) -> String {
        let parsed = sip_message::parse(raw.as_bytes()).unwrap();
        let view = Message::new(raw.as_bytes(), &parsed);
        let mut edits = Edits::new();
        let block: String = route_set(path).unwrap().iter().map(|r| format!("Route: {r}\r\n")).collect();
        edits.insert(path_position(&view), block);
        String::from_utf8(edits.apply(raw.as_bytes())).unwrap()
    }

    #[test]
    fn path_vector_becomes_route_headers_in_order() {
        assert_eq!(
            route_set("<sip:edge1.test;lr>, <sip:edge2.test;lr>;x=\"a,b\"").unwrap(),
            ["<sip:edge1.test;lr>", "<sip:edge2.test;lr>;x=\"a,b\""]
        );
        assert_eq!(route_set("sip:bare.test"), None, "a Path value is a name-addr");
        assert_eq!(route_set("<mailto:x@y>"), None);
        assert_eq!(route_set("<sip:a;lr>\r\nX: y"), None);

        // No Route: after the last Via.
        let raw = "MESSAGE sip:a@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP 192.0.2.8;branch=z9hG4bK0\r\nTo: <sip:a@x>\r\nContent-Length: 0\r\n\r\n";
        let out = with_path(raw, "<sip:edge1.test;lr>,<sip:edge2.test;lr>");
        assert!(
            out.contains(
                "branch=z9hG4bK0\r\nRoute: <sip:edge1.test;lr>\r\nRoute: <sip:edge2.test;lr>\r\nTo: <sip:a@x>"
            ),
            "{out}"
        );
        // With Route headers: above the first one.
        let raw = "MESSAGE sip:a@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\r\nRoute: <sip:next.test;lr>\r\nTo: <sip:a@x>\r\nContent-Length: 0\r\n\r\n";
        let out = with_path(raw, "<sip:edge1.test;lr>");
        assert!(out.contains("z9hG4bK1\r\nRoute: <sip:edge1.test;lr>\r\nRoute: <sip:next.test;lr>\r\n"), "{out}");
    }
}
