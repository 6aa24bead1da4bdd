//! Header parameters (`*( SEMI generic-param )`), shared by every typed header.

use crate::scan::{self, RawParam};

/// The parameters of a header value, borrowed and already validated. Iterating yields
/// `(name, value)` where the value is `None` for a flag parameter and a quoted value keeps its
/// quotes (see [`unquote`](crate::unquote)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params<'a> {
    raw: &'a [u8],
}

impl<'a> Params<'a> {
    /// Wraps a validated parameter section (starting at its first `;`, or empty).
    pub(crate) fn new(raw: &'a [u8]) -> Self {
        Params { raw }
    }

    /// The raw text of the section, each parameter with its leading `;`.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Iterates over the parameters.
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter { raw: self.raw, pos: 0 }
    }

    /// Looks a parameter up by name, case-insensitively: `Some(None)` for a flag parameter.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// Whether a parameter is present (with or without value).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

impl<'a> IntoIterator for Params<'a> {
    type Item = (&'a str, Option<&'a str>);
    type IntoIter = ParamIter<'a>;

    fn into_iter(self) -> ParamIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Params`].
#[derive(Clone, Debug)]
pub struct ParamIter<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (RawParam { name, value }, next) = scan::next_param(self.raw, self.pos).ok()??;
            self.pos = next;
            // Parameters were validated as a whole when the header was parsed; a value that is
            // not UTF-8 (possible only inside a quoted string) is skipped rather than returned.
            let Some(name) = scan::utf8(name) else {
                continue;
            };
            match value {
                None => return Some((name, None)),
                Some(v) => {
                    if let Some(v) = scan::utf8(v) {
                        return Some((name, Some(v)));
                    }
                }
            }
        }
    }
}

/// Validates the parameters at `pos` of `s` and returns them with the position after them.
pub(crate) fn take_params(s: &[u8], pos: usize) -> Option<(Params<'_>, usize)> {
    let start = scan::skip_lws(s, pos);
    let end = scan::scan_params(s, pos).ok()?;
    let raw = if s.get(start) == Some(&b';') {
        // Drop trailing LWS from the section itself.
        scan::trim_lws(s.get(start..end).unwrap_or_default())
    } else {
        &[]
    };
    Some((Params::new(raw), end))
}

/// Parses a parameter value as a `u32` delta-seconds; `Err` if present but not a number.
pub(crate) fn param_u32(params: &Params<'_>, name: &str) -> Result<Option<u32>, ()> {
    match params.get(name) {
        None => Ok(None),
        Some(None) => Err(()),
        Some(Some(v)) => scan::parse_u32(v.as_bytes()).map(Some).ok_or(()),
    }
}
