//! Routes: the `[[route]]` table, run on a worker for every new request.
//!
//! The first route whose conditions match (method, Request-URI regex, header regexes, `myself`)
//! handles the request: its functions run in order with their arguments expanded; a function
//! returning 0 stops the route (Kamailio's `exit`); a negative return with `on_fail` set sends
//! that reply and stops; a panic in a module's function is answered 500 and stops. Then the
//! route's `reply` is sent (if nothing replied yet) or the request is relayed. A request no
//! route handles gets `[core] default_reply` (501 Not Implemented), except ACK, which is never
//! answered.

pub mod builtins;
pub mod pv;

use std::ffi::c_void;
use std::sync::Arc;

use abi_stable::std_types::{RErr, ROk, RSlice, RStr};
use plugin_api::ffi::{FfiCall, FfiError, PluginRootRef};
use regex::Regex;
use sip_message::{Body, Method};

use self::pv::Template;
use super::context::{RequestCtx, ffi_peer};
use super::core::SipCore;
use super::proxy::{build_reply, respond};
use crate::config::RouteDef;
use crate::config::route::ReplyDef;
use crate::loader::LoadedModule;

enum ActionKind {
    Builtin(builtins::BuiltinFn),
    Module { module: String, root: PluginRootRef, index: u32 },
}

struct Action {
    name: String,
    kind: ActionKind,
    args: Vec<Template>,
}

struct Route {
    name: String,
    methods: Vec<String>,
    ruri: Option<Regex>,
    headers: Vec<(String, Regex)>,
    myself: Option<bool>,
    actions: Vec<Action>,
    on_fail: Option<ReplyDef>,
    reply: Option<ReplyDef>,
    relay: bool,
}

/// The compiled route table.
pub struct Router {
    routes: Vec<Route>,
    default_reply: Option<(u16, String)>,
}

/// Outcome of one action.
enum Flow {
    Continue,
    Stop,
}

impl Router {
    /// Compiles the checked routes against the loaded modules.
    pub fn compile(
        routes: &[RouteDef],
        modules: &[LoadedModule],
        default_reply: Option<(u16, String)>,
    ) -> Result<Router, String> {
        let mut out = Vec::new();
        for r in routes {
            let mut actions = Vec::new();
            for call in &r.actions {
                let kind = match builtins::find(&call.name) {
                    Some(b) => ActionKind::Builtin(b.run),
                    None => {
                        let (m, index) = modules
                            .iter()
                            .find_map(|m| {
                                m.info.functions.iter().position(|f| f.name.as_str() == call.name).map(|i| (m, i))
                            })
                            .ok_or_else(|| format!("unknown function `{}`", call.name))?;
                        ActionKind::Module { module: m.name.clone(), root: m.root, index: index as u32 }
                    }
                };
                let args = call.args.iter().map(|a| Template::parse(a)).collect::<Result<Vec<_>, _>>()?;
                actions.push(Action { name: call.name.clone(), kind, args });
            }
            out.push(Route {
                name: r.name.clone(),
                methods: r.methods.clone(),
                ruri: r.ruri.clone(),
                headers: r.headers.clone(),
                myself: r.myself,
                actions,
                on_fail: r.on_fail.clone(),
                reply: r.reply.clone(),
                relay: r.relay,
            });
        }
        Ok(Router { routes: out, default_reply })
    }

    fn matches(route: &Route, core: &SipCore, ctx: &RequestCtx) -> bool {
        let view = ctx.msg.view();
        if !route.methods.is_empty() {
            let m = view.method().map(|m| m.as_str()).unwrap_or("");
            if !route.methods.iter().any(|x| x.eq_ignore_ascii_case(m)) {
                return false;
            }
        }
        if route.ruri.is_some() || route.myself.is_some() {
            let ruri = ctx.ruri();
            if let Some(re) = &route.ruri
                && !re.is_match(&ruri)
            {
                return false;
            }
            if let Some(want) = route.myself
                && core.is_myself(&ruri) != want
            {
                return false;
            }
        }
        route
            .headers
            .iter()
            .all(|(name, re)| view.headers_named(name).any(|v| re.is_match(&String::from_utf8_lossy(v))))
    }

    /// Runs the routes for `ctx`.
    pub fn run(&self, core: &Arc<SipCore>, ctx: RequestCtx) {
        let is_ack = ctx.msg.view().method() == Some(Method::Ack);
        let Some(route) = self.routes.iter().find(|r| Self::matches(r, core, &ctx)) else {
            if !is_ack && let Some((code, reason)) = &self.default_reply {
                let _ = reply(core, &ctx, *code, reason, &[], None);
            }
            finish(core, ctx);
            return;
        };
        let mut stopped = false;
        for action in &route.actions {
            match self.call(core, &ctx, route, action) {
                Flow::Continue => {}
                Flow::Stop => {
                    stopped = true;
                    break;
                }
            }
        }
        if !stopped {
            if route.relay {
                ctx.relayed.set(true);
            }
            if let Some(r) = &route.reply
                && !ctx.replied.get()
                && !ctx.relayed.get()
                && !is_ack
            {
                let _ = reply(core, &ctx, r.code, &r.reason, &[], None);
            }
        }
        finish(core, ctx);
    }

    fn call(&self, core: &Arc<SipCore>, ctx: &RequestCtx, route: &Route, action: &Action) -> Flow {
        let args: Vec<String> = action.args.iter().map(|t| t.expand(ctx)).collect();
        let ret = match &action.kind {
            ActionKind::Builtin(f) => f(core, ctx, &args),
            ActionKind::Module { module, root, index } => {
                let rargs: Vec<RStr<'_>> = args.iter().map(|a| RStr::from_str(a)).collect();
                let call = FfiCall {
                    args: RSlice::from_slice(&rargs),
                    ctx: ctx as *const RequestCtx as *const c_void,
                    msg: ctx.msg.ffi(),
                    peer: ffi_peer(&ctx.src),
                };
                match (root.call_function())(*index, &call) {
                    ROk(r) => r,
                    RErr(FfiError { kind, message }) => {
                        crate::services::plugin_error();
                        if kind == FfiError::PANIC {
                            tracing::error!(%module, function = %action.name, route = %route.name, "function panicked: {message}");
                            if !ctx.replied.get() {
                                let _ = reply(core, ctx, 500, "Server Internal Error", &[], None);
                            }
                            return Flow::Stop;
                        }
                        tracing::error!(%module, function = %action.name, route = %route.name, "function failed: {message}");
                        -1
                    }
                }
            }
        };
        if ret == 0 {
            return Flow::Stop;
        }
        if ret < 0
            && let Some(r) = &route.on_fail
        {
            if !ctx.replied.get() {
                let _ = reply(core, ctx, r.code, &r.reason, &[], None);
            }
            return Flow::Stop;
        }
        Flow::Continue
    }
}

/// After the route: relay if asked (and nothing replied), else let go of a transaction that
/// got no final reply (Kamailio leaves such requests unanswered too).
fn finish(core: &Arc<SipCore>, ctx: RequestCtx) {
    if ctx.relayed.get() && !ctx.replied.get() {
        super::proxy::relay(core, ctx);
        return;
    }
    if let (Some(tx), false) = (ctx.tx, ctx.replied.get()) {
        core.with_layer(|l| l.abort(tx), |()| ());
    }
}

/// Replies to the request of `ctx` through its server transaction (statelessly when it has
/// none), with the headers `append_to_reply` collected plus `extra`.
pub fn reply(
    core: &Arc<SipCore>,
    ctx: &RequestCtx,
    code: u16,
    reason: &str,
    extra: &[(&str, &str)],
    body: Option<Body<'_>>,
) -> Result<(), String> {
    let view = ctx.msg.view();
    if view.method() == Some(Method::Ack) {
        return Err("an ACK is never answered".into());
    }
    if !(100..=699).contains(&code) {
        return Err(format!("{code} is not a SIP status code"));
    }
    if ctx.replied.get() {
        return Err("a final reply was already sent".into());
    }
    let collected = ctx.reply_headers.borrow();
    let mut headers: Vec<(&str, &str)> = collected.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    headers.extend_from_slice(extra);
    let bytes = build_reply(&view, &ctx.src, code, reason, &ctx.to_tag, &headers, body)
        .ok_or("the reply could not be built")?;
    let sent = match ctx.tx {
        Some(tx) => respond(core, tx, code, bytes),
        None => {
            core.send(&super::core::reply_dest(&view, &ctx.src), bytes, None);
            true
        }
    };
    if !sent {
        return Err("the transaction is gone".into());
    }
    if code >= 200 {
        ctx.replied.set(true);
    }
    Ok(())
}
