//! Functions the core provides to routes, with Kamailio's names and return conventions
//! (positive: true, negative: false, 0: stop the route).

use std::sync::Arc;

use super::super::context::RequestCtx;
use super::super::core::SipCore;
use super::reply;

/// A core function: the core, the request, the expanded arguments.
pub type BuiltinFn = fn(&Arc<SipCore>, &RequestCtx, &[String]) -> i32;

/// A core function's declaration.
pub struct Builtin {
    pub name: &'static str,
    pub min_args: u32,
    pub max_args: u32,
    pub run: BuiltinFn,
    pub doc: &'static str,
}

macro_rules! builtin {
    ($name:literal, $min:literal..=$max:literal, $run:expr, $doc:literal) => {
        Builtin { name: $name, min_args: $min, max_args: $max, run: $run, doc: $doc }
    };
}

/// Every core function.
pub const BUILTINS: &[Builtin] = &[
    builtin!("sl_send_reply", 2..=2, send_reply, "sends a reply: sl_send_reply(code, reason)"),
    builtin!("send_reply", 2..=2, send_reply, "sends a reply: send_reply(code, reason)"),
    builtin!("t_reply", 2..=2, send_reply, "sends a reply through the transaction: t_reply(code, reason)"),
    builtin!("t_relay", 0..=0, t_relay, "forwards the request statefully when the route ends"),
    builtin!("record_route", 0..=0, record_route, "adds a Record-Route when the request is relayed"),
    builtin!("rewriteuri", 1..=1, rewrite_uri, "replaces the Request-URI: rewriteuri(uri)"),
    builtin!("seturi", 1..=1, rewrite_uri, "replaces the Request-URI: seturi(uri)"),
    builtin!("drop", 0..=0, stop, "stops the route without a reply"),
    builtin!("exit", 0..=0, stop, "stops the route"),
    builtin!("setflag", 1..=1, set_flag, "sets a message flag (0..31)"),
    builtin!("resetflag", 1..=1, reset_flag, "resets a message flag"),
    builtin!("isflagset", 1..=1, is_flag_set, "true when the message flag is set"),
    builtin!("setbflag", 1..=2, set_bflag, "sets a branch flag of branch 0: setbflag(flag[, 0])"),
    builtin!("resetbflag", 1..=2, reset_bflag, "resets a branch flag of branch 0"),
    builtin!("isbflagset", 1..=2, is_bflag_set, "true when the branch flag of branch 0 is set"),
    builtin!(
        "append_to_reply",
        1..=1,
        append_to_reply,
        "adds header lines to the replies: append_to_reply(\"X: y\\r\\n\")"
    ),
    builtin!("set_avp", 2..=2, set_avp, "adds a value to an AVP: set_avp(name, value)"),
    builtin!("is_myself", 1..=1, is_myself, "true when the URI points at this host (Kamailio's `uri == myself`)"),
    builtin!("mf_process_maxfwd_header", 1..=1, max_forwards, "false when Max-Forwards is 0 (reply 483 with on_fail)"),
    builtin!("xlog", 1..=2, xlog, "logs a line: xlog([level,] text), levels L_ERR L_WARN L_NOTICE L_INFO L_DBG"),
];

/// Looks up a core function.
pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

fn flag_arg(args: &[String]) -> Option<u32> {
    args.first().and_then(|a| a.trim().parse::<u32>().ok()).filter(|f| *f <= 31)
}

fn send_reply(core: &Arc<SipCore>, ctx: &RequestCtx, args: &[String]) -> i32 {
    let Some(code) = args.first().and_then(|c| c.trim().parse::<u16>().ok()) else {
        tracing::error!("sl_send_reply: `{}` is not a status code", args.first().map_or("", String::as_str));
        return -1;
    };
    match reply(core, ctx, code, args.get(1).map_or("", String::as_str), &[], None) {
        Ok(()) => 1,
        Err(e) => {
            tracing::warn!("sl_send_reply({code}): {e}");
            -1
        }
    }
}

fn t_relay(_: &Arc<SipCore>, ctx: &RequestCtx, _: &[String]) -> i32 {
    ctx.relayed.set(true);
    1
}

fn record_route(_: &Arc<SipCore>, ctx: &RequestCtx, _: &[String]) -> i32 {
    ctx.record_route.set(true);
    1
}

fn rewrite_uri(_: &Arc<SipCore>, ctx: &RequestCtx, args: &[String]) -> i32 {
    let uri = args.first().map_or("", |s| s.trim());
    if sip_message::SipUri::parse(uri).is_err() {
        tracing::error!("rewriteuri: `{uri}` is not a SIP URI");
        return -1;
    }
    *ctx.new_ruri.borrow_mut() = Some(uri.to_string());
    1
}

fn stop(_: &Arc<SipCore>, _: &RequestCtx, _: &[String]) -> i32 {
    0
}

fn flag_op(ctx: &RequestCtx, branch: bool, op: u8, args: &[String]) -> i32 {
    let Some(f) = flag_arg(args) else {
        tracing::error!("flag must be a number from 0 to 31, got `{}`", args.first().map_or("", String::as_str));
        return -1;
    };
    let value = ctx.flag(branch, op, f);
    if op == 0 && !value { -1 } else { 1 }
}

fn set_flag(_: &Arc<SipCore>, ctx: &RequestCtx, a: &[String]) -> i32 {
    flag_op(ctx, false, 1, a)
}
fn reset_flag(_: &Arc<SipCore>, ctx: &RequestCtx, a: &[String]) -> i32 {
    flag_op(ctx, false, 2, a)
}
fn is_flag_set(_: &Arc<SipCore>, ctx: &RequestCtx, a: &[String]) -> i32 {
    flag_op(ctx, false, 0, a)
}
fn set_bflag(_: &Arc<SipCore>, ctx: &RequestCtx, a: &[String]) -> i32 {
    flag_op(ctx, true, 1, a)
}
fn reset_bflag(_: &Arc<SipCore>, ctx: &RequestCtx, a: &[String]) -> i32 {
    flag_op(ctx, true, 2, a)
}
fn is_bflag_set(_: &Arc<SipCore>, ctx: &RequestCtx, a: &[String]) -> i32 {
    flag_op(ctx, true, 0, a)
}

fn append_to_reply(_: &Arc<SipCore>, ctx: &RequestCtx, args: &[String]) -> i32 {
    let text = args.first().map_or("", String::as_str);
    let mut added = 0;
    for line in text.split("\r\n").map(|l| l.trim_end_matches('\n')).filter(|l| !l.trim().is_empty()) {
        match line.split_once(':') {
            Some((n, v)) if !n.trim().is_empty() && !n.contains(' ') => {
                ctx.reply_headers.borrow_mut().push((n.trim().to_string(), v.trim().to_string()));
                added += 1;
            }
            _ => {
                tracing::error!("append_to_reply: `{line}` is not a header line");
                return -1;
            }
        }
    }
    if added > 0 { 1 } else { -1 }
}

fn set_avp(_: &Arc<SipCore>, ctx: &RequestCtx, args: &[String]) -> i32 {
    let name = args.first().map_or("", |s| s.trim());
    if name.is_empty() {
        return -1;
    }
    ctx.push_avp(name, args.get(1).map_or("", String::as_str));
    1
}

fn is_myself(core: &Arc<SipCore>, _: &RequestCtx, args: &[String]) -> i32 {
    if core.is_myself(args.first().map_or("", |s| s.trim())) { 1 } else { -1 }
}

fn max_forwards(_: &Arc<SipCore>, ctx: &RequestCtx, _: &[String]) -> i32 {
    match ctx.msg.view().max_forwards() {
        Ok(Some(0)) => -1,
        Ok(_) => 1,
        Err(_) => -1,
    }
}

fn xlog(_: &Arc<SipCore>, _: &RequestCtx, args: &[String]) -> i32 {
    let (level, text) = match args {
        [level, text] => (level.as_str(), text.as_str()),
        [text] => ("L_INFO", text.as_str()),
        _ => return -1,
    };
    let text = text.trim_end_matches('\n');
    match level {
        "L_ALERT" | "L_BUG" | "L_CRIT" | "L_ERR" => tracing::error!(target: "script", "{text}"),
        "L_WARN" => tracing::warn!(target: "script", "{text}"),
        "L_NOTICE" | "L_INFO" => tracing::info!(target: "script", "{text}"),
        _ => tracing::debug!(target: "script", "{text}"),
    }
    1
}
