//! XCAP presence authorization: RFC 4745 common-policy and RFC 5025
//! pres-rules documents, evaluated either the way Kamailio's `presence_xml`
//! does ([`Mode::Kamailio`], the default, so existing rule documents keep
//! working) or exactly as the RFCs say ([`Mode::Rfc`]).
//!
//! Flow: [`Rules::parse`] the presentity's pres-rules document once,
//! [`Rules::evaluate`] it for a watcher, map the [`Decision`] to a
//! subscription state with [`subscription_state`], and filter every NOTIFY
//! body with [`Rules::transform`]. Filtering splices the original text (it
//! cuts the byte ranges of dropped elements), so everything kept is
//! byte-for-byte what the publisher sent.
//!
//! # Kamailio versus RFC
//!
//! | Topic | `Mode::Kamailio` (`xcap_auth.c`, `notify_body.c`) | `Mode::Rfc` (RFC 4745 / RFC 5025) |
//! |---|---|---|
//! | Rule combination | first rule in document order whose conditions hold | every matching rule applies; sub-handling is the maximum (block < confirm < polite-block < allow); transformations are unioned |
//! | Element names | any namespace, local names compared case-insensitively | same lookup (namespace-lax) in the rules document; PIDF elements are matched by namespace + name |
//! | Non-rule children of `<ruleset>` | comments, PIs and rules without `<conditions>` abort evaluation: no rule matches | ignored (a `<rule>` without `<conditions>` matches everyone) |
//! | `<identity>` missing | rule skipped | condition absent: matches everyone |
//! | `<one id>` | exact, case-sensitive; a `<one>` without `id` aborts evaluation | exact, case-sensitive; a `<one>` without `id` never matches |
//! | `<many domain>` | compared with the **From** domain by the lax test of [`kamailio_many_domain_mismatch`] | case-insensitive equality with the domain of the watcher URI |
//! | `<except id>` | off-by-one: matches only `watcher URI + one extra character` ([`kamailio_except_id_matches`]), i.e. practically never | exact equality with the watcher URI excludes |
//! | `<except domain>` | exact, case-sensitive compare with the From domain excludes | case-insensitive compare with the watcher URI's domain excludes |
//! | `<except>` in one `<many>` | an excluding `<many>` also cancels an earlier `<one>` match of the same rule | exclusions only affect their `<many>` |
//! | `<sphere>` | only with `sphere_check`; compares the element's **text content** (not `value`) case-insensitively; no presentity sphere → true | compares the `value` attribute (any whitespace-separated token) case-insensitively; no presentity sphere → false; `sphere_check` ignored |
//! | `<validity>` | from/until pairs, second resolution; any unparsable or pre-1970 time, or a `from` without a later `until`, aborts evaluation; once one rule was in its validity window, later rules' validity is treated as satisfied (the flag is never reset) | `from ≤ now ≤ until` for some pair; unparsable pairs are ignored |
//! | `<sub-handling>` | prefix match (`allowed` is allow); unknown value → [`Decision::is_error`] (Kamailio fails the request) | exact trimmed token; unknown values contribute nothing |
//! | No rule matches | state terminated with the userdel reason unless the previous state was pending | pending |
//! | Transformations, no match or no `<transformations>` | body unchanged | default deny: only the empty `<presence>` root (no match); a match without transformations permits nothing |
//! | `provide-services/persons` | `FALSE` removes all, `TRUE` keeps all, else `all-*` or a class / occurrence-id / deviceID / service-uri / service-uri-scheme match (case-insensitive); the walk starts at the first such element and stops at the first sibling with another name | union over matching rules of `all-*`, `true`/`false` text, or selector lists; selectors compare exactly except URI/scheme (case-insensitive) |
//! | `provide-devices` | looks for elements named `devices` (not `device`), so it never removes anything from a PIDF | filters `dm:device` |
//! | Other `provide-XYZ` | generic: acts on the first element named `XYZ` anywhere (e.g. `provide-activities` FALSE removes the first `<activities>` only) | RFC 5025 attribute permissions inside permitted elements, see [`Rules::transform`] |
//!
//! Kamailio's `class`/`deviceID`/`contact` lookups for a tuple also search
//! the tuple's *following siblings* (libxml's `xmlNodeGetNodeByName` walks
//! `next`), so a tuple without `<class>` borrows the next tuple's; this is
//! reproduced. Times without an offset are read as UTC (Kamailio uses the
//! server's local time).

#![warn(missing_docs)]

use std::collections::HashSet;
use std::ops::Range;

use chrono::{DateTime, NaiveDateTime, Utc};
use roxmltree::{Document, Node, ParsingOptions};

/// RFC 4745 common-policy namespace.
pub const NS_COMMON_POLICY: &str = "urn:ietf:params:xml:ns:common-policy";
/// RFC 5025 pres-rules namespace.
pub const NS_PRES_RULES: &str = "urn:ietf:params:xml:ns:pres-rules";
/// RFC 3863 PIDF namespace.
pub const NS_PIDF: &str = "urn:ietf:params:xml:ns:pidf";
/// RFC 4479 data-model namespace.
pub const NS_DATA_MODEL: &str = "urn:ietf:params:xml:ns:pidf:data-model";
/// RFC 4480 RPID namespace.
pub const NS_RPID: &str = "urn:ietf:params:xml:ns:pidf:rpid";
/// Largest document (rules or PIDF) accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Largest number of XML nodes accepted in one document.
pub const MAX_NODES: u32 = 50_000;
/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 64;

/// RPID elements governed by a boolean `provide-<name>` (RFC 5025 §3.2.x).
const RPID_ATTRIBUTES: &[&str] = &[
    "activities",
    "class",
    "mood",
    "place-is",
    "place-type",
    "privacy",
    "relationship",
    "sphere",
    "status-icon",
    "time-offset",
];

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// The document exceeds [`MAX_DOCUMENT_BYTES`].
    #[error("document too large: {0} bytes")]
    TooLarge(usize),
    /// Elements nest deeper than [`MAX_DEPTH`].
    #[error("XML nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// Not well-formed XML, a DTD, or more than [`MAX_NODES`] nodes.
    #[error("malformed XML: {0}")]
    Xml(String),
    /// The root element is not a common-policy `<ruleset>`.
    #[error("root element is not a common-policy <ruleset>")]
    NotRuleset,
    /// The body is not a PIDF document (no `<presence>` root).
    #[error("root element is not a PIDF <presence>")]
    NotPidf,
}

/// Evaluation semantics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Kamailio `presence_xml` behaviour, quirks included (the default).
    #[default]
    Kamailio,
    /// RFC 4745 / RFC 5025 evaluation.
    Rfc,
}

/// The `<sub-handling>` action; the discriminants are RFC 4745's ordering
/// values (the combined action is the maximum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum SubHandling {
    /// `block`: reject the subscription.
    Block = 0,
    /// `confirm`: ask the presentity (pending).
    Confirm = 10,
    /// `polite-block`: accept but send neutral state.
    PoliteBlock = 20,
    /// `allow`: accept.
    Allow = 30,
}

impl SubHandling {
    /// Exact RFC token (after trimming); `None` for anything else.
    pub fn from_rfc(text: &str) -> Option<SubHandling> {
        match text.trim() {
            "block" => Some(SubHandling::Block),
            "confirm" => Some(SubHandling::Confirm),
            "polite-block" => Some(SubHandling::PoliteBlock),
            "allow" => Some(SubHandling::Allow),
            _ => None,
        }
    }

    /// Kamailio's test: `strncmp` prefix checks in the order block, confirm,
    /// polite-block, allow, on the untrimmed text content.
    pub fn from_kamailio(text: &str) -> Option<SubHandling> {
        [
            ("block", SubHandling::Block),
            ("confirm", SubHandling::Confirm),
            ("polite-block", SubHandling::PoliteBlock),
            ("allow", SubHandling::Allow),
        ]
        .into_iter()
        .find(|(p, _)| text.starts_with(p))
        .map(|(_, v)| v)
    }
}

/// Subscription state, numbered as in Kamailio's `subs_t.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    /// `active`.
    Active = 1,
    /// `pending`.
    Pending = 2,
    /// `terminated`.
    Terminated = 3,
    /// `waiting`.
    Waiting = 4,
}

/// One `<one>`/`<many>` set of an `<identity>` condition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `id` attributes of the `<one>` children, in order (`None`: no `id`).
    pub ones: Vec<Option<String>>,
    /// `<many>` children, in order.
    pub manys: Vec<Many>,
}

/// A `<many [domain]>` identity with its `<except>` children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Many {
    /// The `domain` attribute.
    pub domain: Option<String>,
    /// `<except>` children, in order.
    pub excepts: Vec<Except>,
}

/// An `<except id | domain>` exclusion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Except {
    /// The `id` attribute.
    pub id: Option<String>,
    /// The `domain` attribute.
    pub domain: Option<String>,
}

/// A `<sphere>` condition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sphere {
    /// The `value` attribute (RFC 4745).
    pub value: Option<String>,
    /// The element's text content (what Kamailio compares).
    pub text: String,
}

/// One `<from>` or `<until>` of a `<validity>`, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeBound {
    /// `true` for `<from>`, `false` for `<until>`.
    pub is_from: bool,
    /// The parsed xsd:dateTime; `None` if it did not parse.
    pub at: Option<DateTime<Utc>>,
}

/// A `<validity>` condition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validity {
    /// The `<from>`/`<until>` children in document order.
    pub bounds: Vec<TimeBound>,
    /// Some bound failed to parse (Kamailio aborts when it reaches it).
    pub parse_error: bool,
}

/// The `<conditions>` of a rule (each kind in document order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    /// `<identity>` elements (Kamailio uses the first; RFC mode ANDs them).
    pub identities: Vec<Identity>,
    /// `<sphere>` elements (Kamailio uses the first; RFC mode ANDs them).
    pub spheres: Vec<Sphere>,
    /// `<validity>` elements (Kamailio uses the first; RFC mode ANDs them).
    pub validities: Vec<Validity>,
}

/// A selector inside `provide-services/persons/devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `<class>`: the element's `rpid:class`.
    Class(String),
    /// `<deviceID>`: the element's `dm:deviceID`.
    DeviceId(String),
    /// `<occurrence-id>`: the element's `id` attribute.
    OccurrenceId(String),
    /// `<service-uri>`: the tuple's `<contact>`.
    ServiceUri(String),
    /// `<service-uri-scheme>`: the scheme of the tuple's `<contact>`.
    ServiceUriScheme(String),
}

/// A `provide-services`, `provide-persons` or `provide-devices` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provide {
    /// `<all-services/>` (etc.).
    All,
    /// Text `TRUE`/`FALSE` (case-insensitive).
    Bool(bool),
    /// Selectors; the element is provided if any matches.
    List(Vec<Selector>),
}

/// `provide-user-input` level (RFC 5025), ordered for the union.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UserInput {
    /// Not provided.
    False,
    /// Value only (no `idle-threshold`, no `last-input`).
    Bare,
    /// Value and `idle-threshold`.
    Thresholds,
    /// Everything.
    Full,
}

/// A child of `<transformations>` as Kamailio's generic loop sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawTransformation {
    /// Local name, e.g. `provide-services`.
    pub name: String,
    /// Full text content.
    pub content: String,
    /// Element children as (local name, text content).
    pub children: Vec<(String, String)>,
}

/// The `<transformations>` of a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transformations {
    /// `provide-services`.
    pub services: Option<Provide>,
    /// `provide-persons`.
    pub persons: Option<Provide>,
    /// `provide-devices`.
    pub devices: Option<Provide>,
    /// Local names `X` of every boolean `provide-X` whose value is true
    /// (e.g. `activities`, `note`, `deviceID`).
    pub attributes: Vec<String>,
    /// `provide-user-input` level.
    pub user_input: Option<UserInput>,
    /// `provide-unknown-attribute` grants as (namespace, local name).
    pub unknown_attributes: Vec<(String, String)>,
    /// `<provide-all-attributes/>` present.
    pub all_attributes: bool,
    /// All children in document order (Kamailio mode).
    pub raw: Vec<RawTransformation>,
}

/// One child of `<ruleset>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    /// The `id` attribute.
    pub id: Option<String>,
    /// `true` for a common-policy `<rule>` element. Comments, processing
    /// instructions and foreign elements are kept with `false` because
    /// Kamailio walks (and, lacking `<conditions>`, aborts on) them.
    pub is_rule: bool,
    /// `<conditions>`; `None` when absent.
    pub conditions: Option<Conditions>,
    /// Text content of `<actions><sub-handling>`.
    pub sub_handling: Option<String>,
    /// `<transformations>`; `None` when absent.
    pub transformations: Option<Transformations>,
}

/// A parsed pres-rules document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<Rule>,
}

/// The subscriber being authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watcher<'a> {
    /// Watcher identity, `sip:user@domain` (Kamailio builds it from the
    /// watcher user and domain).
    pub uri: &'a str,
    /// Host of the SUBSCRIBE's From URI (Kamailio compares `<many domain>`
    /// and `<except domain>` with it).
    pub from_domain: &'a str,
}

/// Why Kamailio-mode evaluation stopped or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A ruleset child (rule, comment, PI) without `<conditions>`: no match.
    MissingConditions {
        /// Index in [`Rules::rules`].
        rule: usize,
    },
    /// Unparsable time or `<from>` without `<until>`: no match.
    BadValidity {
        /// Index in [`Rules::rules`].
        rule: usize,
    },
    /// `<one>` without `id`: no match.
    OneWithoutId {
        /// Index in [`Rules::rules`].
        rule: usize,
    },
    /// The matched rule's sub-handling is not recognised: Kamailio's
    /// `pres_watcher_allowed` returns an error (the request fails).
    UnknownSubHandling {
        /// Index in [`Rules::rules`].
        rule: usize,
        /// The text found.
        value: String,
    },
}

/// The result of [`Rules::evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The mode the decision was made in.
    pub mode: Mode,
    /// Combined sub-handling; `None` if no matching rule has a valid one.
    pub sub_handling: Option<SubHandling>,
    /// The matched rule (Kamailio) or the first matched rule (RFC).
    pub rule: Option<usize>,
    /// Every matched rule index (at most one in Kamailio mode).
    pub matched: Vec<usize>,
    /// Kamailio-mode abort or error, if any.
    pub fault: Option<Fault>,
}

impl Decision {
    /// `true` when Kamailio would fail the request (unknown sub-handling).
    pub fn is_error(&self) -> bool {
        matches!(self.fault, Some(Fault::UnknownSubHandling { .. }))
    }
}

/// Output of [`Rules::transform`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transformed {
    /// The filtered document.
    pub body: String,
    /// Number of byte ranges cut out (0: body unchanged).
    pub removed: usize,
}

fn parse_xml(text: &str) -> Result<Document<'_>, RulesError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(RulesError::TooLarge(text.len()));
    }
    let opts = ParsingOptions { allow_dtd: false, nodes_limit: MAX_NODES, ..ParsingOptions::default() };
    let doc = Document::parse_with_options(text, opts).map_err(|e| RulesError::Xml(e.to_string()))?;
    let mut depth = vec![0usize; doc.descendants().count()];
    for n in doc.descendants() {
        if let Some(p) = n.parent() {
            let d = depth[p.id().get_usize()] + 1;
            if d > MAX_DEPTH {
                return Err(RulesError::TooDeep);
            }
            depth[n.id().get_usize()] = d;
        }
    }
    Ok(doc)
}

fn named(n: &Node, name: &str) -> bool {
    n.is_element() && n.tag_name().name().eq_ignore_ascii_case(name)
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| named(c, name))
}

fn children<'a, 'i: 'a>(n: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children().filter(move |c| named(c, name))
}

/// libxml `xmlNodeGetContent`: all descendant text, concatenated.
fn content(n: Node) -> String {
    n.descendants().filter(|d| d.is_text()).filter_map(|d| d.text()).collect()
}

/// Kamailio's `xmlNodeGetAttrContentByName`: case-insensitive name, any
/// namespace.
fn attr<'a>(n: Node<'a, '_>, name: &str) -> Option<&'a str> {
    n.attributes().find(|a| a.name().eq_ignore_ascii_case(name)).map(|a| a.value())
}

fn attr_owned(n: Node, name: &str) -> Option<String> {
    attr(n, name).map(str::to_string)
}

fn is(n: &Node, ns: &str, name: &str) -> bool {
    n.is_element() && n.tag_name().namespace() == Some(ns) && n.tag_name().name() == name
}

fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|n| n.and_utc())
}

fn parse_provide(n: Node, all: &str) -> Provide {
    if child(n, all).is_some() {
        return Provide::All;
    }
    let sels: Vec<Selector> = n
        .children()
        .filter(|c| c.is_element())
        .filter_map(|c| {
            let v = content(c).trim().to_string();
            match c.tag_name().name() {
                "class" => Some(Selector::Class(v)),
                "deviceID" => Some(Selector::DeviceId(v)),
                "occurrence-id" => Some(Selector::OccurrenceId(v)),
                "service-uri" => Some(Selector::ServiceUri(v)),
                "service-uri-scheme" => Some(Selector::ServiceUriScheme(v)),
                _ => None,
            }
        })
        .collect();
    if !sels.is_empty() {
        return Provide::List(sels);
    }
    match content(n).trim() {
        t if t.eq_ignore_ascii_case("true") => Provide::Bool(true),
        t if t.eq_ignore_ascii_case("false") => Provide::Bool(false),
        _ => Provide::List(Vec::new()),
    }
}

fn is_true(s: &str) -> bool {
    let s = s.trim();
    s.eq_ignore_ascii_case("true") || s == "1"
}

fn parse_transformations(t: Node) -> Transformations {
    let mut out = Transformations::default();
    for c in t.children().filter(|c| c.is_element()) {
        let name = c.tag_name().name();
        out.raw.push(RawTransformation {
            name: name.to_string(),
            content: content(c),
            children: c
                .children()
                .filter(|g| g.is_element())
                .map(|g| (g.tag_name().name().to_string(), content(g)))
                .collect(),
        });
        match name {
            "provide-services" => out.services = Some(parse_provide(c, "all-services")),
            "provide-persons" => out.persons = Some(parse_provide(c, "all-persons")),
            "provide-devices" => out.devices = Some(parse_provide(c, "all-devices")),
            "provide-all-attributes" => out.all_attributes = true,
            "provide-user-input" => {
                out.user_input = match content(c).trim() {
                    "bare" => Some(UserInput::Bare),
                    "thresholds" => Some(UserInput::Thresholds),
                    "full" => Some(UserInput::Full),
                    _ => Some(UserInput::False),
                }
            }
            "provide-unknown-attribute" => {
                if let (Some(ns), Some(n)) = (c.attribute("ns"), c.attribute("name"))
                    && is_true(&content(c))
                {
                    out.unknown_attributes.push((ns.to_string(), n.to_string()));
                }
            }
            _ => {
                if let Some(x) = name.strip_prefix("provide-")
                    && is_true(&content(c))
                {
                    out.attributes.push(x.to_string());
                }
            }
        }
    }
    out
}

fn parse_conditions(c: Node) -> Conditions {
    Conditions {
        identities: children(c, "identity")
            .map(|i| Identity {
                ones: children(i, "one").map(|o| attr_owned(o, "id")).collect(),
                manys: children(i, "many")
                    .map(|m| Many {
                        domain: attr_owned(m, "domain"),
                        excepts: children(m, "except")
                            .map(|e| Except { id: attr_owned(e, "id"), domain: attr_owned(e, "domain") })
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
        spheres: children(c, "sphere")
            .map(|s| Sphere { value: s.attribute("value").map(str::to_string), text: content(s) })
            .collect(),
        validities: children(c, "validity")
            .map(|v| {
                let bounds: Vec<TimeBound> = v
                    .children()
                    .filter(|b| named(b, "from") || named(b, "until"))
                    .map(|b| TimeBound { is_from: named(&b, "from"), at: parse_datetime(&content(b)) })
                    .collect();
                let parse_error = bounds.iter().any(|b| b.at.is_none());
                Validity { bounds, parse_error }
            })
            .collect(),
    }
}

/// Kamailio's `<many domain>` test, reproduced exactly:
///
/// ```c
/// if (strlen(domain) != from_domain.len &&
///     strncmp(domain, from_domain.s, from_domain.len)) continue; /* mismatch */
/// ```
///
/// `strncmp` runs over the **From domain's** length and stops at the
/// attribute's terminating NUL, so it reports equality exactly when the
/// From domain is a prefix of the attribute. Hence a mismatch only when the
/// lengths differ **and** the From domain is not a prefix of `domain`: any
/// From domain of the same length matches (`example.com` lets
/// `attacker.org` in), as does any prefix (`ex` matches `example.com`).
/// Comparison is byte-wise and case-sensitive.
pub fn kamailio_many_domain_mismatch(domain: &str, from_domain: &str) -> bool {
    domain.len() != from_domain.len() && !domain.as_bytes().starts_with(from_domain.as_bytes())
}

/// Kamailio's `<except id>` test, reproduced exactly:
/// `strlen(id) - 1 == w_uri.len && strncmp(id, w_uri.s, w_uri.len) == 0`.
/// The off-by-one means it matches only an `id` that is the watcher URI
/// followed by exactly one more character; the correct URI never matches.
/// An empty `id` makes `strlen - 1` wrap around and never matches.
pub fn kamailio_except_id_matches(id: &str, watcher_uri: &str) -> bool {
    !id.is_empty() && id.len() - 1 == watcher_uri.len() && id.starts_with(watcher_uri)
}

/// The host part of a SIP URI (`sip:user@host:port;params` → `host`).
fn uri_domain(uri: &str) -> &str {
    let rest = uri.split_once(':').map_or(uri, |(_, r)| r);
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = host.split([';', '?', '>']).next().unwrap_or("");
    if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    }
}

impl Rules {
    /// Parses a pres-rules document. DTDs are refused, as are documents over
    /// [`MAX_DOCUMENT_BYTES`], [`MAX_NODES`] or [`MAX_DEPTH`]; the root must
    /// be `<ruleset>` in the common-policy namespace.
    pub fn parse(doc: &str) -> Result<Rules, RulesError> {
        let xml = parse_xml(doc)?;
        let root = xml.root_element();
        if !is(&root, NS_COMMON_POLICY, "ruleset") {
            return Err(RulesError::NotRuleset);
        }
        let rules = root
            .children()
            .filter(|n| !n.is_text())
            .map(|n| {
                if !n.is_element() {
                    return Rule::default();
                }
                Rule {
                    id: n.attribute("id").map(str::to_string),
                    is_rule: is(&n, NS_COMMON_POLICY, "rule"),
                    conditions: child(n, "conditions").map(parse_conditions),
                    sub_handling: child(n, "actions").and_then(|a| child(a, "sub-handling")).map(content),
                    transformations: child(n, "transformations").map(parse_transformations),
                }
            })
            .collect();
        Ok(Rules { rules })
    }

    /// The `<ruleset>` children in document order; [`Decision::rule`] and
    /// [`Decision::matched`] index this slice.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Decides which rules apply to `watcher` at `now`.
    ///
    /// `presentity_sphere` is the sphere from the presentity's RPID.
    /// `sphere_check` is Kamailio's `enable_sphere_check` (when off, Kamailio
    /// ignores `<sphere>`); RFC mode always evaluates `<sphere>`.
    pub fn evaluate(
        &self,
        watcher: &Watcher,
        presentity_sphere: Option<&str>,
        now: DateTime<Utc>,
        mode: Mode,
        sphere_check: bool,
    ) -> Decision {
        match mode {
            Mode::Kamailio => {
                let sphere = presentity_sphere.filter(|_| sphere_check);
                self.eval_kamailio(watcher, sphere, now)
            }
            Mode::Rfc => self.eval_rfc(watcher, presentity_sphere, now),
        }
    }

    fn eval_kamailio(&self, w: &Watcher, sphere: Option<&str>, now: DateTime<Utc>) -> Decision {
        let mut d = Decision { mode: Mode::Kamailio, sub_handling: None, rule: None, matched: Vec::new(), fault: None };
        match kamailio_select(&self.rules, w, sphere, now.timestamp()) {
            Err(f) => d.fault = Some(f),
            Ok(None) => {}
            Ok(Some(i)) => {
                d.rule = Some(i);
                d.matched.push(i);
                if let Some(text) = &self.rules[i].sub_handling {
                    d.sub_handling = SubHandling::from_kamailio(text);
                    if d.sub_handling.is_none() {
                        d.fault = Some(Fault::UnknownSubHandling { rule: i, value: text.clone() });
                    }
                }
            }
        }
        d
    }

    fn eval_rfc(&self, w: &Watcher, sphere: Option<&str>, now: DateTime<Utc>) -> Decision {
        let domain = uri_domain(w.uri);
        let mut d = Decision { mode: Mode::Rfc, sub_handling: None, rule: None, matched: Vec::new(), fault: None };
        for (i, r) in self.rules.iter().enumerate().filter(|(_, r)| r.is_rule) {
            let holds = r.conditions.as_ref().is_none_or(|c| {
                c.identities.iter().all(|id| rfc_identity(id, w.uri, domain))
                    && c.spheres.iter().all(|s| {
                        let v = s.value.as_deref().unwrap_or("");
                        sphere.is_some_and(|p| v.split_whitespace().any(|t| t.eq_ignore_ascii_case(p)))
                    })
                    && c.validities.iter().all(|v| rfc_valid(v, now))
            });
            if holds {
                d.matched.push(i);
                let sh = r.sub_handling.as_deref().and_then(SubHandling::from_rfc);
                d.sub_handling = d.sub_handling.max(sh);
            }
        }
        d.rule = d.matched.first().copied();
        d
    }
}

/// `get_rule_node`: index of the first rule whose conditions hold.
fn kamailio_select(rules: &[Rule], w: &Watcher, sphere: Option<&str>, now: i64) -> Result<Option<usize>, Fault> {
    // QUIRK: `valid` is declared once for the whole walk and never reset.
    let mut valid = false;
    for (i, r) in rules.iter().enumerate() {
        let c = r.conditions.as_ref().ok_or(Fault::MissingConditions { rule: i })?;
        if let Some(v) = c.validities.first() {
            let bad = Fault::BadValidity { rule: i };
            // pre-1970 times come back negative from xml_parse_dateTime: error
            let at = |b: &TimeBound| b.at.map(|t| t.timestamp()).filter(|t| *t >= 0);
            let mut k = 0;
            while k < v.bounds.len() {
                if !v.bounds[k].is_from {
                    k += 1;
                    continue;
                }
                let from = at(&v.bounds[k]).ok_or(bad.clone())?;
                if now < from {
                    k += 1;
                    continue;
                }
                let u = (k + 1..v.bounds.len()).find(|&j| !v.bounds[j].is_from).ok_or(bad.clone())?;
                if now <= at(&v.bounds[u]).ok_or(bad.clone())? {
                    valid = true;
                }
                k = u + 1;
            }
            if !valid {
                continue;
            }
        }
        if let (Some(s), Some(p)) = (c.spheres.first(), sphere)
            && !s.text.eq_ignore_ascii_case(p)
        {
            continue;
        }
        let Some(id) = c.identities.first() else {
            continue;
        };
        let mut apply = false;
        for one in &id.ones {
            let one = one.as_deref().ok_or(Fault::OneWithoutId { rule: i })?;
            if one == w.uri {
                apply = true;
                break;
            }
        }
        for m in &id.manys {
            if let Some(dom) = m.domain.as_deref()
                && kamailio_many_domain_mismatch(dom, w.from_domain)
            {
                continue;
            }
            // QUIRK: this overrides an earlier <one> match of the same rule.
            apply = !m.excepts.iter().any(|e| match (e.id.as_deref(), e.domain.as_deref()) {
                (Some(eid), _) => kamailio_except_id_matches(eid, w.uri),
                (None, Some(ed)) => ed == w.from_domain,
                (None, None) => false,
            });
            if apply {
                break;
            }
        }
        if apply {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

fn rfc_identity(id: &Identity, uri: &str, domain: &str) -> bool {
    id.ones.iter().any(|o| o.as_deref() == Some(uri))
        || id.manys.iter().any(|m| {
            m.domain.as_deref().is_none_or(|d| d.eq_ignore_ascii_case(domain))
                && !m.excepts.iter().any(|e| {
                    e.id.as_deref() == Some(uri) || e.domain.as_deref().is_some_and(|d| d.eq_ignore_ascii_case(domain))
                })
        })
}

fn rfc_valid(v: &Validity, now: DateTime<Utc>) -> bool {
    let b = &v.bounds;
    let mut k = 0;
    while k < b.len() {
        if !b[k].is_from {
            k += 1;
            continue;
        }
        let Some(u) = (k + 1..b.len()).find(|&j| !b[j].is_from) else {
            return false;
        };
        if let (Some(f), Some(t)) = (b[k].at, b[u].at)
            && f <= now
            && now <= t
        {
            return true;
        }
        k = u + 1;
    }
    false
}

/// Maps a decision to the subscription state, like Kamailio's
/// `pres_watcher_allowed` (without `force_active`, which the caller
/// handles): no rules document → pending; no matching rule → Kamailio:
/// terminated with `userdel_reason` unless `previous` is pending (then
/// pending), RFC: pending; `block` → terminated/"rejected"; `confirm` →
/// pending; `polite-block` → active/"polite-block"; `allow` → active; a
/// matched rule without sub-handling → pending. Check
/// [`Decision::is_error`] first: Kamailio fails the request then (this
/// function returns pending for it).
pub fn subscription_state(
    decision: &Decision,
    has_rules: bool,
    previous: Status,
    userdel_reason: &str,
) -> (Status, Option<String>) {
    if !has_rules {
        return (Status::Pending, None);
    }
    if decision.matched.is_empty() {
        return match (decision.mode, previous) {
            (Mode::Kamailio, p) if p != Status::Pending => (Status::Terminated, Some(userdel_reason.to_string())),
            _ => (Status::Pending, None),
        };
    }
    match decision.sub_handling {
        Some(SubHandling::Block) => (Status::Terminated, Some("rejected".to_string())),
        Some(SubHandling::PoliteBlock) => (Status::Active, Some("polite-block".to_string())),
        Some(SubHandling::Allow) => (Status::Active, None),
        Some(SubHandling::Confirm) | None => (Status::Pending, None),
    }
}

/// A neutral PIDF for polite-blocked watchers: one tuple, basic `closed`.
pub fn polite_block_document(entity: &str) -> String {
    let mut esc = String::with_capacity(entity.len());
    for ch in entity.chars() {
        match ch {
            '&' => esc.push_str("&amp;"),
            '<' => esc.push_str("&lt;"),
            '>' => esc.push_str("&gt;"),
            '"' => esc.push_str("&quot;"),
            '\'' => esc.push_str("&apos;"),
            c => esc.push(c),
        }
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <presence xmlns=\"{NS_PIDF}\" entity=\"{esc}\">\n\
         <tuple id=\"polite-block\"><status><basic>closed</basic></status></tuple>\n\
         </presence>\n"
    )
}

/// Byte ranges to cut from a document.
#[derive(Default)]
struct Cuts(Vec<Range<usize>>);

impl Cuts {
    fn apply(mut self, text: &str) -> Transformed {
        self.0.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
        let (mut body, mut pos, mut removed) = (String::with_capacity(text.len()), 0, 0);
        for r in self.0 {
            if r.start < pos {
                continue; // inside an earlier cut
            }
            body.push_str(&text[pos..r.start]);
            pos = r.end;
            removed += 1;
        }
        body.push_str(&text[pos..]);
        Transformed { body, removed }
    }
}

/// Union of the transformations of all matched rules (RFC mode).
struct Grants<'r> {
    services: Vec<&'r Provide>,
    persons: Vec<&'r Provide>,
    devices: Vec<&'r Provide>,
    attributes: HashSet<&'r str>,
    user_input: UserInput,
    unknown: HashSet<(&'r str, &'r str)>,
    all: bool,
}

impl Grants<'_> {
    fn attr(&self, name: &str) -> bool {
        self.all || self.attributes.contains(name)
    }
    fn unknown(&self, n: &Node) -> bool {
        let ns = n.tag_name().namespace().unwrap_or("");
        self.all || self.unknown.contains(&(ns, n.tag_name().name()))
    }
}

fn contact(e: Node) -> Option<String> {
    e.children().find(|c| is(c, NS_PIDF, "contact")).map(|c| content(c).trim().to_string())
}

fn permits(provides: &[&Provide], e: Node) -> bool {
    let child_text =
        |ns: &str, name: &str| e.children().find(|c| is(c, ns, name)).map(|c| content(c).trim().to_string());
    provides.iter().any(|p| match p {
        Provide::All => true,
        Provide::Bool(b) => *b,
        Provide::List(sels) => sels.iter().any(|s| match s {
            Selector::Class(v) => child_text(NS_RPID, "class").as_deref() == Some(v),
            Selector::DeviceId(v) => child_text(NS_DATA_MODEL, "deviceID").as_deref() == Some(v),
            Selector::OccurrenceId(v) => e.attribute("id") == Some(v.as_str()),
            Selector::ServiceUri(v) => contact(e).is_some_and(|c| c.eq_ignore_ascii_case(v)),
            Selector::ServiceUriScheme(v) => {
                contact(e).and_then(|c| c.split_once(':').map(|(s, _)| s.eq_ignore_ascii_case(v))).unwrap_or(false)
            }
        }),
    })
}

/// RFC mode: filter the children of a permitted tuple/person/device.
fn filter_inside(e: Node, g: &Grants, text: &str, cuts: &mut Cuts) {
    let is_device = is(&e, NS_DATA_MODEL, "device");
    for c in e.children().filter(|c| c.is_element()) {
        let ns = c.tag_name().namespace().unwrap_or("");
        let name = c.tag_name().name();
        let keep = match (ns, name) {
            (NS_PIDF, "status") => {
                for s in c.children().filter(|s| s.is_element()) {
                    if !is(&s, NS_PIDF, "basic") && !g.unknown(&s) {
                        cuts.0.push(s.range());
                    }
                }
                true
            }
            (NS_PIDF, "contact") | (NS_PIDF, "timestamp") | (NS_DATA_MODEL, "timestamp") => true,
            (NS_PIDF, "note") | (NS_DATA_MODEL, "note") => g.attr("note"),
            (NS_DATA_MODEL, "deviceID") => is_device || g.attr("deviceID"),
            (NS_RPID, "user-input") => {
                let level = if g.all { UserInput::Full } else { g.user_input };
                let drop: &[&str] = match level {
                    UserInput::Bare => &["idle-threshold", "last-input"],
                    UserInput::Thresholds => &["last-input"],
                    _ => &[],
                };
                for a in c.attributes().filter(|a| drop.contains(&a.name())) {
                    let r = a.range();
                    let start = text[..r.start].trim_end().len();
                    cuts.0.push(start..r.end);
                }
                level > UserInput::False
            }
            (NS_RPID, x) if RPID_ATTRIBUTES.contains(&x) => g.attr(x),
            _ => g.unknown(&c),
        };
        if !keep {
            cuts.0.push(c.range());
        }
    }
}

impl Rules {
    /// Filters a PIDF body for the watcher the decision was made for.
    ///
    /// Kamailio mode (`get_final_notify_body`): no matched rule, or no
    /// `<transformations>`, leaves the body unchanged; otherwise each
    /// `provide-XYZ` (XYZ: `services` → `tuple`, `persons` → `person`,
    /// anything else literally, so `devices`) acts on the first element named
    /// XYZ (depth-first, the root excluded): text `FALSE` removes it and every
    /// root child of that name, `TRUE` keeps all, anything else walks it and
    /// its following siblings until one has another name, keeping those with
    /// `all-XYZ` in the rule or a matching class / deviceID / occurrence-id
    /// (`id`) / service-uri (`contact`) / service-uri-scheme
    /// (case-insensitive).
    ///
    /// RFC mode (RFC 5025 default deny; permissions are unioned over all
    /// matched rules):
    ///
    /// | Element | Kept when |
    /// |---|---|
    /// | any root content, no rule matched | never (only the `<presence>` root stays) |
    /// | `pidf:tuple` | `provide-services` permits it (all, TRUE, or a class / occurrence-id / service-uri / service-uri-scheme / deviceID match) |
    /// | `dm:person` | `provide-persons` permits it (all, TRUE, class, occurrence-id) |
    /// | `dm:device` | `provide-devices` permits it (all, TRUE, class, occurrence-id, deviceID) |
    /// | root `pidf:note` | `provide-note` |
    /// | other root elements | `provide-unknown-attribute` (ns, name) or `provide-all-attributes` |
    /// | `pidf:status` and its `pidf:basic` | always (other status children: as unknown attributes) |
    /// | `pidf:contact`, `pidf:timestamp`, `dm:timestamp` | always |
    /// | `pidf:note`, `dm:note` in a permitted element | `provide-note` |
    /// | `dm:deviceID` | always inside `dm:device`; in a tuple `provide-deviceID` |
    /// | `rpid:activities`, `class`, `mood`, `place-is`, `place-type`, `privacy`, `relationship`, `sphere`, `status-icon`, `time-offset` | `provide-<same name>` true |
    /// | `rpid:user-input` | `provide-user-input` ≠ false; `bare` drops `idle-threshold` and `last-input`, `thresholds` drops `last-input` |
    /// | any other child (other RPID, CIPID, extensions) | `provide-unknown-attribute` (ns, name) or `provide-all-attributes` |
    ///
    /// `<provide-all-attributes/>` grants every attribute row. An
    /// unparsable body is an error in both modes (Kamailio fails the NOTIFY),
    /// except that Kamailio mode returns the body untouched without parsing
    /// it when no rule matched.
    pub fn transform(&self, decision: &Decision, pidf: &str, mode: Mode) -> Result<Transformed, RulesError> {
        let unchanged = Transformed { body: pidf.to_string(), removed: 0 };
        if mode == Mode::Kamailio && decision.rule.is_none() {
            return Ok(unchanged);
        }
        let xml = parse_xml(pidf)?;
        let mut cuts = Cuts::default();
        if mode == Mode::Kamailio {
            let root = xml.descendants().find(|n| named(n, "presence")).ok_or(RulesError::NotPidf)?;
            let rule = decision.rule.and_then(|i| self.rules.get(i));
            let Some(t) = rule.and_then(|r| r.transformations.as_ref()) else {
                return Ok(unchanged);
            };
            kamailio_transform(root, t, &mut cuts);
            return Ok(cuts.apply(pidf));
        }
        let root = xml.root_element();
        if !is(&root, NS_PIDF, "presence") {
            return Err(RulesError::NotPidf);
        }
        if decision.matched.is_empty() {
            if let (Some(f), Some(l)) = (root.first_child(), root.last_child()) {
                cuts.0.push(f.range().start..l.range().end);
            }
            return Ok(cuts.apply(pidf));
        }
        let mut g = Grants {
            services: Vec::new(),
            persons: Vec::new(),
            devices: Vec::new(),
            attributes: HashSet::new(),
            user_input: UserInput::False,
            unknown: HashSet::new(),
            all: false,
        };
        let matched = decision.matched.iter().filter_map(|&i| self.rules.get(i));
        for t in matched.filter_map(|r| r.transformations.as_ref()) {
            g.services.extend(t.services.as_ref());
            g.persons.extend(t.persons.as_ref());
            g.devices.extend(t.devices.as_ref());
            g.attributes.extend(t.attributes.iter().map(String::as_str));
            g.user_input = g.user_input.max(t.user_input.unwrap_or(UserInput::False));
            g.unknown.extend(t.unknown_attributes.iter().map(|(a, b)| (a.as_str(), b.as_str())));
            g.all |= t.all_attributes;
        }
        for c in root.children().filter(|c| c.is_element()) {
            let provides = if is(&c, NS_PIDF, "tuple") {
                Some(&g.services)
            } else if is(&c, NS_DATA_MODEL, "person") {
                Some(&g.persons)
            } else if is(&c, NS_DATA_MODEL, "device") {
                Some(&g.devices)
            } else {
                None
            };
            match provides {
                Some(p) if permits(p, c) => filter_inside(c, &g, pidf, &mut cuts),
                Some(_) => cuts.0.push(c.range()),
                None if is(&c, NS_PIDF, "note") && g.attr("note") => {}
                None if g.unknown(&c) => {}
                None => cuts.0.push(c.range()),
            }
        }
        Ok(cuts.apply(pidf))
    }
}

/// `get_final_notify_body` on a roxmltree document: removals are recorded in
/// `cuts` and removed nodes are treated as unlinked for later lookups.
fn kamailio_transform(root: Node, t: &Transformations, cuts: &mut Cuts) {
    let mut gone: HashSet<roxmltree::NodeId> = HashSet::new();
    let alive = |n: &Node, gone: &HashSet<roxmltree::NodeId>| !n.ancestors().any(|a| gone.contains(&a.id()));
    let mut remove = |n: Node, gone: &mut HashSet<roxmltree::NodeId>| {
        gone.insert(n.id());
        cuts.0.push(n.range());
    };
    for tr in &t.raw {
        let len = tr.name.len();
        if len < 9 || len - 8 > 23 || !tr.name.is_char_boundary(8) {
            continue;
        }
        let suffix = &tr.name[8..];
        let all_name = format!("all-{suffix}");
        let name = if suffix.eq_ignore_ascii_case("services") {
            "tuple"
        } else if suffix.starts_with("person") {
            "person"
        } else {
            suffix
        };
        // xmlNodeGetNodeByName(doc_root, ...); the root itself is never
        // removed here (libxml would unlink the whole document).
        let first = root.descendants().skip(1).find(|n| named(n, name) && alive(n, &gone));
        let Some(first) = first else { continue };
        if tr.content.eq_ignore_ascii_case("FALSE") {
            remove(first, &mut gone);
            while let Some(n) = root.children().find(|c| named(c, name) && alive(c, &gone)) {
                remove(n, &mut gone);
            }
            continue;
        }
        if tr.content.eq_ignore_ascii_case("TRUE") {
            continue;
        }
        let has_all = tr.children.iter().any(|(n, _)| n.eq_ignore_ascii_case(&all_name));
        for n in first.next_siblings() {
            if n.is_text() || !alive(&n, &gone) {
                continue;
            }
            if !named(&n, name) {
                break;
            }
            if has_all {
                continue;
            }
            // xmlNodeGetNodeContentByName(doc_node, ...) also searches the
            // following siblings; the value is the first child's content.
            let lookup = |what: &str| {
                n.next_siblings()
                    .filter(|s| alive(s, &gone))
                    .flat_map(|s| s.descendants())
                    .find(|d| named(d, what) && alive(d, &gone))
                    .and_then(|d| d.first_child())
                    .map(|f| match f.is_element() {
                        true => content(f),
                        false => f.text().unwrap_or("").to_string(),
                    })
            };
            let class = lookup("class");
            let device = lookup("deviceID");
            let service_uri = lookup("contact");
            let scheme = service_uri
                .as_deref()
                .and_then(|u| u.split_once(':'))
                .map(|(s, _)| s.to_string())
                .filter(|s| !s.is_empty());
            let occurrence = attr(n, "id");
            let eq = |want: Option<&str>, got: &str| want.is_some_and(|w| w.eq_ignore_ascii_case(got));
            let found = tr.children.iter().any(|(pn, pc)| {
                let pn = pn.to_ascii_lowercase();
                match pn.as_str() {
                    "class" => eq(class.as_deref(), pc),
                    "deviceid" => eq(device.as_deref(), pc),
                    "occurrence-id" => eq(occurrence, pc),
                    "service-uri" => eq(service_uri.as_deref(), pc),
                    "service-uri-scheme" => eq(scheme.as_deref(), pc),
                    _ => false,
                }
            });
            if !found {
                remove(n, &mut gone);
            }
        }
    }
}

#[cfg(test)]
mod tests;
