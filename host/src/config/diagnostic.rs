//! Config errors that point at the file, line and column they are about.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One config error: what is wrong, where, and (when we can tell) what was meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    pub span: Option<Range<usize>>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>, span: Option<Range<usize>>) -> Self {
        Self { message: message.into(), span, help: None }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// The config source, for turning byte offsets into lines and columns.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    pub fn new(path: &Path, text: String) -> Self {
        Self { path: path.to_path_buf(), text }
    }

    /// 1-based line and column (in characters) of byte `offset`.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    fn line_text(&self, line: usize) -> &str {
        self.text.lines().nth(line - 1).unwrap_or("")
    }

    /// Renders `diag` the way rustc does: message, location, the line and a caret.
    pub fn render(&self, diag: &Diagnostic) -> String {
        let mut out = format!("error: {}\n", diag.message);
        match &diag.span {
            Some(span) => {
                let (line, col) = self.line_col(span.start);
                let text = self.line_text(line);
                let width = line.to_string().len();
                let end_col = if span.end > span.start {
                    let (end_line, end_col) = self.line_col(span.end);
                    if end_line == line { end_col } else { text.chars().count() + 1 }
                } else {
                    col + 1
                };
                let carets = "^".repeat(end_col.saturating_sub(col).max(1));
                out += &format!("  --> {}:{line}:{col}\n", self.path.display());
                out += &format!("{:width$} |\n", "");
                out += &format!("{line:width$} | {text}\n");
                out += &format!("{:width$} | {}{carets}\n", "", " ".repeat(col - 1));
                if let Some(help) = &diag.help {
                    out += &format!("{:width$} = help: {help}\n", "");
                }
            }
            None => {
                out += &format!("  --> {}\n", self.path.display());
                if let Some(help) = &diag.help {
                    out += &format!("   = help: {help}\n");
                }
            }
        }
        out
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Every error found in a config file; the host refuses to start while there is one.
#[derive(Debug)]
pub struct ConfigErrors {
    pub source: Source,
    pub errors: Vec<Diagnostic>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.errors {
            writeln!(f, "{}", self.source.render(d))?;
        }
        let n = self.errors.len();
        write!(
            f,
            "{}: {n} error{} in the config; nothing was started",
            self.source.path.display(),
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for ConfigErrors {}

/// The closest of `candidates` to `name`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_line_column_and_caret() {
        let src = Source::new(Path::new("a.toml"), "x = 1\n[core]\nchildren = \"four\"\n".into());
        let start = src.text.find("\"four\"").unwrap();
        let d = Diagnostic::new("expected an integer", Some(start..start + 6)).help("children = 4");
        let out = src.render(&d);
        assert!(out.contains("a.toml:3:12"), "{out}");
        assert!(out.contains("^^^^^^"), "{out}");
        assert!(out.contains("help: children = 4"), "{out}");
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("min_expirs", ["min_expires", "db_url"]), Some("min_expires"));
        assert_eq!(did_you_mean("zzz", ["min_expires", "db_url"]), None);
    }
}
