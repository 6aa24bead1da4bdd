//! PIDF presence documents (RFC 3863, `application/pidf+xml`) handled the way
//! Kamailio's `presence_xml` module handles them.
//!
//! The crate covers what the presence server needs between storing
//! publications and sending NOTIFY bodies:
//!
//! * [`parse`], [`check_xml`], [`check_pidf`]: validation of a PUBLISH body
//!   with hard [`Limits`] (size, nesting depth, node count, no DTD), so a
//!   hostile body is refused cheaply before it is stored;
//! * [`aggregate`]: the merge of all publications of one presentity into one
//!   NOTIFY body;
//! * [`offline`]: the "closed" body sent when a publication is removed;
//! * [`dummy`]: the built-in body of `force_dummy_presence`;
//! * [`single_body`]: the priority choice of `force_presence_single_body`;
//! * [`check_basic`], [`check_activities`]: `pres_check_basic` and
//!   `pres_check_activities`;
//! * [`sphere`]: the RPID sphere used by the pres-rules sphere condition.
//!
//! Documents are parsed with `roxmltree` only to find byte ranges; outputs are
//! built by copying slices of the original text. Unknown extensions are thus
//! preserved byte for byte, and nothing is re-serialised.
//!
//! Name matching follows Kamailio's libxml2 helpers: local names only,
//! ASCII case-insensitive, any namespace (except [`sphere`] and
//! [`check_pidf`], which Kamailio resolves with namespaces).

pub mod splice;

use roxmltree::{Document, Node, ParsingOptions};
use splice::{declared_prefixes, escape_into, named, push_decl, qname, skip_past, tag_end, text_content};

/// PIDF namespace (RFC 3863).
pub const NS_PIDF: &str = "urn:ietf:params:xml:ns:pidf";
/// PIDF data model namespace (RFC 4479), prefix `dm`.
pub const NS_DM: &str = "urn:ietf:params:xml:ns:pidf:data-model";
/// RPID namespace (RFC 4480), prefix `rpid`.
pub const NS_RPID: &str = "urn:ietf:params:xml:ns:pidf:rpid";
/// CIPID namespace (RFC 4482), prefix `c`.
pub const NS_CIPID: &str = "urn:ietf:params:xml:ns:pidf:cipid";

/// The single XML declaration every generated document starts with.
const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// Tuple id of Kamailio's dummy body; kept identical so watchers that cache
/// tuples see the same id as with Kamailio.
const DUMMY_TUPLE_ID: &str = "615293b33c62dec073e05d9421e9f48b";

/// Limits for documents re-parsed internally. They were validated when
/// stored, possibly with larger configured limits, so these only guard
/// against pathological input reaching the library some other way.
const INTERNAL: Limits = Limits { max_bytes: usize::MAX, max_depth: 1024, max_nodes: 1_000_000 };

/// Why a body was refused. `Display` gives a short reason suitable for the
/// reason phrase or a warning of a 400/415 reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PidfError {
    /// The body exceeds [`Limits::max_bytes`].
    #[error("body too large ({size} bytes, limit {max})")]
    TooLarge {
        /// Body size in bytes.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// The body is not UTF-8.
    #[error("body is not valid UTF-8")]
    NotUtf8,
    /// Elements nest deeper than [`Limits::max_depth`].
    #[error("XML nesting deeper than {0}")]
    TooDeep(u32),
    /// The document has more nodes than [`Limits::max_nodes`].
    #[error("XML has more than {0} nodes")]
    TooManyNodes(u32),
    /// A DTD was present; refused so entity expansion attacks cannot work.
    #[error("XML DTD not allowed")]
    Dtd,
    /// Not well-formed XML (or not namespace-well-formed).
    #[error("malformed XML: {0}")]
    Malformed(String),
    /// Well-formed, but the root is not `presence` in the PIDF namespace.
    #[error("root element is not a PIDF presence")]
    NotPidf,
}

/// Resource limits applied to untrusted bodies before and while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum body size in bytes.
    pub max_bytes: usize,
    /// Maximum element nesting depth (the root element is depth 1).
    pub max_depth: u32,
    /// Maximum number of parsed nodes (elements, texts, attributes, ...).
    pub max_nodes: u32,
}

impl Default for Limits {
    /// 64 KiB, depth 32, 10 000 nodes: far above real PIDF documents.
    fn default() -> Self {
        Limits { max_bytes: 64 * 1024, max_depth: 32, max_nodes: 10_000 }
    }
}

/// Parses an untrusted body within `limits`.
///
/// The size and nesting depth are checked first (the depth by a linear byte
/// scan), so oversized or deeply nested bodies cost no tree allocation. DTDs
/// are refused, which also rules out entity expansion ("billion laughs").
pub fn parse<'a>(body: &'a [u8], limits: &Limits) -> Result<Document<'a>, PidfError> {
    if body.len() > limits.max_bytes {
        return Err(PidfError::TooLarge { size: body.len(), max: limits.max_bytes });
    }
    let text = std::str::from_utf8(body).map_err(|_| PidfError::NotUtf8)?;
    depth_scan(body, limits.max_depth)?;
    let opts = ParsingOptions { allow_dtd: false, nodes_limit: limits.max_nodes, ..Default::default() };
    Document::parse_with_options(text, opts).map_err(|e| match e {
        roxmltree::Error::DtdDetected => PidfError::Dtd,
        roxmltree::Error::NodesLimitReached => PidfError::TooManyNodes(limits.max_nodes),
        other => PidfError::Malformed(other.to_string()),
    })
}

/// Checks that a body is well-formed XML within `limits`, whatever its root
/// (used for dialog-info and other XML event bodies).
pub fn check_xml(body: &[u8], limits: &Limits) -> Result<(), PidfError> {
    parse(body, limits).map(|_| ())
}

/// Checks that a body is a PIDF document within `limits`: its root must be
/// `presence` in the `urn:ietf:params:xml:ns:pidf` namespace.
pub fn check_pidf(body: &[u8], limits: &Limits) -> Result<(), PidfError> {
    let doc = parse(body, limits)?;
    if doc.root_element().has_tag_name((NS_PIDF, "presence")) { Ok(()) } else { Err(PidfError::NotPidf) }
}

/// Merges the publications of one presentity into one document
/// (Kamailio `agregate_xmls`).
///
/// `docs` are ordered oldest first. The newest document is the base; walking
/// from the next newest to the oldest, a candidate whose first root-child
/// `tuple` has an `id` equal (ASCII case-insensitively, as Kamailio) to a
/// tuple already under the base root is dropped; otherwise all its root
/// element children are appended to the base root. Namespace declarations the
/// appended elements inherited from their own root are re-declared on them
/// where the base root binds differently, so the output stays
/// namespace-correct. Unparseable documents (or ones whose root is not
/// `presence`) are skipped. Returns `None` when nothing usable remains.
pub fn aggregate(docs: &[&str]) -> Option<String> {
    let parsed: Vec<(&str, Document)> = docs
        .iter()
        .filter_map(|t| {
            let d = parse(t.as_bytes(), &INTERNAL).ok()?;
            named(d.root_element(), "presence").then_some((*t, d))
        })
        .collect();
    let ((base_text, base_doc), older) = parsed.split_last()?;
    let base = base_doc.root_element();
    let mut ids: Vec<&str> = base.children().filter(|n| named(*n, "tuple")).filter_map(|n| n.attribute("id")).collect();
    let mut appended = String::new();
    for (text, doc) in older.iter().rev() {
        let root = doc.root_element();
        let first_id = root.children().find(|n| named(*n, "tuple")).and_then(|t| t.attribute("id"));
        if first_id.is_some_and(|id| ids.iter().any(|x| x.eq_ignore_ascii_case(id))) {
            continue;
        }
        for child in root.children().filter(Node::is_element) {
            if named(child, "tuple") {
                ids.extend(child.attribute("id"));
            }
            copy_with_namespaces(text, child, root, base, &mut appended);
            appended.push('\n');
        }
    }
    let range = base.range();
    let mut out = String::with_capacity(XML_DECL.len() + range.len() + appended.len() + 32);
    out.push_str(XML_DECL);
    if appended.is_empty() {
        out.push_str(&base_text[range]);
    } else if is_self_closing(base_text, base) {
        push_open_tag(&mut out, base_text, base);
        out.push('\n');
        out.push_str(&appended);
        push_end_tag(&mut out, base_text, base);
    } else {
        let close = end_tag_start(base_text, base);
        out.push_str(&base_text[range.start..close]);
        out.push_str(&appended);
        out.push_str(&base_text[close..range.end]);
    }
    Some(out)
}

/// Builds the offline version of a publication (Kamailio `offline_nbody`),
/// sent when the publication is removed.
///
/// The result keeps the root start tag (attributes and namespace declarations)
/// and only the first tuple: its start tag and its `status`, with `basic`
/// forced to `closed` (added when missing). Prefixes used by the document are
/// respected. Returns `None` if the document does not parse or has no tuple.
pub fn offline(doc: &str) -> Option<String> {
    let d = parse(doc.as_bytes(), &INTERNAL).ok()?;
    let root = d.root_element();
    if !named(root, "presence") {
        return None;
    }
    let tuple = root.children().find(|n| named(*n, "tuple"))?;
    let mut out = String::with_capacity(XML_DECL.len() + 256);
    out.push_str(XML_DECL);
    push_open_tag(&mut out, doc, root);
    push_open_tag(&mut out, doc, tuple);
    match tuple.children().find(|n| named(*n, "status")) {
        Some(status) => match status.children().find(|n| named(*n, "basic")) {
            Some(basic) => {
                out.push_str(&doc[status.range().start..basic.range().start]);
                push_open_tag(&mut out, doc, basic);
                out.push_str("closed");
                push_end_tag(&mut out, doc, basic);
                out.push_str(&doc[basic.range().end..status.range().end]);
            }
            None => {
                push_open_tag(&mut out, doc, status);
                push_pidf_element(&mut out, doc, status, "basic", "closed");
                if is_self_closing(doc, status) {
                    push_end_tag(&mut out, doc, status);
                } else {
                    out.push_str(&doc[start_tag_end(doc, status)..status.range().end]);
                }
            }
        },
        None => {
            let mut inner = String::new();
            push_pidf_element(&mut inner, doc, tuple, "basic", "closed");
            push_pidf_element(&mut out, doc, tuple, "status", &inner);
        }
    }
    push_end_tag(&mut out, doc, tuple);
    push_end_tag(&mut out, doc, root);
    Some(out)
}

/// The fixed "open / Available" body of `force_dummy_presence`, sent when a
/// presentity has no published state. As in Kamailio, `entity` is the user
/// part only (not a URI); it is XML-escaped.
pub fn dummy(user: &str) -> String {
    let mut out = String::with_capacity(600 + user.len());
    out.push_str(XML_DECL);
    out.push_str("<presence xmlns=\"");
    out.push_str(NS_PIDF);
    out.push_str("\" xmlns:dm=\"");
    out.push_str(NS_DM);
    out.push_str("\" xmlns:rpid=\"");
    out.push_str(NS_RPID);
    out.push_str("\" xmlns:c=\"");
    out.push_str(NS_CIPID);
    out.push_str("\" entity=\"");
    escape_into(&mut out, user);
    out.push_str("\">\n<tuple id=\"");
    out.push_str(DUMMY_TUPLE_ID);
    out.push_str(
        "\">\n<status>\n<basic>open</basic>\n</status>\n</tuple>\n<note>Available</note>\n\
         <dm:person id=\"1\">\n<rpid:activities/>\n<dm:note>Available</dm:note>\n</dm:person>\n</presence>\n",
    );
    out
}

/// Chooses one publication instead of merging (Kamailio
/// `aggregate_xmls_priority`, `force_presence_single_body`).
///
/// `docs` are ordered oldest first. The newest document is the start; an
/// older one replaces the current choice when the text of its first
/// `lookup_element` differs (ASCII case-insensitively) from the current one
/// and occurs later in `priorities` (substring position, as `strstr`; text not
/// found ranks lowest). As in Kamailio, nothing replaces a current choice that
/// has no such element, and empty `priorities` or `lookup_element` select the
/// newest. Unparseable documents are skipped. The chosen text is returned
/// unchanged.
pub fn single_body<'a>(docs: &[&'a str], priorities: &str, lookup_element: &str) -> Option<&'a str> {
    let mut usable = docs.iter().rev().filter_map(|t| parse(t.as_bytes(), &INTERNAL).ok().map(|d| (*t, d)));
    let (mut chosen, newest) = usable.next()?;
    if priorities.is_empty() || lookup_element.is_empty() {
        return Some(chosen);
    }
    let content_of = |d: &Document| d.descendants().find(|n| named(*n, lookup_element)).map(text_content);
    let Some(mut cur) = content_of(&newest) else { return Some(chosen) };
    let mut rank = priorities.find(cur.as_str());
    for (text, d) in usable {
        let Some(cmp) = content_of(&d) else { continue };
        if cmp.eq_ignore_ascii_case(&cur) {
            continue;
        }
        let r = priorities.find(cmp.as_str());
        // Option ordering puts None (not found, strstr's NULL) lowest.
        if r > rank {
            (chosen, cur, rank) = (text, cmp, r);
        }
    }
    Some(chosen)
}

/// `pres_check_basic` on the aggregated document: 1 if some tuple's first
/// `basic` starts with `status` (ASCII case-insensitive prefix over the length
/// of `status`, as `strncasecmp`), else -1 (also for no document or no tuple).
///
/// As in Kamailio the walk covers the first tuple and its following siblings,
/// and stops at a tuple where no `basic` is found, keeping the result so far.
pub fn check_basic(doc: &str, status: &str) -> i32 {
    let Ok(d) = parse(doc.as_bytes(), &INTERNAL) else { return -1 };
    let Some(first) = d.descendants().find(|n| named(*n, "tuple")) else { return -1 };
    let mut ret = -1;
    for tuple in first.next_siblings().filter(|n| named(*n, "tuple")) {
        let Some(basic) = kamailio_find(tuple, "basic") else { break };
        let value = text_content(basic);
        if value.len() >= status.len() && value.as_bytes()[..status.len()].eq_ignore_ascii_case(status.as_bytes()) {
            ret = 1;
        }
    }
    ret
}

/// `pres_check_activities` on the aggregated document: 1 if a person's
/// `activities` contains an element named `activity`; -2 if there is no
/// person, or (when nothing matched before) a person without `activities` or
/// with an empty one, which also ends the walk; -1 otherwise (including an
/// unparseable document).
pub fn check_activities(doc: &str, activity: &str) -> i32 {
    let Ok(d) = parse(doc.as_bytes(), &INTERNAL) else { return -1 };
    let Some(first) = d.descendants().find(|n| named(*n, "person")) else { return -2 };
    let mut ret = -1;
    for person in first.next_siblings().filter(|n| named(*n, "person")) {
        let Some(activities) = kamailio_find(person, "activities").filter(|a| a.has_children()) else {
            if ret <= 0 {
                ret = -2;
            }
            break;
        };
        if kamailio_find(activities, activity).is_some() {
            ret = 1;
        }
    }
    ret
}

/// The RPID sphere of the presentity: the first `rpid:sphere` child of a
/// `dm:person` child of the root (Kamailio's XPath
/// `/pidf:presence/dm:person/rpid:sphere`), trimmed. When the sphere holds an
/// element instead of text (RFC 4480 `<rpid:work/>`), its local name is used.
/// `None` when absent or empty.
pub fn sphere(doc: &str) -> Option<String> {
    let d = parse(doc.as_bytes(), &INTERNAL).ok()?;
    let root = d.root_element();
    if !root.has_tag_name((NS_PIDF, "presence")) {
        return None;
    }
    let sphere = root
        .children()
        .filter(|n| n.has_tag_name((NS_DM, "person")))
        .flat_map(|p| p.children())
        .find(|n| n.has_tag_name((NS_RPID, "sphere")))?;
    let text = text_content(sphere);
    let value = match text.trim() {
        "" => sphere.first_element_child()?.tag_name().name(),
        t => t,
    };
    Some(value.to_owned())
}

/// Kamailio's `xmlNodeGetNodeByName(node, name)`: searches `node`, its
/// descendants, then each following sibling and its descendants.
fn kamailio_find<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.next_siblings().flat_map(|s| s.descendants()).find(|n| named(*n, name))
}

/// Refuses nesting deeper than `max` with a single pass over the bytes.
/// Comments, CDATA, PIs and declarations are skipped; quoted attribute values
/// may contain `>`. Anything malformed is left for the real parser.
fn depth_scan(b: &[u8], max: u32) -> Result<(), PidfError> {
    let mut depth: u32 = 0;
    let mut i = 0;
    while let Some(p) = b.get(i..).and_then(|s| s.iter().position(|&c| c == b'<')) {
        i += p + 1;
        let rest = b.get(i..).unwrap_or_default();
        i = if rest.starts_with(b"?") {
            skip_past(b, i, b"?>")
        } else if rest.starts_with(b"!--") {
            skip_past(b, i + 3, b"-->")
        } else if rest.starts_with(b"![CDATA[") {
            skip_past(b, i + 8, b"]]>")
        } else if rest.starts_with(b"!") {
            skip_past(b, i, b">")
        } else if rest.starts_with(b"/") {
            depth = depth.saturating_sub(1);
            skip_past(b, i, b">")
        } else {
            let (end, self_closing) = tag_end(b, i);
            if !self_closing {
                depth += 1;
                if depth > max {
                    return Err(PidfError::TooDeep(max));
                }
            }
            end
        };
    }
    Ok(())
}

/// End of an element's start tag in `text`.
fn start_tag_end(text: &str, n: Node) -> usize {
    tag_end(text.as_bytes(), n.range().start + 1).0.min(n.range().end)
}

fn is_self_closing(text: &str, n: Node) -> bool {
    text.get(..n.range().end).is_some_and(|t| t.ends_with("/>"))
}

/// Start of the end tag of a non-self-closing element: its last `</`.
fn end_tag_start(text: &str, n: Node) -> usize {
    let r = n.range();
    text.get(r.clone()).and_then(|t| t.rfind("</")).map_or(r.end, |p| r.start + p)
}

/// Pushes the element's start tag, turned into an open tag if self-closing.
fn push_open_tag(out: &mut String, text: &str, n: Node) {
    let tag = &text[n.range().start..start_tag_end(text, n)];
    match tag.strip_suffix("/>") {
        Some(head) => {
            out.push_str(head);
            out.push('>');
        }
        None => out.push_str(tag),
    }
}

fn push_end_tag(out: &mut String, text: &str, n: Node) {
    out.push_str("</");
    out.push_str(qname(text, n));
    out.push('>');
}

/// Pushes `<local>content</local>` in the PIDF namespace as a child of
/// `parent`, reusing the parent's prefix when the parent is a PIDF element
/// (or any in-scope PIDF binding), declaring the namespace otherwise.
fn push_pidf_element(out: &mut String, text: &str, parent: Node, local: &str, content: &str) {
    let q = qname(text, parent);
    let prefix = if parent.tag_name().namespace() == Some(NS_PIDF) {
        Some(q.split_once(':').map_or("", |(p, _)| p))
    } else if parent.default_namespace() == Some(NS_PIDF) {
        Some("")
    } else {
        parent.namespaces().find(|ns| ns.uri() == NS_PIDF && ns.name().is_some()).and_then(|ns| ns.name())
    };
    let name = match prefix {
        Some(p) if !p.is_empty() => format!("{p}:{local}"),
        _ => local.to_owned(),
    };
    out.push('<');
    out.push_str(&name);
    if prefix.is_none() {
        out.push_str(" xmlns=\"");
        out.push_str(NS_PIDF);
        out.push('"');
    }
    out.push('>');
    out.push_str(content);
    out.push_str("</");
    out.push_str(&name);
    out.push('>');
}

/// Copies element `el` (a child of `src_root`) for insertion under `dst_root`,
/// adding on its start tag each namespace binding inherited from `src_root`
/// that `dst_root` binds differently. All inherited prefixes are carried, used
/// or not, because QName-valued content (e.g. `xsi:type`) may rely on them.
/// `xmlns=""` is added only when unprefixed element names need it.
fn copy_with_namespaces(text: &str, el: Node, src_root: Node, dst_root: Node, out: &mut String) {
    let r = el.range();
    let name_end = r.start + 1 + qname(text, el).len();
    let own = declared_prefixes(&text[name_end..start_tag_end(text, el)]);
    out.push_str(&text[r.start..name_end]);
    for ns in src_root.namespaces() {
        let prefix = ns.name();
        if prefix == Some("xml") || own.contains(&prefix) {
            continue;
        }
        let dst = dst_root.lookup_namespace_uri(prefix).unwrap_or_default();
        if dst == ns.uri() {
            continue;
        }
        push_decl(out, prefix, ns.uri());
    }
    let src_default = src_root.default_namespace().unwrap_or_default();
    let dst_default = dst_root.default_namespace().unwrap_or_default();
    if src_default.is_empty()
        && !dst_default.is_empty()
        && !own.contains(&None)
        && el.descendants().any(|d| d.is_element() && d.tag_name().namespace().is_none_or(str::is_empty))
    {
        push_decl(out, None, "");
    }
    out.push_str(&text[name_end..r.end]);
}

#[cfg(test)]
mod tests;
