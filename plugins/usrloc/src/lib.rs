//! `usrloc` (Kamailio's usrloc): the location table of registered contacts. It keeps the
//! contacts in memory (db_mode 0), writes each change through to Kamailio's `location` table
//! (1), writes the changes back every `timer_interval` (2), keeps them in the database only
//! (3), or loads the table at start and never writes it (4, read-only); removes expired
//! contacts on a timer, and exports the `usrloc` API (`bind_usrloc`) with callbacks on contact
//! insert, update, delete and expiry. registrar writes it; pua_usrloc follows it.
//!
//! `matching_mode` decides which stored contact a REGISTER's contact is: the one with the same
//! URI (0), the same URI and Call-ID (1), or the same URI and Path (2; a REGISTER without Path
//! matches by URI), as Kamailio's `get_ucontact`.
//!
//! RPC: `ul.dump [brief]`, `ul.lookup table aor`, `ul.rm table aor`,
//! `ul.rm_contact table aor contact` (Kamailio's names and reply shapes).

pub mod rpc;
pub mod storage;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plugin_api::api::usrloc::{self as api, FfiContact, FfiUlCallback, UsrlocService, cb};
use plugin_api::prelude::*;

use storage::{Storage, StorageError};
use store::{Change, Contact, Location};

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// db_mode values (Kamailio's numbers).
pub mod db_mode {
    /// Memory only.
    pub const NO_DB: i64 = 0;
    /// Every change is written at once.
    pub const WRITE_THROUGH: i64 = 1;
    /// Changes are written every timer_interval and at shutdown.
    pub const WRITE_BACK: i64 = 2;
    /// No memory table: every operation reads and writes the database (servers may share it).
    pub const DB_ONLY: i64 = 3;
    /// The table is loaded at start and never written (Kamailio's DB_READONLY): changes live
    /// in memory only, as in db_mode 0.
    pub const READ_ONLY: i64 = 4;
}

/// The table the module knows from the start (registrar's `save("location")`).
pub const DEFAULT_TABLE: &str = "location";

/// The state behind the module and its API.
pub struct Usrloc {
    location: Mutex<Location>,
    storage: Option<Storage>,
    db_mode: i64,
    matching_mode: i32,
    use_domain: bool,
    hash_size: u32,
    fetch_rows: u64,
    callbacks: RwLock<Vec<(i32, FfiUlCallback)>>,
    /// db_mode 2: (table, ruid) → the contact to write, or None to delete its row.
    dirty: Mutex<HashMap<(String, String), Option<Contact>>>,
    /// Tables whose database table was checked (created when missing).
    ensured: Mutex<HashSet<String>>,
    /// Taken before the table's lock is released and held while the changes are written and
    /// the callbacks run, so writes and callbacks happen in the order of the changes (an
    /// expiry racing a refresh never reaches the database or pua_usrloc after it).
    ordered: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Usrloc {
    fn location(&self) -> MutexGuard<'_, Location> {
        lock(&self.location)
    }

    /// Makes `table` known, creating and loading its database table the first time.
    fn ensure_table(&self, table: &str) -> Result<(), Error> {
        // One lock at a time: the body below takes `ensured` before the table's lock.
        let known = self.location().has_table(table);
        if known && (self.storage.is_none() || lock(&self.ensured).contains(table)) {
            return Ok(());
        }
        if let Some(s) = &self.storage {
            let mut ensured = lock(&self.ensured);
            if !ensured.contains(table) {
                if self.db_mode == db_mode::READ_ONLY {
                    // Never written: the table must exist (with its version row) already.
                    s.check(table)?;
                } else {
                    s.ensure(table)?;
                }
                let rows = if self.db_mode == db_mode::DB_ONLY { Vec::new() } else { s.load(table, self.fetch_rows)? };
                let n = rows.len();
                let mut loc = self.location();
                loc.add_table(table);
                for c in rows {
                    loc.restore(c);
                }
                ensured.insert(table.to_string());
                tracing::info!("usrloc: loaded {n} contacts from {table}");
            }
        }
        self.location().add_table(table);
        Ok(())
    }

    /// Runs `op` on the table, then writes its changes and runs the callbacks in order, outside
    /// the table's lock.
    fn change<R>(&self, op: impl FnOnce(&mut Location) -> (R, Vec<Change>)) -> R {
        let mut loc = self.location();
        let (result, changes) = op(&mut loc);
        let ordered = lock(&self.ordered);
        drop(loc);
        self.apply(changes);
        drop(ordered);
        result
    }

    /// The storage when every operation goes to the database (db_mode 3).
    fn db_only(&self) -> Option<&Storage> {
        if self.db_mode == db_mode::DB_ONLY { self.storage.as_ref() } else { None }
    }

    /// db_mode 3: in one transaction holding the table, reads the AoR's rows into a scratch
    /// table, runs `op` on it and writes its changes; after the commit, runs the callbacks.
    /// The same state machine as the memory modes decides, so the rules cannot differ.
    fn change_in_db<R>(
        &self,
        s: &Storage,
        table: &str,
        aor: &str,
        failed: R,
        op: impl FnOnce(&mut Location) -> (R, Vec<Change>),
    ) -> R {
        let ordered = lock(&self.ordered);
        let outcome = (|| -> Result<(R, Vec<Change>), StorageError> {
            let tx = s.transaction(table)?;
            let mut scratch = Location::new("").with_matching(self.matching_mode);
            scratch.add_table(table);
            for c in s.select_aor(&tx, table, aor)? {
                scratch.restore(c);
            }
            let (result, changes) = op(&mut scratch);
            for ch in &changes {
                if ch.kind & (cb::CONTACT_INSERT | cb::CONTACT_UPDATE) != 0 {
                    s.upsert_in(&tx, table, &[&ch.contact])?;
                } else {
                    s.delete_in(&tx, table, &ch.contact.ruid)?;
                }
            }
            tx.commit().map_err(Storage::err(table))?;
            Ok((result, changes))
        })();
        let result = match outcome {
            Ok((result, changes)) => {
                self.apply(changes);
                result
            }
            Err(e) => {
                tracing::error!("{e}");
                failed
            }
        };
        drop(ordered);
        result
    }

    /// db_mode 3: removes the expired rows of every table, with EXPIRE callbacks.
    fn expire_in_db(&self, s: &Storage) {
        let tables = self.location().table_names();
        let now = now();
        for table in tables {
            let ordered = lock(&self.ordered);
            let outcome = (|| -> Result<Vec<Change>, StorageError> {
                let tx = s.transaction(&table)?;
                let mut scratch = Location::new("").with_matching(self.matching_mode);
                for c in s.select_expired(&tx, &table, now)? {
                    scratch.restore(c);
                }
                let expired = scratch.expire(now);
                for ch in &expired {
                    s.delete_in(&tx, &table, &ch.contact.ruid)?;
                }
                tx.commit().map_err(Storage::err(&table))?;
                Ok(expired)
            })();
            match outcome {
                Ok(expired) => self.apply(expired),
                Err(e) => tracing::error!("usrloc: expiry: {e}"),
            }
            drop(ordered);
        }
    }

    /// Runs `f` on the table as it is: the memory table, or in db_mode 3 one read from the
    /// database (ul.dump).
    pub fn with_snapshot<R>(&self, f: impl FnOnce(&Location) -> R) -> R {
        let Some(s) = self.db_only() else { return f(&self.location()) };
        let mut scratch = Location::new("").with_matching(self.matching_mode);
        let tables = self.location().table_names();
        for table in tables {
            scratch.add_table(&table);
            match s.load(&table, self.fetch_rows) {
                Ok(rows) => rows.into_iter().for_each(|c| scratch.restore(c)),
                Err(e) => tracing::error!("{e}"),
            }
        }
        f(&scratch)
    }

    /// Writes the changes (per db_mode) and runs the callbacks.
    fn apply(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        match (self.db_mode, &self.storage) {
            (db_mode::WRITE_THROUGH, Some(s)) => {
                for ch in &changes {
                    let c = &ch.contact;
                    let r = if ch.kind & (cb::CONTACT_INSERT | cb::CONTACT_UPDATE) != 0 {
                        s.upsert(&c.table, &[c])
                    } else {
                        s.delete(&c.table, &c.ruid)
                    };
                    if let Err(e) = r {
                        tracing::error!("{e}");
                    }
                }
            }
            (db_mode::WRITE_BACK, Some(_)) => {
                let mut dirty = lock(&self.dirty);
                for ch in &changes {
                    let c = &ch.contact;
                    let write = ch.kind & (cb::CONTACT_INSERT | cb::CONTACT_UPDATE) != 0;
                    dirty.insert((c.table.clone(), c.ruid.clone()), write.then(|| c.clone()));
                }
            }
            _ => {}
        }
        let callbacks = self.callbacks.read().unwrap_or_else(|p| p.into_inner());
        if callbacks.is_empty() {
            return;
        }
        for ch in &changes {
            let ffi = ch.contact.to_ffi();
            for (types, f) in callbacks.iter() {
                if types & ch.kind != 0 {
                    f.call(ch.kind, &ffi);
                }
            }
        }
    }

    /// Removes expired contacts (with CONTACT_EXPIRE callbacks); then, in db_mode 2, writes
    /// back.
    pub fn timer(&self) {
        if let Some(s) = self.db_only() {
            self.expire_in_db(s);
            return;
        }
        let n = self.change(|loc| {
            let expired = loc.expire(now());
            (expired.len(), expired)
        });
        if n > 0 {
            tracing::debug!("usrloc: {n} contacts expired");
        }
        self.write_back();
    }

    /// db_mode 2: writes the changed contacts and deletes the removed ones. A failed write is
    /// kept for the next run.
    pub fn write_back(&self) {
        let Some(s) = &self.storage else { return };
        if self.db_mode != db_mode::WRITE_BACK {
            return;
        }
        let dirty = std::mem::take(&mut *lock(&self.dirty));
        if dirty.is_empty() {
            return;
        }
        let mut by_table: HashMap<&str, (Vec<&Contact>, Vec<&str>)> = HashMap::new();
        for ((table, ruid), c) in &dirty {
            let e = by_table.entry(table.as_str()).or_default();
            match c {
                Some(c) => e.0.push(c),
                None => e.1.push(ruid.as_str()),
            }
        }
        let mut failed = HashSet::new();
        for (table, (writes, deletes)) in by_table {
            if let Err(e) = s.upsert(table, &writes) {
                tracing::error!("usrloc: write-back: {e}");
                failed.insert(table.to_string());
                continue;
            }
            for ruid in deletes {
                if let Err(e) = s.delete(table, ruid) {
                    tracing::error!("usrloc: write-back: {e}");
                    failed.insert(table.to_string());
                }
            }
        }
        if !failed.is_empty() {
            let mut d = lock(&self.dirty);
            for (k, v) in dirty {
                if failed.contains(&k.0) {
                    d.entry(k).or_insert(v);
                }
            }
        }
    }

    /// The unexpired contacts of `aor`.
    pub fn contacts(&self, table: &str, aor: &str) -> Vec<Contact> {
        let now = now();
        if let Some(s) = self.db_only() {
            return match s.select_aor(s.pool(), table, aor) {
                Ok(rows) => rows.into_iter().filter(|c| c.alive(now)).collect(),
                Err(e) => {
                    tracing::error!("{e}");
                    Vec::new()
                }
            };
        }
        self.location()
            .aor(table, aor)
            .map(|cs| cs.iter().filter(|c| c.alive(now)).cloned().collect())
            .unwrap_or_default()
    }

    /// Inserts or updates a contact; an `upsert` code.
    pub fn upsert(&self, mut c: Contact) -> i32 {
        if let Err(e) = self.ensure_table(&c.table) {
            tracing::error!("{e}");
            return api::upsert::INVALID;
        }
        if let Some(s) = self.db_only() {
            if c.ruid.is_empty() {
                // The scratch table has no counter of its own: a new contact takes its ruid here.
                c.ruid = self.location().next_ruid();
            }
            let (table, aor) = (c.table.clone(), c.aor.clone());
            return self.change_in_db(s, &table, &aor, api::upsert::INVALID, |loc| {
                let (code, change) = loc.upsert(c, now());
                (code, change.into_iter().collect())
            });
        }
        self.change(|loc| {
            let (code, change) = loc.upsert(c, now());
            (code, change.into_iter().collect())
        })
    }

    /// Removes the contacts with URI `contact` (one, unless matching_mode keeps several
    /// bindings of a URI); whether there was one.
    pub fn delete_contact(&self, table: &str, aor: &str, contact: &str) -> bool {
        if let Some(s) = self.db_only() {
            return self.change_in_db(s, table, aor, false, |loc| {
                let changes = loc.delete_contact(table, aor, contact);
                (!changes.is_empty(), changes)
            });
        }
        self.change(|loc| {
            let changes = loc.delete_contact(table, aor, contact);
            (!changes.is_empty(), changes)
        })
    }

    /// Removes an AoR's contacts (or the one with `ruid`); how many.
    pub fn delete_aor(&self, table: &str, aor: &str, ruid: Option<&str>) -> usize {
        if let Some(s) = self.db_only() {
            return self.change_in_db(s, table, aor, 0, |loc| {
                let changes = loc.delete_aor(table, aor, ruid);
                (changes.len(), changes)
            });
        }
        self.change(|loc| {
            let changes = loc.delete_aor(table, aor, ruid);
            (changes.len(), changes)
        })
    }
}

/// The module.
pub struct UsrlocModule {
    state: &'static Usrloc,
}

struct Service(&'static Usrloc);

impl UsrlocService for Service {
    fn use_domain(&self) -> bool {
        self.0.use_domain
    }

    fn contacts(&self, table: &str, aor: &str) -> Vec<FfiContact> {
        self.0.contacts(table, aor).iter().map(Contact::to_ffi).collect()
    }

    fn upsert_contact(&self, contact: &FfiContact) -> i32 {
        self.0.upsert(Contact::from_ffi(contact))
    }

    fn delete_contact(&self, table: &str, aor: &str, contact: &str) -> i32 {
        i32::from(self.0.delete_contact(table, aor, contact))
    }

    fn delete_aor(&self, table: &str, aor: &str, ruid: &str) -> i32 {
        let ruid = (!ruid.is_empty()).then_some(ruid);
        i32::try_from(self.0.delete_aor(table, aor, ruid)).unwrap_or(i32::MAX)
    }

    fn register_callback(&self, types: i32, callback: FfiUlCallback) -> i32 {
        if types & cb::ALL == 0 {
            return -1;
        }
        self.0.callbacks.write().unwrap_or_else(|p| p.into_inner()).push((types, callback));
        1
    }

    fn matching_mode(&self) -> i32 {
        self.0.matching_mode
    }
}

impl Module for UsrlocModule {
    fn info() -> ModuleInfo<Self> {
        let info = ModuleInfo::new("usrloc", env!("CARGO_PKG_VERSION"))
            .doc("The location table of registered contacts, with expiry and the usrloc API (Kamailio's usrloc).")
            .exports("usrloc")
            .param(
                Param::str("db_url", "sqlite://usrloc.sqlite").doc(
                    "database of the location table (db_mode 1 to 4); relative SQLite paths are next to the config",
                ),
            )
            .param(Param::int("db_mode", 0).range(0..=4).doc(
                "0: memory only; 1: write-through; 2: write-back every timer_interval; 3: database only; 4: read-only (loaded at start, never written)",
            ))
            .param(Param::int("timer_interval", 60).min(1).doc("seconds between expiry passes (and write-backs)"))
            .param(Param::int("use_domain", 0).range(0..=1).doc("1: AoRs are user@domain; 0: the user part only"))
            .param(Param::int("fetch_rows", 2000).min(1).doc("rows per page when loading at start-up"))
            .param(
                Param::int("hash_size", 10)
                    .range(1..=20)
                    .doc("the location table starts with room for 2^hash_size AoRs (ul.dump reports it as Size); it grows as needed"),
            )
            .param(Param::int("matching_mode", 0).range(0..=2).doc(
                "which stored contact a REGISTER's contact is: 0 the same URI; 1 the same URI and Call-ID; 2 the same URI and Path (a REGISTER without Path: the URI)",
            ));
        rpc::declare(info)
    }

    fn init(host: &Host, params: &Params) -> Result<Self, Error> {
        let db_mode = params.int("db_mode");
        let storage = if db_mode == db_mode::NO_DB {
            None
        } else {
            Some(Storage::open(host, params.str("db_url"), params.int("use_domain") == 1)?)
        };
        let ruid_prefix = format!("uloc-{:x}-{:x}", now(), std::process::id());
        let matching_mode = i32::try_from(params.int("matching_mode")).unwrap_or(0);
        let hash_size = u32::try_from(params.int("hash_size")).unwrap_or(10);
        let location =
            Location::new(&ruid_prefix).with_matching(matching_mode).with_capacity("location", 1 << hash_size);
        let state: &'static Usrloc = Box::leak(Box::new(Usrloc {
            location: Mutex::new(location),
            storage,
            db_mode,
            matching_mode,
            use_domain: params.int("use_domain") == 1,
            hash_size,
            fetch_rows: u64::try_from(params.int("fetch_rows")).unwrap_or(2000),
            callbacks: RwLock::new(Vec::new()),
            dirty: Mutex::new(HashMap::new()),
            ensured: Mutex::new(HashSet::new()),
            ordered: Mutex::new(()),
        }));
        state.ensure_table(DEFAULT_TABLE)?;
        api::export(host, Box::leak(Box::new(Service(state))))?;
        let period = Duration::from_secs(u64::try_from(params.int("timer_interval")).unwrap_or(60));
        host.every("timer", period, move || {
            state.timer();
            Ok(())
        })?;
        Ok(UsrlocModule { state })
    }

    fn destroy(&self, _host: &Host) {
        self.state.write_back();
    }
}

export_module!(UsrlocModule);
