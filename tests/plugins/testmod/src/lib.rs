//! `testmod`: exercises every host service so the end-to-end tests can check them.
//!
//! - RPC `testmod.echo` returns its parameters; `testmod.panic` panics; `testmod.later`
//!   answers from a timer after the given milliseconds (a delayed reply); `testmod.drop`
//!   drops its delayed reply without answering; `testmod.fault` returns fault 418.
//! - RPC `testmod.db` writes and reads Kamailio tables through the host's DB service.
//! - RPC `testmod.ticks` counts the runs of a periodic timer; `testmod.log` logs at each level.
//! - Functions `test_ok()`, `test_fail()`, `test_panic()` for routes.
//! - Exports the `echo` API; its `echo("panic")` panics inside the exporter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use plugin_api::api::test_api::{EchoApi, EchoVTable};
use plugin_api::db::{Batch, Cond, Db, Value as DbValue};
use plugin_api::ffi::{FfiError, RErr, ROk, RResult, RStr, RString};
use plugin_api::metrics::Counter;
use plugin_api::prelude::*;

pub struct TestMod {
    host: Host,
    db: Option<Db>,
    ticks: &'static AtomicU64,
    calls: Counter,
}

static TICKS: AtomicU64 = AtomicU64::new(0);
/// Runs of the supervised thread's body (it panics on its first run).
static THREAD_RUNS: AtomicU64 = AtomicU64::new(0);
/// Runs of `test_count()`: shows whether a route ran once or twice.
static COUNT: AtomicU64 = AtomicU64::new(0);

extern "C" fn echo(text: RStr<'_>) -> RResult<RString, FfiError> {
    // The vtable's functions are the exporter's own boundary: catch panics here too.
    match std::panic::catch_unwind(|| {
        if text.as_str() == "panic" {
            panic!("echo was asked to panic");
        }
        format!("testmod says {}", text.as_str())
    }) {
        Ok(s) => ROk(s.into()),
        Err(_) => RErr(FfiError { kind: FfiError::PANIC, message: "echo panicked".into() }),
    }
}

static ECHO: EchoVTable = EchoVTable { echo };

impl TestMod {
    fn rpc_echo(&self, call: &RpcCall) -> RpcResult {
        self.calls.inc();
        Ok(Value::Array(call.params().to_vec()))
    }

    fn rpc_panic(&self, _: &RpcCall) -> RpcResult {
        panic!("testmod.panic was called");
    }

    fn rpc_fault(&self, _: &RpcCall) -> RpcResult {
        Err(RpcFault::new(418, "I'm a teapot"))
    }

    fn rpc_later(&self, call: &RpcCall, reply: DelayedReply) {
        let ms = call.int(0).unwrap_or(50).max(0) as u64;
        let cell = std::sync::Mutex::new(Some(reply));
        let res = self.host.after("later", Duration::from_millis(ms), move || {
            if let Some(r) = cell.lock().map_err(|_| Error::new("poisoned"))?.take() {
                r.value(Value::String(format!("answered after {ms} ms")));
            }
            Ok(())
        });
        if let Err(e) = res {
            tracing::error!("cannot start the timer: {e}");
        }
    }

    fn rpc_drop(&self, _: &RpcCall, reply: DelayedReply) {
        drop(reply);
    }

    fn rpc_ticks(&self, _: &RpcCall) -> RpcResult {
        Ok(Value::from(self.ticks.load(Ordering::Relaxed)))
    }

    fn rpc_log(&self, _: &RpcCall) -> RpcResult {
        tracing::error!("testmod error line");
        tracing::warn!("testmod warn line");
        tracing::info!(answer = 42, "testmod info line");
        tracing::debug!("testmod debug line");
        Ok(Value::Null)
    }

    /// Writes through a transaction, an upsert and a select on Kamailio's own `location`
    /// (DATETIME columns) and `watchers` (a unique key) tables.
    fn rpc_db(&self, call: &RpcCall) -> RpcResult {
        let db = self.db.as_ref().ok_or_else(|| RpcFault::new(500, "no db_url"))?;
        let user = call.str(0).unwrap_or_else(|| "alice".into());
        let status = call.int(1).unwrap_or(1);
        let run = || -> Result<Value, Error> {
            let tx = db.transaction(&["location"])?;
            tx.delete("location", &[Cond::eq("username", user.as_str())])?;
            tx.insert(
                "location",
                &[
                    ("ruid", format!("ruid-{user}").into()),
                    ("username", user.as_str().into()),
                    ("contact", format!("sip:{user}@127.0.0.1:5070").into()),
                    ("expires", DbValue::DateTime(1_700_000_000)),
                ],
            )?;
            tx.commit()?;
            let key = ["presentity_uri", "watcher_username", "watcher_domain", "event"];
            let row = |status: i64| -> Vec<(&str, DbValue)> {
                vec![
                    ("presentity_uri", "sip:bob@example.com".into()),
                    ("watcher_username", user.as_str().into()),
                    ("watcher_domain", "example.com".into()),
                    ("event", "presence".into()),
                    ("status", status.into()),
                    ("inserted_time", 1_700_000_000i64.into()),
                ]
            };
            db.upsert("watchers", &key, &row(2))?;
            db.upsert("watchers", &key, &row(status))?;
            let loc = db.select("location").filter(Cond::eq("username", user.as_str())).run()?;
            let loc = loc.row(0).ok_or_else(|| Error::new("location row not found"))?;
            let w =
                db.select("watchers").columns(&["status"]).filter(Cond::eq("watcher_username", user.as_str())).run()?;
            // puahost's own table, created on demand, and an insert that returns the new id.
            let created = db.ensure_table("pua_body")?;
            db.delete("pua_body", &[Cond::eq("pua_id", status)])?;
            let body_id = db.insert_returning_id(
                "pua_body",
                "id",
                &[
                    ("pua_id", status.into()),
                    ("body", "<presence/>".into()),
                    ("content_type", "application/pidf+xml".into()),
                ],
            )?;
            let body_row = db.select("pua_body").filter(Cond::eq("id", body_id)).run()?;
            // Increments from several threads at once: each must get a value of its own.
            let me = [Cond::eq("username", user.as_str())];
            let start = db.increment("location", "cseq", &me)?.ok_or_else(|| Error::new("no row to increment"))?;
            let mut seen: Vec<i64> = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..4)
                    .map(|_| scope.spawn(|| (0..50).map(|_| db.increment("location", "cseq", &me)).collect::<Vec<_>>()))
                    .collect();
                workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect::<Result<Vec<_>, _>>()
            })?
            .into_iter()
            .flatten()
            .collect();
            seen.sort_unstable();
            seen.dedup();
            let missing = db.increment("location", "cseq", &[Cond::eq("username", "nobody-at-all")])?;
            // A batch whose second write fails (ruid is unique) leaves nothing of its first.
            let other = format!("b-{user}");
            let mut bad = Batch::new();
            bad.insert(
                "location",
                &[
                    ("ruid", format!("ruid-{other}").into()),
                    ("username", other.as_str().into()),
                    ("contact", "sip:b@127.0.0.1".into()),
                ],
            )
            .insert(
                "location",
                &[
                    ("ruid", format!("ruid-{user}").into()),
                    ("username", "dup".into()),
                    ("contact", "sip:d@127.0.0.1".into()),
                ],
            );
            let batch_failed = db.write(&bad).is_err();
            let batch_left = db.select("location").filter(Cond::eq("username", other.as_str())).run()?.len();
            let mut good = Batch::new();
            good.delete("location", &[Cond::eq("username", other.as_str())]).update(
                "location",
                &[("q", DbValue::Double(0.5))],
                &me,
            );
            let batch_affected = db.write(&good)?;
            Ok(serde_json::json!({
                "contact": loc.str("contact"),
                "expires": loc.get("expires").and_then(DbValue::as_int),
                "watchers": w.len(),
                "status": w.row(0).map(|r| r.int("status")),
                "location_version": db.table_version("location")?,
                "pua_body_created": created,
                "body_id_found": body_row.row(0).map(|r| r.int("pua_id")),
                "increments_distinct": seen.len(),
                "increment_last": seen.last().map(|v| v - start),
                "increment_missing": missing,
                "batch_failed": batch_failed,
                "batch_left": batch_left,
                "batch_affected": batch_affected,
            }))
        };
        run().map_err(|e| RpcFault::new(500, e.to_string()))
    }

    fn rpc_bind(&self, _: &RpcCall) -> RpcResult {
        // Binding is allowed at any time; binding itself is tested by testbind.
        let api = self.host.bind::<EchoApi>().map_err(|e| RpcFault::new(500, e.to_string()))?;
        match (api.echo)("self".into()) {
            ROk(s) => Ok(Value::String(s.into_string())),
            RErr(e) => Err(RpcFault::new(500, e.message.into_string())),
        }
    }

    fn ok(&self, _: &mut FunctionCall<'_>) -> Result<i32, Error> {
        Ok(1)
    }

    /// Replies 200 with what it saw of the request through the ABI, as headers.
    fn reply_info(&self, call: &mut FunctionCall<'_>) -> Result<i32, Error> {
        let msg = call.message().ok_or_else(|| Error::new("no message"))?;
        let req = call.request();
        let ruri = msg.request_uri_str().unwrap_or("").to_string();
        let event = msg.event().ok().flatten().map(|e| e.package().to_string()).unwrap_or_default();
        let peer = req.peer();
        let args = call.args().join("|");
        let flag = if req.is_flag_set(3) { "3" } else { "-" };
        let avp = req.avp("who").unwrap_or_default();
        req.set_flag(4);
        req.reply_with(
            200,
            "OK",
            &[
                ("X-Ruri", &ruri),
                ("X-Event", &event),
                ("X-Args", &args),
                ("X-Src", &format!("{}:{}:{}", peer.transport.as_str(), peer.ip, peer.port)),
                ("X-Flag3", flag),
                ("X-Avp", &avp),
            ],
            Some(("text/plain", msg.body())),
        )?;
        Ok(1)
    }

    /// RPC `testmod.request METHOD RURI [OUTBOUND_PROXY [ROUTE]]`: sends a request and answers
    /// with its final reply (a delayed reply through a SIP transaction).
    fn rpc_request(&self, call: &RpcCall, reply: DelayedReply) {
        let method = call.str(0).unwrap_or_else(|| "OPTIONS".into());
        let ruri = call.str(1).unwrap_or_default();
        let mut req = Request::new(&method, &ruri, "<sip:testmod@localhost>", &format!("<{ruri}>"));
        req.outbound_proxy = call.str(2).unwrap_or_default();
        if let Some(route) = call.str(3).filter(|r| !r.is_empty()) {
            req.route_set = vec![route];
        }
        req.extra_headers = "X-Test: 1\r\n".into();
        let sent = self.host.send_request(&req, move |r| {
            let to_tag = r.message.and_then(|m| m.to().ok().and_then(|t| t.tag().map(str::to_string)));
            reply.value(serde_json::json!({"code": r.code, "reason": r.reason, "local": r.local, "to_tag": to_tag}));
        });
        if let Err(e) = sent {
            tracing::error!("send_request: {e}");
        }
    }

    fn count(&self, _: &mut FunctionCall<'_>) -> Result<i32, Error> {
        COUNT.fetch_add(1, Ordering::Relaxed);
        Ok(1)
    }

    /// RPC `testmod.thread`: starts a supervised thread whose body panics on its first run and
    /// returns on the second; answers the number of runs so far.
    fn rpc_thread(&self, call: &RpcCall) -> RpcResult {
        if call.str(0).as_deref() == Some("start") {
            self.host
                .spawn_supervised("flaky", || {
                    if THREAD_RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("flaky thread dies on its first run");
                    }
                    Ok(())
                })
                .map_err(|e| RpcFault::new(500, e.to_string()))?;
        }
        Ok(Value::from(THREAD_RUNS.load(Ordering::SeqCst)))
    }

    fn rpc_count(&self, _: &RpcCall) -> RpcResult {
        Ok(Value::from(COUNT.load(Ordering::Relaxed)))
    }

    fn fail(&self, _: &mut FunctionCall<'_>) -> Result<i32, Error> {
        Ok(-1)
    }

    fn panics(&self, _: &mut FunctionCall<'_>) -> Result<i32, Error> {
        panic!("test_panic() was called");
    }
}

impl Module for TestMod {
    fn info() -> ModuleInfo<Self> {
        ModuleInfo::new("testmod", env!("CARGO_PKG_VERSION"))
            .doc("Conformance-test module: exercises every host service.")
            .param(Param::str("db_url", "").doc("database for testmod.db (empty: none)"))
            .param(Param::int("tick_ms", 0).range(0..=60_000).doc("period of the test timer in ms (0: off)"))
            .param(Param::int("fail_init", 0).range(0..=2).doc("1: init returns an error; 2: init panics"))
            .param(Param::str_list("tags").doc("a repeatable modparam"))
            .function(Function::new("test_ok", 0..=2, Self::ok).doc("returns 1"))
            .function(Function::new("test_fail", 0..=0, Self::fail).doc("returns -1"))
            .function(Function::new("test_count", 0..=0, Self::count).doc("counts its calls"))
            .function(Function::new("test_reply_info", 0..=3, Self::reply_info).doc("replies 200 with what it saw"))
            .function(Function::new("test_panic", 0..=0, Self::panics).doc("panics"))
            .rpc(Rpc::new("testmod.echo", Self::rpc_echo).doc("returns its parameters"))
            .rpc(Rpc::new("testmod.panic", Self::rpc_panic).doc("panics"))
            .rpc(Rpc::new("testmod.fault", Self::rpc_fault).doc("returns fault 418"))
            .rpc(Rpc::delayed("testmod.later", Self::rpc_later).doc("answers after N ms from a timer"))
            .rpc(Rpc::delayed("testmod.drop", Self::rpc_drop).doc("drops its reply"))
            .rpc(Rpc::new("testmod.ticks", Self::rpc_ticks).doc("runs of the periodic timer"))
            .rpc(Rpc::new("testmod.count", Self::rpc_count).doc("calls of test_count()"))
            .rpc(Rpc::new("testmod.thread", Self::rpc_thread).doc("starts a supervised thread that panics once"))
            .rpc(Rpc::new("testmod.log", Self::rpc_log).doc("logs one line per level"))
            .rpc(Rpc::new("testmod.db", Self::rpc_db).doc("writes and reads a row"))
            .rpc(Rpc::new("testmod.bind", Self::rpc_bind).doc("binds its own echo API"))
            .rpc(Rpc::delayed("testmod.request", Self::rpc_request).doc("sends a SIP request, answers its final reply"))
            .exports("echo")
    }

    fn init(host: &Host, params: &Params) -> Result<Self, Error> {
        match params.int("fail_init") {
            1 => return Err(Error::new("fail_init is set")),
            2 => panic!("fail_init asked for a panic"),
            _ => {}
        }
        let db = match params.str("db_url") {
            "" => None,
            url => {
                let db = host.db(url)?;
                db.check_version("location", 9)?;
                db.check_version("watchers", 3)?;
                Some(db)
            }
        };
        let tick_ms = params.int("tick_ms");
        if tick_ms > 0 {
            host.every("tick", Duration::from_millis(tick_ms as u64), || {
                TICKS.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })?;
        }
        host.export::<EchoApi>(&ECHO)?;
        tracing::info!(tags = ?params.strs("tags"), "testmod ready");
        Ok(TestMod { host: *host, db, ticks: &TICKS, calls: host.counter("echo_calls", "testmod.echo calls")? })
    }

    fn destroy(&self, _host: &Host) {
        tracing::info!("testmod destroyed");
    }
}

export_module!(TestMod);
