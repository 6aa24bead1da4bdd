//! Modparams (Kamailio's names and defaults, reference §10.1) read into one struct.

use plugin_api::{Param, Params};

/// The settings the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub db_url: Option<String>,
    pub presentity_table: String,
    pub active_watchers_table: String,
    pub watchers_table: String,
    pub clean_period: u32,
    pub db_update_period: u32,
    pub expires_offset: u32,
    pub max_expires: u32,
    pub min_expires: u32,
    pub min_expires_action: i64,
    pub server_address: Option<String>,
    pub subs_db_mode: i64,
    pub publ_cache: i64,
    pub send_fast_notify: bool,
    pub timeout_rm_subs: bool,
    pub fetch_rows: u64,
    pub subs_respond_200: bool,
    pub force_delete: bool,
    pub startup_mode: i64,
    /// Largest PUBLISH body accepted (413 above it).
    pub max_body: usize,
    /// CSeq margin added to every restored subscription (subs_db_mode 2 writes back
    /// periodically, so the stored local_cseq can be behind what was sent).
    pub cseq_restore_margin: u32,
    /// The order of a presentity's publications given to the aggregation (the newest last).
    pub retrieve_order: RetrieveOrder,
    /// log2 of the initial sizes of the publication and subscription tables.
    pub pres_htable_size: u32,
    pub subs_htable_size: u32,
    /// A new subscription removes the others of its presentity and event with its Call-ID.
    pub delete_same_subs: bool,
    /// sip_uri_match = 1: presentity URIs and the sender compare ASCII case-insensitively.
    pub uri_case_insensitive: bool,
}

/// `retrieve_order` / `retrieve_order_by`: by received time (0), or by a `presentity` column
/// (1), ties in received order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetrieveOrder {
    ReceivedTime,
    Priority,
    Expires,
    Etag,
    Sender,
}

impl RetrieveOrder {
    fn from_params(order: i64, by: &str) -> Result<Self, String> {
        if order == 0 {
            return Ok(Self::ReceivedTime);
        }
        Ok(match by {
            "priority" => Self::Priority,
            "received_time" => Self::ReceivedTime,
            "expires" => Self::Expires,
            "etag" => Self::Etag,
            "sender" => Self::Sender,
            other => {
                return Err(format!(
                    "presence: retrieve_order_by `{other}` is not a column it can order by (priority, received_time, expires, etag, sender)"
                ));
            }
        })
    }

    /// Sorts publications already in received order (the sort is stable).
    pub fn sort(self, pubs: &mut [crate::store::Publication]) {
        match self {
            Self::ReceivedTime => {}
            Self::Priority => pubs.sort_by_key(|p| p.priority),
            Self::Expires => pubs.sort_by_key(|p| p.expires),
            Self::Etag => pubs.sort_by(|a, b| a.etag.cmp(&b.etag)),
            Self::Sender => pubs.sort_by(|a, b| a.sender.cmp(&b.sender)),
        }
    }
}

/// The declarations, for `ModuleInfo`.
pub fn params() -> Vec<Param> {
    vec![
        Param::opt_str("db_url").doc("database; unset: everything in memory only (nothing survives a restart)"),
        Param::str("presentity_table", "presentity"),
        Param::str("active_watchers_table", "active_watchers"),
        Param::str("watchers_table", "watchers"),
        Param::int("clean_period", 100).doc("seconds between expiry passes (<= 0: never)"),
        Param::int("db_update_period", 100).min(1).doc("seconds between write-backs (subs_db_mode 2)"),
        Param::int("expires_offset", 0).min(0).doc("subtracted from the Expires of a PUBLISH 200"),
        Param::int("max_expires", 3600).min(1).doc("cap for PUBLISH and SUBSCRIBE expires"),
        Param::int("min_expires", 0).min(0).doc("SUBSCRIBE only"),
        Param::int("min_expires_action", 1).range(1..=2).doc("1: 423 with Min-Expires; 2: raise to min_expires"),
        Param::opt_str("server_address").doc("Contact of SUBSCRIBE replies and NOTIFYs"),
        Param::int("subs_db_mode", 2).range(0..=3).doc(
            "0: memory only; 1: write-through; 2: write-back every db_update_period; 3: database only (servers sharing it see each other's subscriptions; NOTIFY CSeq taken atomically)",
        ),
        Param::int("publ_cache", 1).range(0..=2).doc(
            "0: publications in the database only (servers sharing it see each other's); 1: in memory, written through; 2: memory only",
        ),
        Param::int("send_fast_notify", 1).range(0..=1).doc("NOTIFY right after the SUBSCRIBE reply"),
        Param::int("timeout_rm_subs", 1).range(0..=1).doc("remove a subscription whose NOTIFY times out (408)"),
        Param::int("fetch_rows", 500).min(1).doc("rows per page when loading at start-up"),
        Param::int("subs_respond_200", 1).range(0..=1).doc("accepted SUBSCRIBE: 200 (1) or 202 (0)"),
        Param::int("force_delete", 0).range(0..=1).doc("expired publications are deleted without notifying"),
        Param::int("startup_mode", 1).range(0..=1).doc("1: only unexpired rows are loaded at start-up"),
        Param::int("max_body", 65_536).min(1).doc("largest PUBLISH body in bytes (413 above it)"),
        Param::int("cseq_restore_margin", 100).min(0).doc("added to each restored subscription's NOTIFY CSeq"),
        Param::int("retrieve_order", 0)
            .range(0..=1)
            .doc("order of a presentity's publications for the aggregation: 0 received time, 1 retrieve_order_by"),
        Param::str("retrieve_order_by", "priority")
            .doc("presentity column to order by with retrieve_order 1: priority, received_time, expires, etag, sender"),
        Param::int("pres_htable_size", 9).range(1..=20).doc("the publication table starts with room for 2^n"),
        Param::int("subs_htable_size", 9).range(1..=20).doc("the subscription table starts with room for 2^n"),
        Param::int("sip_uri_match", 0)
            .range(0..=1)
            .doc("1: presentity URIs and handle_publish's sender compare case-insensitively (0: exactly)"),
        Param::int("delete_same_subs", 0)
            .range(0..=1)
            .doc("1: a new subscription removes the others of its presentity and event with the same Call-ID"),
    ]
}

fn u32_of(p: &Params, name: &str) -> u32 {
    u32::try_from(p.int(name).max(0)).unwrap_or(u32::MAX)
}

impl Config {
    /// Reads the checked modparams; an unknown `retrieve_order_by` column is refused.
    pub fn from_params(p: &Params) -> Result<Self, String> {
        Ok(Self {
            db_url: p.opt_str("db_url").filter(|u| !u.is_empty()).map(str::to_string),
            presentity_table: p.str("presentity_table").to_string(),
            active_watchers_table: p.str("active_watchers_table").to_string(),
            watchers_table: p.str("watchers_table").to_string(),
            clean_period: u32_of(p, "clean_period"),
            db_update_period: u32_of(p, "db_update_period"),
            expires_offset: u32_of(p, "expires_offset"),
            max_expires: u32_of(p, "max_expires"),
            min_expires: u32_of(p, "min_expires"),
            min_expires_action: p.int("min_expires_action"),
            server_address: p.opt_str("server_address").filter(|a| !a.is_empty()).map(str::to_string),
            subs_db_mode: p.int("subs_db_mode"),
            publ_cache: p.int("publ_cache"),
            send_fast_notify: p.int("send_fast_notify") == 1,
            timeout_rm_subs: p.int("timeout_rm_subs") == 1,
            fetch_rows: p.int("fetch_rows").max(1) as u64,
            subs_respond_200: p.int("subs_respond_200") == 1,
            force_delete: p.int("force_delete") == 1,
            startup_mode: p.int("startup_mode"),
            max_body: usize::try_from(p.int("max_body").max(1)).unwrap_or(usize::MAX),
            cseq_restore_margin: u32_of(p, "cseq_restore_margin"),
            retrieve_order: RetrieveOrder::from_params(p.int("retrieve_order"), p.str("retrieve_order_by"))?,
            pres_htable_size: u32_of(p, "pres_htable_size"),
            subs_htable_size: u32_of(p, "subs_htable_size"),
            delete_same_subs: p.int("delete_same_subs") == 1,
            uri_case_insensitive: p.int("sip_uri_match") == 1,
        })
    }
}
