//! RPC commands with Kamailio 5.6's names, parameters, reply shapes and fault texts
//! (`ul_rpc.c`).

use plugin_api::prelude::*;
use serde_json::json;

use crate::store::Contact;
use crate::{Usrloc, UsrlocModule, now};

const NOT_SET: &str = "[not set]";

fn or_not_set(s: &str) -> &str {
    if s.is_empty() { NOT_SET } else { s }
}

/// Kamailio's "Expires" of a contact in a dump: "permanent", "expired" or the seconds left.
fn expires_json(c: &Contact, now: i64) -> Value {
    match c.expires {
        0 => json!("permanent"),
        e if e <= now => json!("expired"),
        e => json!(e - now),
    }
}

/// One contact as Kamailio's `ul_rpc_dump_contact` writes it.
pub fn contact_json(c: &Contact, now: i64) -> Value {
    json!({"Contact": {
        "Address": c.contact,
        "Expires": expires_json(c, now),
        "Q": if c.q < 0 { json!(-1) } else { json!(f64::from(c.q) / 1000.0) },
        "Call-ID": c.callid,
        "CSeq": c.cseq,
        "User-Agent": c.user_agent,
        "Received": or_not_set(&c.received),
        "Path": or_not_set(&c.path),
        "State": "CS_SYNC",
        "Flags": c.flags,
        "CFlags": c.cflags,
        "Socket": or_not_set(&c.socket),
        "Methods": c.methods,
        "Ruid": c.ruid,
        "Instance": or_not_set(&c.instance),
        "Reg-Id": c.reg_id,
        "Server-Id": 0,
        "Tcpconn-Id": -1,
        "Keepalive": 0,
        "Last-Keepalive": 0,
        "KA-Roundtrip": 0,
        "Last-Modified": c.last_modified,
    }})
}

fn table_arg(u: &Usrloc, call: &RpcCall) -> Result<String, RpcFault> {
    let table = call.str(0).ok_or_else(|| RpcFault::new(500, "Not enough parameters (table and AOR to lookup)"))?;
    if !u.location().has_table(&table) {
        return Err(RpcFault::new(500, "Domain not found"));
    }
    Ok(table)
}

fn aor_arg(call: &RpcCall) -> Result<String, RpcFault> {
    call.str(1).ok_or_else(|| RpcFault::new(500, "Not enough parameters (table and AOR to lookup)"))
}

fn dump(m: &UsrlocModule, call: &RpcCall) -> RpcResult {
    let brief = match call.str(0).as_deref() {
        None => false,
        Some("brief") => true,
        Some(_) => return Err(RpcFault::new(500, "Bad display options")),
    };
    let now = now();
    let hash_size = m.state.hash_size;
    Ok(m.state.with_snapshot(|loc| dump_tables(loc, brief, now, hash_size)))
}

fn dump_tables(loc: &crate::store::Location, brief: bool, now: i64, hash_size: u32) -> Value {
    let mut domains = Vec::new();
    for table in loc.table_names() {
        let aors = loc.aors(&table);
        let list: Vec<Value> = aors
            .iter()
            .map(|(aor, contacts)| {
                let contacts: Vec<Value> = contacts
                    .iter()
                    .map(|c| {
                        if brief {
                            json!({"Contact": {"Address": c.contact, "Expires": expires_json(c, now)}})
                        } else {
                            contact_json(c, now)
                        }
                    })
                    .collect();
                json!({"Info": {"AoR": aor, "HashID": hash_id(aor), "Contacts": contacts}})
            })
            .collect();
        domains.push(json!({"Domain": {
            "Domain": table,
            "Size": 1u64 << hash_size,
            "AoRs": list,
            "Stats": {"Records": aors.len(), "Max-Slots": 1},
        }}));
    }
    json!({ "Domains": domains })
}

/// Kamailio's core_case_hash of the AoR (shown as HashID); FNV-1a here, stable across builds.
fn hash_id(aor: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in aor.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn lookup(m: &UsrlocModule, call: &RpcCall) -> RpcResult {
    let table = table_arg(m.state, call)?;
    let aor = aor_arg(call)?;
    let now = now();
    let contacts = m.state.contacts(&table, &aor);
    if contacts.is_empty() {
        return Err(RpcFault::new(404, "AOR not found"));
    }
    let list: Vec<Value> = contacts.iter().map(|c| contact_json(c, now)).collect();
    Ok(json!({"AoR": aor, "Contacts": list}))
}

fn rm(m: &UsrlocModule, call: &RpcCall) -> RpcResult {
    let table = table_arg(m.state, call)?;
    let aor = aor_arg(call)?;
    m.state.delete_aor(&table, &aor, None);
    Ok(Value::Null)
}

fn rm_contact(m: &UsrlocModule, call: &RpcCall) -> RpcResult {
    let table = table_arg(m.state, call)?;
    let aor = aor_arg(call)?;
    let contact = call.str(2).ok_or_else(|| RpcFault::new(500, "Not enough parameters (table, AOR and contact)"))?;
    if m.state.contacts(&table, &aor).is_empty() {
        return Err(RpcFault::new(404, "AOR not found"));
    }
    if !m.state.delete_contact(&table, &aor, &contact) {
        return Err(RpcFault::new(404, "Contact not found"));
    }
    Ok(Value::Null)
}

/// Adds the commands to the declaration.
pub fn declare(info: ModuleInfo<UsrlocModule>) -> ModuleInfo<UsrlocModule> {
    info.rpc(Rpc::new("ul.dump", dump).doc("[brief]: every table, AoR and contact"))
        .rpc(Rpc::new("ul.lookup", lookup).doc("table aor: the AoR's contacts (fault 404 when none)"))
        .rpc(Rpc::new("ul.rm", rm).doc("table aor: removes every contact of the AoR"))
        .rpc(Rpc::new("ul.rm_contact", rm_contact).doc("table aor contact: removes one contact"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_shapes() {
        let mut c = Contact::default();
        assert_eq!(expires_json(&c, 100), json!("permanent"));
        c.expires = 100;
        assert_eq!(expires_json(&c, 100), json!("expired"));
        c.expires = 160;
        assert_eq!(expires_json(&c, 100), json!(60));
        let j = contact_json(&c, 100);
        assert_eq!(j["Contact"]["Received"], json!("[not set]"));
    }
}
