//! RFC 4235 dialog-info documents (`application/dialog-info+xml`) handled the way Kamailio's
//! `presence_dialoginfo` (server side) and `pua_dialoginfo` (publisher side) handle them.
//!
//! * [`check`]: validation of an untrusted PUBLISH body with hard [`Limits`] (size, nesting
//!   depth, node count, no DTD, so no entity expansion) through [`pidf::parse`], then the root
//!   must be `dialog-info` in [`NS`] with its required `version`, `state` and `entity`.
//! * [`aggregate`]: the publications of one presentity merged into one full-state document
//!   (Kamailio `dlginfo_agg_nbody`): one `<dialog-info>` root whose children are the root
//!   children of every publication, oldest first; with `force_single_dialog` only the dialog
//!   Kamailio's state priority picks; with `force_dummy_dialog` a terminated dummy dialog when
//!   the presentity has no publication ([`dummy`]).
//! * [`build`]: the body pua_dialoginfo publishes for one side of a call.
//!
//! Copied elements are slices of the original text (found with `roxmltree`), with the namespace
//! declarations they inherited from their own root added where the new root binds differently,
//! so extensions are kept byte for byte and the output stays namespace-correct.
//!
//! Name matching follows Kamailio's libxml2 helpers: local names, ASCII case-insensitive, any
//! namespace.

use std::collections::HashMap;

use pidf::splice::{declared_prefixes, escape_into, named, push_decl, qname, tag_end, text_content};
use roxmltree::{Document, Node};

pub use pidf::{Limits, PidfError};

/// The dialog-info namespace (RFC 4235).
pub const NS: &str = "urn:ietf:params:xml:ns:dialog-info";
/// Content type of dialog-info bodies.
pub const CONTENT_TYPE: &str = "application/dialog-info+xml";
/// The `id` of the dummy dialog (`force_dummy_dialog`), the one Kamailio uses.
pub const DUMMY_DIALOG_ID: &str = "615293b33c62dec073e05d9421e9f48b";

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// Limits for stored documents parsed again for aggregation: they were checked when
/// published (possibly with larger configured limits); these only guard against pathological
/// input reaching the library another way.
const INTERNAL: Limits = Limits { max_bytes: usize::MAX, max_depth: 1024, max_nodes: 1_000_000 };

/// Why a body was refused; `Display` is a short reason for the reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogInfoError {
    /// Too large, not UTF-8, too deep, too many nodes, a DTD, or not well-formed.
    #[error(transparent)]
    Xml(#[from] PidfError),
    /// Well-formed, but the root is not `dialog-info` in [`NS`].
    #[error("root element is not a dialog-info document")]
    NotDialogInfo,
    /// The root lacks a required attribute (`version`, `state` or `entity`).
    #[error("dialog-info without its {0} attribute")]
    MissingAttribute(&'static str),
}

impl DialogInfoError {
    /// The SIP status a PUBLISH with this body gets: 413 too large, 415 not (well-formed)
    /// dialog-info, 400 for a DTD, excessive nesting or nodes, or a missing attribute.
    pub fn sip_status(&self) -> u16 {
        match self {
            DialogInfoError::Xml(PidfError::TooLarge { .. }) => 413,
            DialogInfoError::Xml(PidfError::NotUtf8 | PidfError::Malformed(_)) | DialogInfoError::NotDialogInfo => 415,
            _ => 400,
        }
    }
}

/// Checks an untrusted body: within `limits`, no DTD, root `dialog-info` in [`NS`] with the
/// `version`, `state` and `entity` attributes RFC 4235 requires.
pub fn check(body: &[u8], limits: &Limits) -> Result<(), DialogInfoError> {
    let doc = pidf::parse(body, limits)?;
    let root = doc.root_element();
    if !root.has_tag_name((NS, "dialog-info")) {
        return Err(DialogInfoError::NotDialogInfo);
    }
    for name in ["version", "state", "entity"] {
        if root.attribute(name).is_none() {
            return Err(DialogInfoError::MissingAttribute(name));
        }
    }
    Ok(())
}

/// presence_dialoginfo's modparams that shape the aggregated document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Send only one dialog, chosen by state (Kamailio's priority, see [`aggregate`]).
    pub force_single_dialog: bool,
    /// Send a terminated dummy dialog when the presentity has no publication.
    pub force_dummy_dialog: bool,
}

/// Merges the publications `docs` (oldest first) of presentity `entity` into one document
/// with root attributes `version`, `state="full"` and `entity` (Kamailio `dlginfo_agg_nbody`).
///
/// - No publications: the [`dummy`] document with `force_dummy_dialog`, else `None`.
/// - Otherwise every element child of every publication's root, in order. Documents that do
///   not parse are skipped (`None` when none parses).
/// - `force_single_dialog` with more than one publication: one child only. Walking all
///   children, those whose `state` (the first `state` element in it, or else in a following
///   sibling, as libxml's lookup Kamailio uses) is `terminated` are candidates; `confirmed`,
///   `early`, `proceeding` and `trying` ones only when their dialog has no later state in any
///   publication (summing terminated 16, confirmed 8, early 4, proceeding 2, trying 1 over the
///   dialogs with the same id, and refusing at >= 16, 8, 4 and 2 respectively). The last
///   candidate of each state is kept and the winner is early, else confirmed, proceeding,
///   trying, terminated, else the last child that had any state. No winner gives `None`.
pub fn aggregate(entity: &str, version: u32, docs: &[&str], options: Options) -> Option<String> {
    if docs.is_empty() {
        return options.force_dummy_dialog.then(|| dummy(entity, version));
    }
    let parsed: Vec<(&str, Document)> =
        docs.iter().filter_map(|t| Some((*t, pidf::parse(t.as_bytes(), &INTERNAL).ok()?))).collect();
    if parsed.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(256 + docs.iter().map(|d| d.len()).sum::<usize>());
    push_root_open(&mut out, entity, version);
    if options.force_single_dialog && parsed.len() != 1 {
        let (i, node) = single_dialog(&parsed)?;
        let (text, doc) = &parsed[i];
        push_copy(&mut out, text, node, doc.root_element());
    } else {
        for (text, doc) in &parsed {
            let root = doc.root_element();
            for child in root.children().filter(Node::is_element) {
                push_copy(&mut out, text, child, root);
            }
        }
    }
    out.push_str("</dialog-info>\n");
    Some(out)
}

/// The document of `force_dummy_dialog`: one dialog [`DUMMY_DIALOG_ID`], direction
/// `recipient`, state `terminated`.
pub fn dummy(entity: &str, version: u32) -> String {
    let mut out = String::with_capacity(320);
    push_root_open(&mut out, entity, version);
    out.push_str("  <dialog id=\"");
    out.push_str(DUMMY_DIALOG_ID);
    out.push_str("\" direction=\"recipient\">\n    <state>terminated</state>\n  </dialog>\n</dialog-info>\n");
    out
}

/// The direction of a dialog as seen by the entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The entity sent the INVITE (the caller).
    Initiator,
    /// The entity received it (the callee).
    Recipient,
}

impl Direction {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Initiator => "initiator",
            Direction::Recipient => "recipient",
        }
    }
}

/// Dialog states of RFC 4235 (always written lower-case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// INVITE sent or received, no provisional answer yet.
    Trying,
    /// A provisional answer without a To-tag.
    Proceeding,
    /// A provisional answer with a To-tag (early dialog).
    Early,
    /// A 2xx answer.
    Confirmed,
    /// Failed or ended.
    Terminated,
}

impl State {
    /// The element text.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Trying => "trying",
            State::Proceeding => "proceeding",
            State::Early => "early",
            State::Confirmed => "confirmed",
            State::Terminated => "terminated",
        }
    }

    /// A state from its name, ASCII case-insensitively (Kamailio's pua_dialoginfo writes
    /// `Trying`).
    pub fn parse(s: &str) -> Option<State> {
        [State::Trying, State::Proceeding, State::Early, State::Confirmed, State::Terminated]
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// The `<local>` or `<remote>` participant of a dialog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Participant {
    /// `<identity>`: the participant's URI.
    pub identity: String,
    /// `display` attribute of `<identity>`.
    pub identity_display: Option<String>,
    /// `<target uri>`: the contact, if known.
    pub target: Option<String>,
    /// `display` attribute of `<target>` (pua_dialoginfo's attribute_display).
    pub target_display: Option<String>,
}

/// One dialog of a published document; `None` fields are left out (pua_dialoginfo's
/// include_callid, include_tags and include_localremote decide which are set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    /// `id`: unique per dialog (pua_dialoginfo uses a generated id, not the Call-ID).
    pub id: String,
    /// `call-id`.
    pub call_id: Option<String>,
    /// `local-tag`.
    pub local_tag: Option<String>,
    /// `remote-tag`.
    pub remote_tag: Option<String>,
    /// `direction`.
    pub direction: Option<Direction>,
    /// `<state>`.
    pub state: State,
    /// `<local>`.
    pub local: Option<Participant>,
    /// `<remote>`.
    pub remote: Option<Participant>,
}

/// The full-state document pua_dialoginfo publishes for `entity`: the root with `version`,
/// `state="full"` and `entity`, and `dialog` if any (children in RFC 4235's schema order:
/// state, local, remote).
pub fn build(entity: &str, version: u32, dialog: Option<&Dialog>) -> String {
    let mut out = String::with_capacity(512);
    push_root_open(&mut out, entity, version);
    if let Some(d) = dialog {
        out.push_str("  <dialog");
        push_attr(&mut out, "id", &d.id);
        if let Some(v) = &d.call_id {
            push_attr(&mut out, "call-id", v);
        }
        if let Some(v) = &d.local_tag {
            push_attr(&mut out, "local-tag", v);
        }
        if let Some(v) = &d.remote_tag {
            push_attr(&mut out, "remote-tag", v);
        }
        if let Some(v) = d.direction {
            push_attr(&mut out, "direction", v.as_str());
        }
        out.push_str(">\n    <state>");
        out.push_str(d.state.as_str());
        out.push_str("</state>\n");
        for (name, p) in [("local", &d.local), ("remote", &d.remote)] {
            let Some(p) = p else { continue };
            out.push_str("    <");
            out.push_str(name);
            out.push_str(">\n      <identity");
            if let Some(v) = &p.identity_display {
                push_attr(&mut out, "display", v);
            }
            out.push('>');
            escape_into(&mut out, &p.identity);
            out.push_str("</identity>\n");
            if let Some(t) = &p.target {
                out.push_str("      <target");
                if let Some(v) = &p.target_display {
                    push_attr(&mut out, "display", v);
                }
                push_attr(&mut out, "uri", t);
                out.push_str("/>\n");
            }
            out.push_str("    </");
            out.push_str(name);
            out.push_str(">\n");
        }
        out.push_str("  </dialog>\n");
    }
    out.push_str("</dialog-info>\n");
    out
}

// ---- internals ----

fn push_root_open(out: &mut String, entity: &str, version: u32) {
    out.push_str(XML_DECL);
    out.push_str("<dialog-info xmlns=\"");
    out.push_str(NS);
    out.push('"');
    push_attr(out, "version", &version.to_string());
    push_attr(out, "state", "full");
    push_attr(out, "entity", entity);
    out.push_str(">\n");
}

fn push_attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    escape_into(out, value);
    out.push('"');
}

/// Weight of a state in Kamailio's `check_relevant_state`.
fn weight(state: &str) -> u32 {
    match () {
        _ if state.eq_ignore_ascii_case("terminated") => 16,
        _ if state.eq_ignore_ascii_case("confirmed") => 8,
        _ if state.eq_ignore_ascii_case("early") => 4,
        _ if state.eq_ignore_ascii_case("proceeding") => 2,
        _ if state.eq_ignore_ascii_case("trying") => 1,
        _ => 0,
    }
}

/// The state Kamailio reads for each element child of `root`
/// (`xmlNodeGetNodeContentByName(child, "state")`): the first `state` element in the child,
/// else in a following sibling. Computed backwards in one pass.
fn child_states<'a, 'i>(root: Node<'a, 'i>) -> Vec<(Node<'a, 'i>, Option<String>)> {
    let children: Vec<Node> = root.children().filter(Node::is_element).collect();
    let mut states: Vec<Option<String>> = vec![None; children.len()];
    let mut next: Option<String> = None;
    for (k, c) in children.iter().enumerate().rev() {
        if let Some(s) = c.descendants().find(|n| named(*n, "state")) {
            next = Some(text_content(s));
        }
        states[k].clone_from(&next);
    }
    children.into_iter().zip(states).collect()
}

/// `force_single_dialog`'s choice: the index of the publication and the chosen child.
fn single_dialog<'a, 'i>(parsed: &'a [(&'i str, Document<'i>)]) -> Option<(usize, Node<'a, 'i>)> {
    let docs: Vec<Vec<(Node, Option<String>)>> = parsed.iter().map(|(_, d)| child_states(d.root_element())).collect();
    // check_relevant_state, once for every id: the "current dialog id" and the publication it
    // was seen in carry over from child to child (and publication to publication), as in C.
    let mut relevant: HashMap<String, u32> = HashMap::new();
    let (mut cur_id, mut cur_doc): (Option<&str>, Option<usize>) = (None, None);
    for (i, children) in docs.iter().enumerate() {
        for (node, state) in children {
            if named(*node, "dialog") {
                cur_id = node.attribute("id");
                if cur_id.is_some() {
                    cur_doc = Some(i);
                }
            }
            let (Some(id), Some(state)) = (cur_id, state) else { continue };
            if cur_doc == Some(i) {
                *relevant.entry(id.to_ascii_lowercase()).or_default() += weight(state);
            }
        }
    }
    let later = |id: Option<&str>| id.map_or(0, |id| relevant.get(&id.to_ascii_lowercase()).copied().unwrap_or(0));

    type Pick<'a, 'i> = Option<(usize, Node<'a, 'i>)>;
    let (mut terminated, mut confirmed, mut early, mut proceeding, mut trying): (Pick, Pick, Pick, Pick, Pick) =
        (None, None, None, None, None);
    let mut winner: Pick = None;
    let (mut cur_id, mut cur_doc): (Option<&str>, Option<usize>) = (None, None);
    for (i, children) in docs.iter().enumerate() {
        for (node, state) in children {
            if named(*node, "dialog") {
                cur_id = node.attribute("id");
                if cur_id.is_some() {
                    cur_doc = Some(i);
                }
            }
            let Some(state) = state else { continue };
            let here = Some((i, *node));
            let own = cur_doc == Some(i);
            match weight(state) {
                16 => terminated = here,
                8 if own && later(cur_id) < 16 => confirmed = here,
                4 if own && later(cur_id) < 8 => early = here,
                2 if own && later(cur_id) < 4 => proceeding = here,
                1 if own && later(cur_id) < 2 => trying = here,
                _ => {}
            }
            winner = early.or(confirmed).or(proceeding).or(trying).or(terminated).or(here);
        }
    }
    winner
}

/// Pushes element `el` (a child of `src_root`) as a child of the generated root, whose only
/// binding is the default namespace [`NS`]: each binding `el` inherited from `src_root` that
/// differs is declared on it (`xmlns=""` only when unprefixed names need it).
fn push_copy(out: &mut String, text: &str, el: Node, src_root: Node) {
    let r = el.range();
    let name_end = r.start + 1 + qname(text, el).len();
    let tag_end = tag_end(text.as_bytes(), r.start + 1).0.min(r.end);
    let own = declared_prefixes(text.get(name_end..tag_end).unwrap_or_default());
    out.push_str("  ");
    out.push_str(&text[r.start..name_end]);
    for ns in src_root.namespaces() {
        let prefix = ns.name();
        if prefix == Some("xml") || own.contains(&prefix) || (prefix.is_none() && ns.uri() == NS) {
            continue;
        }
        push_decl(out, prefix, ns.uri());
    }
    if src_root.default_namespace().is_none_or(str::is_empty)
        && !own.contains(&None)
        && el.descendants().any(|d| d.is_element() && d.tag_name().namespace().is_none_or(str::is_empty))
    {
        push_decl(out, None, "");
    }
    out.push_str(&text[name_end..r.end]);
    out.push('\n');
}

#[cfg(test)]
mod tests;
