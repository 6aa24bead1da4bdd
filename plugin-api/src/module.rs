//! What a module is and what it declares: the [`Module`] trait and the [`ModuleInfo`] builder.

use std::ops::RangeInclusive;

use abi_stable::std_types::{RNone, RSome, RString, RVec};

use crate::Error;
use crate::ffi::{FfiCall, FfiFunctionSpec, FfiModuleInfo, FfiParamKind, FfiParamSpec, FfiParamValue, FfiRpcSpec};
use crate::host::Host;
use crate::params::Params;
use crate::rpc::{DelayedReply, RpcCall, RpcResult};
use crate::sip::{Message, Peer, RequestContext};

/// A module: the type a plugin exports with [`export_module!`](crate::export_module).
///
/// The host calls [`Module::info`] when it loads the plugin (to validate the config against the
/// declaration and to print `puahost params`), [`Module::init`] once after every modparam was
/// validated, [`Module::child_init`] on each worker thread, and [`Module::destroy`] at shutdown.
/// All of them, and every handler the declaration names, run with panics caught: a panic is
/// reported to the host as an error of this module and the host keeps running.
pub trait Module: Send + Sync + Sized + 'static {
    /// The declaration: name, version, requirements, modparams, functions, RPCs, exported APIs.
    fn info() -> ModuleInfo<Self>;

    /// Builds the module from its validated modparams. Bind other modules' APIs and register
    /// timers, metrics and exported APIs here.
    fn init(host: &Host, params: &Params) -> Result<Self, Error>;

    /// Runs on worker thread `rank` (1-based) before it takes work.
    fn child_init(&self, _host: &Host, _rank: u32) -> Result<(), Error> {
        Ok(())
    }

    /// Runs once at shutdown, in reverse load order; flush state to the database here.
    fn destroy(&self, _host: &Host) {}
}

/// Where a config function may be called from, as Kamailio's route-type flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteKinds(pub u32);

impl RouteKinds {
    /// `[[route]]`: requests.
    pub const REQUEST: Self = Self(1);
    /// Failure routes (a branch failed).
    pub const FAILURE: Self = Self(2);
    /// Reply routes (a reply arrived).
    pub const ONREPLY: Self = Self(4);
    /// Branch routes (a branch is about to be sent).
    pub const BRANCH: Self = Self(8);
    /// Anywhere.
    pub const ANY: Self = Self(u32::MAX);

    /// Both sets.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// A config function's handler. Returns Kamailio's convention: positive is true, negative is
/// false (the route may branch on it), 0 stops the route.
pub type FunctionHandler<M> = fn(&M, &mut FunctionCall<'_>) -> Result<i32, Error>;

/// An RPC handler that answers before it returns.
pub type RpcNowHandler<M> = fn(&M, &RpcCall) -> RpcResult;
/// An RPC handler that answers later through the [`DelayedReply`] it is given.
pub type RpcDelayedHandler<M> = fn(&M, &RpcCall, DelayedReply);

pub(crate) enum RpcHandler<M> {
    Now(RpcNowHandler<M>),
    Delayed(RpcDelayedHandler<M>),
}

/// A module's declaration, built with chained calls:
///
/// ```
/// # use plugin_api::{Module, ModuleInfo, Param, Function, Rpc, Host, Params, Error};
/// # struct Pua;
/// # impl Module for Pua {
/// fn info() -> ModuleInfo<Self> {
///     ModuleInfo::new("pua", "1.0.0")
///         .doc("presence user agent client")
///         .param(Param::int("min_expires", 0).min(0).doc("smallest Expires sent"))
///         .param(Param::str("db_url", "sqlite://pua.sqlite").doc("database URL"))
///         .rpc(Rpc::new("pua.cleanup", |_m: &Pua, _call| Ok(().into())).doc("run the cleanup now"))
///         .exports("pua")
/// }
/// # fn init(_: &Host, _: &Params) -> Result<Self, Error> { Ok(Pua) }
/// # }
/// ```
pub struct ModuleInfo<M> {
    pub(crate) name: &'static str,
    version: &'static str,
    doc: &'static str,
    requires: Vec<&'static str>,
    params: Vec<Param>,
    pub(crate) functions: Vec<Function<M>>,
    pub(crate) rpcs: Vec<Rpc<M>>,
    exports: Vec<&'static str>,
}

impl<M: Module> ModuleInfo<M> {
    /// A module named `name` (as in `loadmodule`) at version `version`.
    pub fn new(name: &'static str, version: &'static str) -> Self {
        Self {
            name,
            version,
            doc: "",
            requires: Vec::new(),
            params: Vec::new(),
            functions: Vec::new(),
            rpcs: Vec::new(),
            exports: Vec::new(),
        }
    }

    /// What the module is for, in a sentence or two.
    pub fn doc(mut self, doc: &'static str) -> Self {
        self.doc = doc;
        self
    }

    /// Another module that must be loaded before this one.
    pub fn requires(mut self, module: &'static str) -> Self {
        self.requires.push(module);
        self
    }

    /// A modparam.
    pub fn param(mut self, param: Param) -> Self {
        self.params.push(param);
        self
    }

    /// A config-callable function.
    pub fn function(mut self, function: Function<M>) -> Self {
        self.functions.push(function);
        self
    }

    /// An RPC command.
    pub fn rpc(mut self, rpc: Rpc<M>) -> Self {
        self.rpcs.push(rpc);
        self
    }

    /// An API the module exports by name at init (with [`Host::export`]).
    pub fn exports(mut self, api: &'static str) -> Self {
        self.exports.push(api);
        self
    }

    pub(crate) fn to_ffi(&self) -> FfiModuleInfo {
        fn strings(v: &[&'static str]) -> RVec<RString> {
            v.iter().map(|s| RString::from(*s)).collect()
        }
        FfiModuleInfo {
            name: self.name.into(),
            version: self.version.into(),
            doc: self.doc.into(),
            requires: strings(&self.requires),
            params: self.params.iter().map(Param::to_ffi).collect(),
            functions: self
                .functions
                .iter()
                .map(|f| FfiFunctionSpec {
                    name: f.name.into(),
                    min_args: *f.arity.start(),
                    max_args: *f.arity.end(),
                    route_kinds: f.route_kinds.0,
                    doc: f.doc.into(),
                })
                .collect(),
            rpcs: self
                .rpcs
                .iter()
                .map(|r| FfiRpcSpec {
                    name: r.name.into(),
                    doc: r.doc.into(),
                    delayed: matches!(r.handler, RpcHandler::Delayed(_)),
                })
                .collect(),
            exports: strings(&self.exports),
        }
    }
}

/// A modparam declaration: name, type, default, limits and one line of documentation.
#[derive(Debug, Clone)]
pub struct Param {
    name: &'static str,
    kind: FfiParamKind,
    repeatable: bool,
    required: bool,
    default: Option<FfiParamValue>,
    min: Option<i64>,
    max: Option<i64>,
    doc: &'static str,
}

impl Param {
    fn new(name: &'static str, kind: FfiParamKind, default: Option<FfiParamValue>) -> Self {
        Self { name, kind, repeatable: false, required: false, default, min: None, max: None, doc: "" }
    }

    /// An integer modparam with a default.
    pub fn int(name: &'static str, default: i64) -> Self {
        Self::new(name, FfiParamKind::INT, Some(FfiParamValue::Int(default)))
    }

    /// A string modparam with a default.
    pub fn str(name: &'static str, default: &str) -> Self {
        Self::new(name, FfiParamKind::STR, Some(FfiParamValue::Str(default.into())))
    }

    /// A string modparam that has no default; when it is not set, [`Params::opt_str`] is `None`.
    pub fn opt_str(name: &'static str) -> Self {
        Self::new(name, FfiParamKind::STR, None)
    }

    /// A string modparam the config must set.
    pub fn required_str(name: &'static str) -> Self {
        let mut p = Self::new(name, FfiParamKind::STR, None);
        p.required = true;
        p
    }

    /// A string modparam that may be given several times (an array in TOML); default empty.
    pub fn str_list(name: &'static str) -> Self {
        let mut p = Self::new(name, FfiParamKind::STR, Some(FfiParamValue::StrList(RVec::new())));
        p.repeatable = true;
        p
    }

    /// An integer modparam that may be given several times; default empty.
    pub fn int_list(name: &'static str) -> Self {
        let mut p = Self::new(name, FfiParamKind::INT, Some(FfiParamValue::IntList(RVec::new())));
        p.repeatable = true;
        p
    }

    /// Smallest allowed value of an integer modparam.
    pub fn min(mut self, min: i64) -> Self {
        self.min = Some(min);
        self
    }

    /// Largest allowed value of an integer modparam.
    pub fn max(mut self, max: i64) -> Self {
        self.max = Some(max);
        self
    }

    /// Allowed range of an integer modparam.
    pub fn range(self, range: RangeInclusive<i64>) -> Self {
        self.min(*range.start()).max(*range.end())
    }

    /// One line of documentation.
    pub fn doc(mut self, doc: &'static str) -> Self {
        self.doc = doc;
        self
    }

    fn to_ffi(&self) -> FfiParamSpec {
        FfiParamSpec {
            name: self.name.into(),
            kind: self.kind,
            repeatable: self.repeatable,
            required: self.required,
            default: self.default.clone().map_or(RNone, RSome),
            min: self.min.map_or(RNone, RSome),
            max: self.max.map_or(RNone, RSome),
            doc: self.doc.into(),
        }
    }
}

/// A config-callable function declaration.
pub struct Function<M> {
    name: &'static str,
    arity: RangeInclusive<u32>,
    route_kinds: RouteKinds,
    doc: &'static str,
    pub(crate) handler: FunctionHandler<M>,
}

impl<M> Function<M> {
    /// A function callable from request routes with `arity` arguments (e.g. `0..=1`).
    pub fn new(name: &'static str, arity: RangeInclusive<u32>, handler: FunctionHandler<M>) -> Self {
        Self { name, arity, route_kinds: RouteKinds::REQUEST, doc: "", handler }
    }

    /// Where the function may be called from (default: request routes).
    pub fn routes(mut self, kinds: RouteKinds) -> Self {
        self.route_kinds = kinds;
        self
    }

    /// One line of documentation.
    pub fn doc(mut self, doc: &'static str) -> Self {
        self.doc = doc;
        self
    }
}

/// An RPC command declaration.
pub struct Rpc<M> {
    name: &'static str,
    doc: &'static str,
    pub(crate) handler: RpcHandler<M>,
}

impl<M> Rpc<M> {
    /// A command that answers before its handler returns.
    pub fn new(name: &'static str, handler: RpcNowHandler<M>) -> Self {
        Self { name, doc: "", handler: RpcHandler::Now(handler) }
    }

    /// A command that answers later, e.g. when a SIP reply arrives. The handler must move the
    /// [`DelayedReply`] somewhere that answers it; a reply dropped unanswered answers with a
    /// fault, so a caller never waits forever.
    pub fn delayed(name: &'static str, handler: RpcDelayedHandler<M>) -> Self {
        Self { name, doc: "", handler: RpcHandler::Delayed(handler) }
    }

    /// One line of documentation, shown by `system.methodHelp`.
    pub fn doc(mut self, doc: &'static str) -> Self {
        self.doc = doc;
        self
    }
}

/// One call of a config function, for the request being routed.
pub struct FunctionCall<'a> {
    args: Vec<&'a str>,
    request: RequestContext<'a>,
}

impl<'a> FunctionCall<'a> {
    pub(crate) fn from_ffi(call: &'a FfiCall<'a>) -> Self {
        Self {
            args: call.args.iter().map(|s| s.as_str()).collect(),
            request: RequestContext {
                ctx: call.ctx,
                msg: crate::sip::message(&call.msg),
                peer: Peer::from_ffi(&call.peer),
            },
        }
    }

    /// The arguments, pseudo-variables already expanded.
    pub fn args(&self) -> &[&'a str] {
        &self.args
    }

    /// Argument `i`, if given.
    pub fn arg(&self, i: usize) -> Option<&'a str> {
        self.args.get(i).copied()
    }

    /// Argument `i` as an integer.
    pub fn int_arg(&self, i: usize) -> Result<i64, Error> {
        let s = self.arg(i).ok_or_else(|| Error::new(format!("argument {} is missing", i + 1)))?;
        s.trim().parse().map_err(|_| Error::new(format!("argument {} is not an integer: {s:?}", i + 1)))
    }

    /// The request being routed: reply, flags, AVPs.
    pub fn request(&self) -> &RequestContext<'a> {
        &self.request
    }

    /// The request being routed, as a message view.
    pub fn message(&self) -> Option<Message<'a>> {
        self.request.message()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_param_has_no_default() {
        let p = Param::required_str("server_address").to_ffi();
        assert!(p.required && p.default.is_none());
    }
}
