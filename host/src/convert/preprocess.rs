//! Kamailio's config preprocessor, evaluated the way kamailio evaluates it before parsing:
//! `#!define`/`#!trydef`/`#!redefine`/`#!undef`, `#!subst`/`#!substdef`,
//! `#!ifdef`/`#!ifndef`/`#!else`/`#!endif` (nested), `include_file`/`import_file` (also as
//! `#!include_file`), defined names replaced where they stand as whole identifiers outside
//! quoted strings, and comments (`#` but not `#!`, `//`, `/* */`) removed.
//!
//! The result is a list of lines, each with the file and line it came from, so that the parser
//! and the route translation can point at the operator's own text.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use regex::Regex;

/// A line of the preprocessed config and where it came from.
#[derive(Debug, Clone)]
pub struct Line {
    pub text: String,
    pub origin: Origin,
}

/// A place in the operator's files.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    pub file: Arc<str>,
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// An error that stops the conversion, at a place in the files.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct PpError {
    pub origin: Origin,
    pub message: String,
}

/// The preprocessor's output.
#[derive(Debug, Default)]
pub struct Preprocessed {
    pub lines: Vec<Line>,
    /// Things the preprocessor met but does not evaluate (macros with parameters, ...).
    pub notes: Vec<(Origin, String)>,
}

struct Subst {
    re: Regex,
    replacement: String,
    global: bool,
}

struct Cond {
    /// This branch's text is used.
    active: bool,
    /// The enclosing text is used (the branch's parent).
    parent: bool,
    in_else: bool,
    origin: Origin,
}

/// Nested includes deeper than this are taken for a loop.
const MAX_INCLUDE_DEPTH: usize = 16;
/// Defines expanding into defines deeper than this are taken for a loop.
const MAX_EXPANSION_DEPTH: usize = 16;

struct Pp {
    defines: HashMap<String, String>,
    substs: Vec<Subst>,
    conds: Vec<Cond>,
    in_block_comment: bool,
    out: Preprocessed,
}

/// Preprocesses `path` with `defines` (from `-D NAME[=VALUE]`) set beforehand.
pub fn preprocess(path: &Path, defines: &[(String, String)]) -> Result<Preprocessed, PpError> {
    let mut pp = Pp {
        defines: defines.iter().cloned().collect(),
        substs: Vec::new(),
        conds: Vec::new(),
        in_block_comment: false,
        out: Preprocessed::default(),
    };
    let text = std::fs::read_to_string(path).map_err(|e| PpError {
        origin: Origin { file: path.display().to_string().into(), line: 0 },
        message: format!("cannot read the config: {e}"),
    })?;
    pp.file(path, &text, 0)?;
    if let Some(c) = pp.conds.last() {
        return Err(PpError { origin: c.origin.clone(), message: "this #!ifdef/#!ifndef has no #!endif".into() });
    }
    Ok(pp.out)
}

/// Preprocesses `text` as if it were the file `name` (tests; includes resolve against the
/// current directory).
#[cfg(test)]
pub fn preprocess_str(name: &str, text: &str, defines: &[(String, String)]) -> Result<Preprocessed, PpError> {
    let mut pp = Pp {
        defines: defines.iter().cloned().collect(),
        substs: Vec::new(),
        conds: Vec::new(),
        in_block_comment: false,
        out: Preprocessed::default(),
    };
    pp.file(Path::new(name), text, 0)?;
    if let Some(c) = pp.conds.last() {
        return Err(PpError { origin: c.origin.clone(), message: "this #!ifdef/#!ifndef has no #!endif".into() });
    }
    Ok(pp.out)
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first word of `s` and the rest, trimmed.
fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    let end = s.find(|c: char| c.is_whitespace()).unwrap_or(s.len());
    (&s[..end], s[end..].trim())
}

impl Pp {
    fn active(&self) -> bool {
        self.conds.last().is_none_or(|c| c.active)
    }

    fn file(&mut self, path: &Path, text: &str, depth: usize) -> Result<(), PpError> {
        let file: Arc<str> = path.display().to_string().into();
        let conds_at_start = self.conds.len();
        let mut lines = text.lines().enumerate();
        while let Some((i, raw)) = lines.next() {
            let origin = Origin { file: file.clone(), line: i + 1 };
            let mut raw = raw.to_string();
            let trimmed = raw.trim_start();
            let directive = !self.in_block_comment
                && (trimmed.starts_with("#!") || trimmed.starts_with("!!"))
                && !trimmed.starts_with("#!KAMAILIO")
                && !trimmed.starts_with("#!SER")
                && !trimmed.starts_with("#!OPENSER")
                && !trimmed.starts_with("#!ALL")
                && !trimmed.starts_with("#!MAXCOMPAT");
            if directive {
                // A define's value may go on over lines ending in `\`.
                while raw.ends_with('\\') {
                    raw.pop();
                    match lines.next() {
                        Some((_, next)) => {
                            raw.push('\n');
                            raw.push_str(next);
                        }
                        None => break,
                    }
                }
                let body = raw.trim_start()[2..].to_string();
                self.directive(&body, &origin, path, depth)?;
                continue;
            }
            if !self.active() {
                continue;
            }
            let mut text = self.strip_comments(&raw);
            for s in &self.substs {
                text = if s.global {
                    s.re.replace_all(&text, s.replacement.as_str()).into_owned()
                } else {
                    s.re.replace(&text, s.replacement.as_str()).into_owned()
                };
            }
            let text = self.expand(&text, 0, &origin)?;
            let t = text.trim();
            let (first, rest) = word(t);
            if first == "include_file" || first == "import_file" {
                self.include(rest.trim_end_matches(';'), first == "import_file", &origin, path, depth)?;
                continue;
            }
            self.out.lines.push(Line { text, origin });
        }
        if self.conds.len() > conds_at_start {
            let c = self.conds.last().expect("checked");
            return Err(PpError { origin: c.origin.clone(), message: "this #!ifdef/#!ifndef has no #!endif".into() });
        }
        Ok(())
    }

    fn include(
        &mut self,
        arg: &str,
        optional: bool,
        origin: &Origin,
        path: &Path,
        depth: usize,
    ) -> Result<(), PpError> {
        let name = arg.trim().trim_matches('"');
        if name.is_empty() {
            return Err(PpError { origin: origin.clone(), message: "include_file without a file name".into() });
        }
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(PpError {
                origin: origin.clone(),
                message: format!("includes nested deeper than {MAX_INCLUDE_DEPTH} (an include loop?)"),
            });
        }
        let candidate = Path::new(name);
        let file: PathBuf = if candidate.is_absolute() {
            candidate.to_path_buf()
        } else {
            path.parent().unwrap_or(Path::new(".")).join(candidate)
        };
        match std::fs::read_to_string(&file) {
            Ok(text) => self.file(&file, &text, depth + 1),
            // Kamailio: import_file skips a missing file, include_file stops.
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => {
                self.out
                    .notes
                    .push((origin.clone(), format!("import_file: {} does not exist; skipped", file.display())));
                Ok(())
            }
            Err(e) => {
                Err(PpError { origin: origin.clone(), message: format!("cannot include {}: {e}", file.display()) })
            }
        }
    }

    fn directive(&mut self, body: &str, origin: &Origin, path: &Path, depth: usize) -> Result<(), PpError> {
        let (name, rest) = word(body);
        let err = |m: String| PpError { origin: origin.clone(), message: m };
        match name {
            "ifdef" | "ifndef" => {
                let (id, _) = word(rest);
                if id.is_empty() {
                    return Err(err(format!("#!{name} without a name")));
                }
                let parent = self.active();
                let defined = self.defines.contains_key(id);
                let active = parent && (defined == (name == "ifdef"));
                self.conds.push(Cond { active, parent, in_else: false, origin: origin.clone() });
            }
            "else" => {
                let Some(c) = self.conds.last_mut() else { return Err(err("#!else without #!ifdef".into())) };
                if c.in_else {
                    return Err(err("a second #!else for the same #!ifdef".into()));
                }
                c.in_else = true;
                c.active = c.parent && !c.active;
            }
            "endif" => {
                if self.conds.pop().is_none() {
                    return Err(err("#!endif without #!ifdef".into()));
                }
            }
            _ if !self.active() => {}
            "define" | "trydef" | "redefine" => {
                let (id, value) = word(rest);
                if id.is_empty() || !id.starts_with(is_ident_start) || !id.chars().all(is_ident) {
                    if id.contains('(') {
                        self.out.notes.push((origin.clone(), format!("#!{name} with parameters is not evaluated")));
                        return Ok(());
                    }
                    return Err(err(format!("#!{name}: `{id}` is not a name")));
                }
                let exists = self.defines.contains_key(id);
                match name {
                    "define" if exists => {
                        return Err(err(format!("`{id}` is already defined (use #!redefine or #!trydef)")));
                    }
                    "trydef" if exists => {}
                    _ => {
                        self.defines.insert(id.to_string(), strip_line_comment(value).trim().to_string());
                    }
                }
            }
            "undef" => {
                let (id, _) = word(rest);
                self.defines.remove(id);
            }
            "subst" | "substdef" | "substdefs" => {
                let arg = rest.trim();
                let arg = arg.strip_prefix('"').and_then(|a| a.strip_suffix('"')).unwrap_or(arg);
                let (re, replacement, flags) =
                    split_subst(arg).ok_or_else(|| err(format!("cannot read #!{name} {rest}")))?;
                if name != "subst" {
                    let value = if name == "substdefs" { format!("\"{replacement}\"") } else { replacement.clone() };
                    self.defines.insert(re.clone(), value);
                }
                let pattern = if flags.contains('i') { format!("(?i){re}") } else { re.clone() };
                let re = Regex::new(&pattern).map_err(|e| err(format!("bad regex in #!{name}: {e}")))?;
                // `\1` in Kamailio's replacement is `${1}` for the regex crate.
                let replacement =
                    Regex::new(r"\\(\d)").expect("valid").replace_all(&replacement, "$${$1}").into_owned();
                self.substs.push(Subst { re, replacement, global: flags.contains('g') });
            }
            "include_file" | "import_file" => {
                self.include(rest, name == "import_file", origin, path, depth)?;
            }
            _ => {
                self.out.notes.push((origin.clone(), format!("preprocessor directive #!{name} is not evaluated")));
            }
        }
        Ok(())
    }

    /// Removes comments, keeping quoted strings whole; a `/* */` comment may span lines.
    fn strip_comments(&mut self, line: &str) -> String {
        let mut out = String::with_capacity(line.len());
        let mut chars = line.chars().peekable();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            if self.in_block_comment {
                if c == '*' && chars.peek() == Some(&'/') {
                    chars.next();
                    self.in_block_comment = false;
                    out.push(' ');
                }
                continue;
            }
            if let Some(q) = quote {
                out.push(c);
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
                continue;
            }
            match c {
                '"' | '\'' => {
                    quote = Some(c);
                    out.push(c);
                }
                '#' => break,
                '/' if chars.peek() == Some(&'/') => break,
                '/' if chars.peek() == Some(&'*') => {
                    chars.next();
                    self.in_block_comment = true;
                }
                _ => out.push(c),
            }
        }
        out
    }

    /// Replaces defined names standing as whole identifiers outside quoted strings (and not
    /// as a pseudo-variable's name after `$`); a value naming other defines is expanded too.
    fn expand(&self, text: &str, depth: usize, origin: &Origin) -> Result<String, PpError> {
        if self.defines.is_empty() {
            return Ok(text.to_string());
        }
        let mut out = String::with_capacity(text.len());
        let mut quote: Option<char> = None;
        let mut chars = text.char_indices().peekable();
        let mut prev: Option<char> = None;
        while let Some((i, c)) = chars.next() {
            if let Some(q) = quote {
                out.push(c);
                if c == '\\' {
                    if let Some((_, n)) = chars.next() {
                        out.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
                prev = Some(c);
                continue;
            }
            if c == '"' || c == '\'' {
                quote = Some(c);
                out.push(c);
                prev = Some(c);
                continue;
            }
            if c == '$' {
                // A pseudo-variable's name and its parenthesised part stay as written.
                out.push(c);
                let mut depth = 0usize;
                while let Some(&(_, n)) = chars.peek() {
                    if depth == 0 && !(is_ident(n) || n == '(') {
                        break;
                    }
                    match n {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    out.push(n);
                    chars.next();
                    if depth == 0 && n == ')' {
                        break;
                    }
                }
                prev = out.chars().next_back();
                continue;
            }
            if is_ident_start(c) && !prev.is_some_and(|p| is_ident(p) || p == '$' || p == '.') {
                let mut end = i + c.len_utf8();
                while let Some(&(j, n)) = chars.peek() {
                    if is_ident(n) {
                        end = j + n.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                let id = &text[i..end];
                match self.defines.get(id) {
                    Some(v) if chars.peek().is_none_or(|&(_, n)| n != '.') => {
                        if depth >= MAX_EXPANSION_DEPTH {
                            return Err(PpError {
                                origin: origin.clone(),
                                message: format!("`{id}` expands into itself"),
                            });
                        }
                        out.push_str(&self.expand(v, depth + 1, origin)?);
                    }
                    _ => out.push_str(id),
                }
                prev = id.chars().last();
                continue;
            }
            out.push(c);
            prev = Some(c);
        }
        Ok(out)
    }
}

/// `value` up to a `#` or `//` outside quotes (a comment behind a define's value).
fn strip_line_comment(value: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let b = value.as_bytes();
    for (i, c) in value.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '#' => return &value[..i],
            '/' if b.get(i + 1) == Some(&b'/') => return &value[..i],
            _ => {}
        }
    }
    value
}

/// Splits `/regex/replacement/flags` (any delimiter, the first character).
fn split_subst(arg: &str) -> Option<(String, String, String)> {
    let mut chars = arg.chars();
    let delim = chars.next()?;
    let mut parts = vec![String::new()];
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n) if n == delim => parts.last_mut()?.push(n),
                Some(n) => {
                    parts.last_mut()?.push('\\');
                    parts.last_mut()?.push(n);
                }
                None => return None,
            }
        } else if c == delim {
            parts.push(String::new());
        } else {
            parts.last_mut()?.push(c);
        }
    }
    if parts.len() != 3 || parts[0].is_empty() {
        return None;
    }
    let flags = parts.pop()?;
    let replacement = parts.pop()?;
    let re = parts.pop()?;
    Some((re, replacement, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, defines: &[&str]) -> Result<Vec<String>, PpError> {
        let defines: Vec<(String, String)> = defines.iter().map(|d| (d.to_string(), String::new())).collect();
        Ok(preprocess_str("t.cfg", text, &defines)?
            .lines
            .into_iter()
            .map(|l| l.text.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect())
    }

    #[test]
    fn ifdef_nested_and_else() {
        let text = "#!ifdef A\na\n#!ifdef B\nab\n#!else\na-not-b\n#!endif\n#!else\nnot-a\n#!ifndef B\nnot-a-not-b\n#!endif\n#!endif\nend";
        assert_eq!(run(text, &["A", "B"]).unwrap(), ["a", "ab", "end"]);
        assert_eq!(run(text, &["A"]).unwrap(), ["a", "a-not-b", "end"]);
        assert_eq!(run(text, &[]).unwrap(), ["not-a", "not-a-not-b", "end"]);
        assert_eq!(run(text, &["B"]).unwrap(), ["not-a", "end"]);
    }

    #[test]
    fn defines_replace_whole_identifiers_outside_strings() {
        let text = "#!define FLAG 3\n#!define DB \"mysql://db\"\nsetflag(FLAG); FLAGS; \"FLAG\"; $avp(FLAG); x.FLAG\nmodparam(\"m\", \"db_url\", DB)";
        assert_eq!(
            run(text, &[]).unwrap(),
            ["setflag(3); FLAGS; \"FLAG\"; $avp(FLAG); x.FLAG", "modparam(\"m\", \"db_url\", \"mysql://db\")"]
        );
    }

    #[test]
    fn trydef_redefine_undef() {
        let text = "#!define A 1 # one\n#!trydef A 2\n#!trydef B 3 // three\nA B\n#!redefine A 4\nA\n#!undef A\nA";
        assert_eq!(run(text, &[]).unwrap(), ["1 3", "4", "A"]);
        assert!(run("#!define A 1\n#!define A 2", &[]).unwrap_err().message.contains("already defined"));
    }

    #[test]
    fn a_define_set_by_the_command_line_counts() {
        let defines = vec![("DBURL".to_string(), "\"sqlite:///x\"".to_string())];
        let out = preprocess_str("t.cfg", "#!trydef DBURL \"mysql://\"\nx(DBURL)", &defines).unwrap();
        assert_eq!(out.lines[0].text, "x(\"sqlite:///x\")");
    }

    #[test]
    fn substdef_and_subst() {
        let text = "#!substdef \"!MY_IP!10.0.0.1!g\"\n#!subst \"/OLD/new/\"\nlisten=udp:MY_IP:5060 \"MY_IP\" OLD OLD";
        assert_eq!(run(text, &[]).unwrap(), ["listen=udp:10.0.0.1:5060 \"10.0.0.1\" new OLD"]);
    }

    #[test]
    fn comments() {
        let text = "a # c\nb // c\n\"x#y//z\" /* c\nstill comment\n#!ifdef NOPE\n*/ d\n#!KAMAILIO\n## #!ifdef X";
        assert_eq!(run(text, &[]).unwrap(), ["a", "b", "\"x#y//z\"", "d"]);
    }

    #[test]
    fn origins_are_kept() {
        let out = preprocess_str("t.cfg", "#!ifdef X\nno\n#!endif\n\nyes", &[]).unwrap();
        assert_eq!(out.lines.last().unwrap().origin.line, 5);
    }

    #[test]
    fn errors_name_the_line() {
        let e = run("a\n#!ifdef X\nb\n", &[]).unwrap_err();
        assert_eq!((e.origin.line, e.message.contains("no #!endif")), (2, true));
        assert_eq!(run("#!endif", &[]).unwrap_err().origin.line, 1);
        assert_eq!(run("#!ifdef A\n#!else\n#!else\n#!endif", &[]).unwrap_err().origin.line, 3);
        assert!(run("#!define A A\nA", &[]).unwrap_err().message.contains("itself"));
    }

    #[test]
    fn includes_follow_the_including_file() {
        let dir = std::env::temp_dir().join(format!("puahost-pp-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(
            dir.join("main.cfg"),
            "#!define X 1\ninclude_file \"sub/a.cfg\"\nimport_file \"none.cfg\"\nmain",
        )
        .unwrap();
        std::fs::write(dir.join("sub/a.cfg"), "a X\n#!include_file \"b.cfg\"").unwrap();
        std::fs::write(dir.join("sub/b.cfg"), "b").unwrap();
        let out = preprocess(&dir.join("main.cfg"), &[]).unwrap();
        let texts: Vec<_> = out.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["a 1", "b", "main"]);
        assert!(out.lines[1].origin.file.ends_with("sub/b.cfg"));
        assert_eq!(out.notes.len(), 1, "the missing import_file is noted");
        std::fs::write(dir.join("main.cfg"), "\ninclude_file \"missing.cfg\"").unwrap();
        let e = preprocess(&dir.join("main.cfg"), &[]).unwrap_err();
        assert_eq!(e.origin.line, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
