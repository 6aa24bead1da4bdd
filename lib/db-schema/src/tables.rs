//! The tables, transcribed from Kamailio 5.6.3's schema (`src/lib/srdb1/schema/*.xml`, as
//! rendered into the installed `/usr/share/kamailio/*/<group>-create.sql`).
//!
//! Indexes are listed unique constraints first, then plain indexes: the scripts write them in
//! those two blocks, each in Kamailio's definition order.

use crate::{Column, ColumnType, DefaultValue as D, Group, Index, Table};

/// Kamailio's `id` column, first in every table.
const ID: Column = Column::new("id", ColumnType::Id);
/// Kamailio's `int` columns all declare a MySQL display width of 11.
const INT: ColumnType = ColumnType::Int { width: Some(11), unsigned: false };
/// Kamailio's `unsigned int` columns declare a MySQL display width of 10...
const UINT: ColumnType = ColumnType::Int { width: Some(10), unsigned: true };
const TEXT: ColumnType = ColumnType::Text;
const BLOB: ColumnType = ColumnType::Blob;
const LARGE_BLOB: ColumnType = ColumnType::LargeBlob;
const DATETIME: ColumnType = ColumnType::DateTime;

const fn varchar(n: u16) -> ColumnType {
    ColumnType::Varchar(n)
}

const fn unique(name: &'static str, columns: &'static [&'static str]) -> Index {
    Index { name, columns, unique: true }
}

const fn index(name: &'static str, columns: &'static [&'static str]) -> Index {
    Index { name, columns, unique: false }
}

/// `version` v1: the schema version of every other table, which Kamailio's modules check
/// at startup.
///
/// From Kamailio's `standard-create.sql`.
pub static VERSION: Table = Table {
    name: "version",
    version: 1,
    columns: &[
        ID,
        Column::new("table_name", varchar(32)),
        // ...except this one, hence MySQL `INT UNSIGNED`.
        Column::new("table_version", ColumnType::Int { width: None, unsigned: true }).default(D::Int(0)),
    ],
    indexes: &[unique("table_name_idx", &["table_name"])],
};

/// `presentity` v5: Published presence documents (PUBLISH), per presentity and event.
///
/// From Kamailio's `presence-create.sql`.
pub static PRESENTITY: Table = Table {
    name: "presentity",
    version: 5,
    columns: &[
        ID,
        Column::new("username", varchar(64)),
        Column::new("domain", varchar(64)),
        Column::new("event", varchar(64)),
        Column::new("etag", varchar(128)),
        Column::new("expires", INT),
        Column::new("received_time", INT),
        Column::new("body", BLOB),
        Column::new("sender", varchar(255)),
        Column::new("priority", INT).default(D::Int(0)),
        Column::new("ruid", varchar(64)).null(),
    ],
    indexes: &[
        unique("presentity_idx", &["username", "domain", "event", "etag"]),
        unique("ruid_idx", &["ruid"]),
        index("presentity_expires", &["expires"]),
        index("account_idx", &["username", "domain", "event"]),
    ],
};

/// `active_watchers` v12: Active subscriptions (SUBSCRIBE dialogs) to presentities.
///
/// From Kamailio's `presence-create.sql`.
pub static ACTIVE_WATCHERS: Table = Table {
    name: "active_watchers",
    version: 12,
    columns: &[
        ID,
        Column::new("presentity_uri", varchar(255)),
        Column::new("watcher_username", varchar(64)),
        Column::new("watcher_domain", varchar(64)),
        Column::new("to_user", varchar(64)),
        Column::new("to_domain", varchar(64)),
        Column::new("event", varchar(64)).default(D::Str("presence")),
        Column::new("event_id", varchar(64)).null(),
        Column::new("to_tag", varchar(128)),
        Column::new("from_tag", varchar(128)),
        Column::new("callid", varchar(255)),
        Column::new("local_cseq", INT),
        Column::new("remote_cseq", INT),
        Column::new("contact", varchar(255)),
        Column::new("record_route", TEXT).null(),
        Column::new("expires", INT),
        Column::new("status", INT).default(D::Int(2)),
        Column::new("reason", varchar(64)).null(),
        Column::new("version", INT).default(D::Int(0)),
        Column::new("socket_info", varchar(64)),
        Column::new("local_contact", varchar(255)),
        Column::new("from_user", varchar(64)),
        Column::new("from_domain", varchar(64)),
        Column::new("updated", INT),
        Column::new("updated_winfo", INT),
        Column::new("flags", INT).default(D::Int(0)),
        Column::new("user_agent", varchar(255)).null().default(D::Str("")),
    ],
    indexes: &[
        unique("active_watchers_idx", &["callid", "to_tag", "from_tag"]),
        index("active_watchers_expires", &["expires"]),
        index("active_watchers_pres", &["presentity_uri", "event"]),
        index("updated_idx", &["updated"]),
        index("updated_winfo_idx", &["updated_winfo", "presentity_uri"]),
    ],
};

/// `watchers` v3: Watcher authorization state (for presence.winfo).
///
/// From Kamailio's `presence-create.sql`.
pub static WATCHERS: Table = Table {
    name: "watchers",
    version: 3,
    columns: &[
        ID,
        Column::new("presentity_uri", varchar(255)),
        Column::new("watcher_username", varchar(64)),
        Column::new("watcher_domain", varchar(64)),
        Column::new("event", varchar(64)).default(D::Str("presence")),
        Column::new("status", INT),
        Column::new("reason", varchar(64)).null(),
        Column::new("inserted_time", INT),
    ],
    indexes: &[unique("watcher_idx", &["presentity_uri", "watcher_username", "watcher_domain", "event"])],
};

/// `xcap` v4: XCAP documents (presence rules, resource lists).
///
/// From Kamailio's `presence-create.sql`.
pub static XCAP: Table = Table {
    name: "xcap",
    version: 4,
    columns: &[
        ID,
        Column::new("username", varchar(64)),
        Column::new("domain", varchar(64)),
        Column::new("doc", LARGE_BLOB),
        Column::new("doc_type", INT),
        Column::new("etag", varchar(128)),
        Column::new("source", INT),
        Column::new("doc_uri", varchar(255)),
        Column::new("port", INT),
    ],
    indexes: &[
        unique("doc_uri_idx", &["doc_uri"]),
        index("account_doc_type_idx", &["username", "domain", "doc_type"]),
        index("account_doc_type_uri_idx", &["username", "domain", "doc_type", "doc_uri"]),
        index("account_doc_uri_idx", &["username", "domain", "doc_uri"]),
    ],
};

/// `pua` v7: The presence user agent's own publications and subscriptions.
///
/// From Kamailio's `presence-create.sql`.
pub static PUA: Table = Table {
    name: "pua",
    version: 7,
    columns: &[
        ID,
        Column::new("pres_uri", varchar(255)),
        Column::new("pres_id", varchar(255)),
        Column::new("event", INT),
        Column::new("expires", INT),
        Column::new("desired_expires", INT),
        Column::new("flag", INT),
        Column::new("etag", varchar(128)),
        Column::new("tuple_id", varchar(64)).null(),
        Column::new("watcher_uri", varchar(255)),
        Column::new("call_id", varchar(255)),
        Column::new("to_tag", varchar(128)),
        Column::new("from_tag", varchar(128)),
        Column::new("cseq", INT),
        Column::new("record_route", TEXT).null(),
        Column::new("contact", varchar(255)),
        Column::new("remote_contact", varchar(255)),
        Column::new("version", INT),
        Column::new("extra_headers", TEXT),
    ],
    indexes: &[
        unique("pua_idx", &["etag", "tuple_id", "call_id", "from_tag"]),
        index("expires_idx", &["expires"]),
        index("dialog1_idx", &["pres_id", "pres_uri"]),
        index("dialog2_idx", &["call_id", "from_tag"]),
        index("record_idx", &["pres_id"]),
    ],
};

/// `location` v9: Registered contacts (usrloc).
///
/// From Kamailio's `usrloc-create.sql`.
pub static LOCATION: Table = Table {
    name: "location",
    version: 9,
    columns: &[
        ID,
        Column::new("ruid", varchar(64)).default(D::Str("")),
        Column::new("username", varchar(64)).default(D::Str("")),
        Column::new("domain", varchar(64)).null().default(D::Null),
        Column::new("contact", varchar(512)).default(D::Str("")),
        Column::new("received", varchar(128)).null().default(D::Null),
        Column::new("path", varchar(512)).null().default(D::Null),
        Column::new("expires", DATETIME).default(D::Str("2030-05-28 21:32:15")),
        Column::new("q", ColumnType::Float { size: Some((10, 2)) }).default(D::Float(1.0)),
        Column::new("callid", varchar(255)).default(D::Str("Default-Call-ID")),
        Column::new("cseq", INT).default(D::Int(1)),
        Column::new("last_modified", DATETIME).default(D::Str("2000-01-01 00:00:01")),
        Column::new("flags", INT).default(D::Int(0)),
        Column::new("cflags", INT).default(D::Int(0)),
        Column::new("user_agent", varchar(255)).default(D::Str("")),
        Column::new("socket", varchar(64)).null().default(D::Null),
        Column::new("methods", INT).null().default(D::Null),
        Column::new("instance", varchar(255)).null().default(D::Null),
        Column::new("reg_id", INT).default(D::Int(0)),
        Column::new("server_id", INT).default(D::Int(0)),
        Column::new("connection_id", INT).default(D::Int(0)),
        Column::new("keepalive", INT).default(D::Int(0)),
        Column::new("partition", INT).default(D::Int(0)),
    ],
    indexes: &[
        unique("ruid_idx", &["ruid"]),
        index("account_contact_idx", &["username", "domain", "contact"]),
        index("expires_idx", &["expires"]),
        index("tcpcon_idx", &["connection_id"]),
        index("connection_idx", &["server_id", "connection_id"]),
    ],
};

/// `location_attrs` v1: Extra attributes of registered contacts (usrloc).
///
/// From Kamailio's `usrloc-create.sql`.
pub static LOCATION_ATTRS: Table = Table {
    name: "location_attrs",
    version: 1,
    columns: &[
        ID,
        Column::new("ruid", varchar(64)).default(D::Str("")),
        Column::new("username", varchar(64)).default(D::Str("")),
        Column::new("domain", varchar(64)).null().default(D::Null),
        Column::new("aname", varchar(64)).default(D::Str("")),
        Column::new("atype", INT).default(D::Int(0)),
        Column::new("avalue", varchar(512)).default(D::Str("")),
        Column::new("last_modified", DATETIME).default(D::Str("2000-01-01 00:00:01")),
    ],
    indexes: &[
        index("account_record_idx", &["username", "domain", "ruid"]),
        index("last_modified_idx", &["last_modified"]),
    ],
};

/// `dialog` v7: Dialogs kept by the dialog module.
///
/// From Kamailio's `dialog-create.sql`.
pub static DIALOG: Table = Table {
    name: "dialog",
    version: 7,
    columns: &[
        ID,
        Column::new("hash_entry", UINT),
        Column::new("hash_id", UINT),
        Column::new("callid", varchar(255)),
        Column::new("from_uri", varchar(255)),
        Column::new("from_tag", varchar(128)),
        Column::new("to_uri", varchar(255)),
        Column::new("to_tag", varchar(128)),
        Column::new("caller_cseq", varchar(20)),
        Column::new("callee_cseq", varchar(20)),
        Column::new("caller_route_set", varchar(512)).null(),
        Column::new("callee_route_set", varchar(512)).null(),
        Column::new("caller_contact", varchar(255)),
        Column::new("callee_contact", varchar(255)),
        Column::new("caller_sock", varchar(64)),
        Column::new("callee_sock", varchar(64)),
        Column::new("state", UINT),
        Column::new("start_time", UINT),
        Column::new("timeout", UINT).default(D::Int(0)),
        Column::new("sflags", UINT).default(D::Int(0)),
        Column::new("iflags", UINT).default(D::Int(0)),
        Column::new("toroute_name", varchar(32)).null(),
        Column::new("req_uri", varchar(255)),
        Column::new("xdata", varchar(512)).null(),
    ],
    indexes: &[index("hash_idx", &["hash_entry", "hash_id"])],
};

/// `dialog_vars` v1: Variables attached to dialogs.
///
/// From Kamailio's `dialog-create.sql`.
pub static DIALOG_VARS: Table = Table {
    name: "dialog_vars",
    version: 1,
    columns: &[
        ID,
        Column::new("hash_entry", UINT),
        Column::new("hash_id", UINT),
        Column::new("dialog_key", varchar(128)),
        Column::new("dialog_value", varchar(512)),
    ],
    indexes: &[index("hash_idx", &["hash_entry", "hash_id"])],
};

/// `subscriber` v7: SIP credentials for digest authentication (auth_db).
///
/// From Kamailio's `auth_db-create.sql`.
pub static SUBSCRIBER: Table = Table {
    name: "subscriber",
    version: 7,
    columns: &[
        ID,
        Column::new("username", varchar(64)).default(D::Str("")),
        Column::new("domain", varchar(64)).default(D::Str("")),
        Column::new("password", varchar(64)).default(D::Str("")),
        Column::new("ha1", varchar(128)).default(D::Str("")),
        Column::new("ha1b", varchar(128)).default(D::Str("")),
    ],
    indexes: &[unique("account_idx", &["username", "domain"]), index("username_idx", &["username"])],
};

pub(crate) static GROUPS: &[Group] = &[
    Group { name: "standard", tables: &[&VERSION] },
    Group { name: "presence", tables: &[&PRESENTITY, &ACTIVE_WATCHERS, &WATCHERS, &XCAP, &PUA] },
    Group { name: "usrloc", tables: &[&LOCATION, &LOCATION_ATTRS] },
    Group { name: "dialog", tables: &[&DIALOG, &DIALOG_VARS] },
    Group { name: "auth_db", tables: &[&SUBSCRIBER] },
];

/// `pua_body` v1 (puahost's own): the body and content type of each publication in `pua`,
/// which Kamailio's table has no column for. A 412 must be answered with the full body, even
/// after a restart, so the body is kept beside the row (`pua_id` = `pua.id`), leaving
/// Kamailio's table unchanged.
pub static PUA_BODY: Table = Table {
    name: "pua_body",
    version: 1,
    columns: &[ID, Column::new("pua_id", INT), Column::new("body", TEXT), Column::new("content_type", varchar(255))],
    indexes: &[unique("pua_id_idx", &["pua_id"])],
};

/// puahost's own tables, which Kamailio's scripts do not have.
pub(crate) static OWN_GROUPS: &[Group] = &[Group { name: "puahost", tables: &[&PUA_BODY] }];
