//! The statements of a preprocessed kamailio.cfg: global parameters, `loadmodule`,
//! `modparam(...)` and route blocks (`request_route`, `route[NAME]`, `failure_route[...]`, ...)
//! with their statements (`if`/`else`, function calls, `exit`, `return`, assignments, `switch`)
//! and expressions (`&&`, `||`, `!`, comparisons, pseudo-variables, strings, numbers).

use super::preprocess::{Line, Origin, PpError};

/// A token and the index of the preprocessed line it is on.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Int(i64),
    /// Digits with dots and the like (`127.0.0.1`).
    Word(String),
    Str(String),
    Pv(String),
    Punct(&'static str),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    /// Byte offset just after the token in its line.
    end: usize,
}

const PUNCTS: &[&str] = &[
    "==", "!=", "=~", "!~", "&&", "||", "<=", ">=", "+=", "{", "}", "(", ")", "[", "]", ";", ",", "=", "!", "<", ">",
    "+", "-", ":", "|", "&", "/", "*",
];

fn lex_line(text: &str, line: usize, out: &mut Vec<Token>) -> Result<(), String> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let tok = if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            let mut closed = false;
            while i < b.len() {
                let ch = text[i..].chars().next().expect("in bounds");
                i += ch.len_utf8();
                match ch {
                    '\\' if i < b.len() => {
                        let n = text[i..].chars().next().expect("in bounds");
                        i += n.len_utf8();
                        match n {
                            'n' => s.push('\n'),
                            'r' => s.push('\r'),
                            't' => s.push('\t'),
                            '"' | '\'' | '\\' => s.push(n),
                            other => {
                                // Regexes keep their escapes (`\.`, `\+`).
                                s.push('\\');
                                s.push(other);
                            }
                        }
                    }
                    q if q == c => {
                        closed = true;
                        break;
                    }
                    other => s.push(other),
                }
            }
            if !closed {
                return Err("unterminated string".into());
            }
            Tok::Str(s)
        } else if c == '$' {
            i += 1;
            if i < b.len() && b[i] == b'(' {
                i = balanced(b, i, b'(', b')')?;
            } else {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                if i < b.len() && b[i] == b'(' {
                    i = balanced(b, i, b'(', b')')?;
                }
            }
            while i < b.len() && (b[i] == b'[' || b[i] == b'{') {
                i = if b[i] == b'[' { balanced(b, i, b'[', b']')? } else { balanced(b, i, b'{', b'}')? };
            }
            Tok::Pv(text[start..i].to_string())
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            // A network: `src_ip == 10.0.0.0/8`.
            if i + 1 < b.len() && b[i] == b'/' && b[i + 1].is_ascii_digit() && text[start..i].contains('.') {
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let w = &text[start..i];
            match w.parse::<i64>() {
                Ok(n) => Tok::Int(n),
                Err(_) => Tok::Word(w.to_string()),
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                i += 1;
            }
            Tok::Ident(text[start..i].to_string())
        } else {
            let p = PUNCTS
                .iter()
                .find(|p| text[i..].starts_with(**p))
                .ok_or_else(|| format!("unexpected character `{}`", text[i..].chars().next().unwrap_or(' ')))?;
            i += p.len();
            Tok::Punct(p)
        };
        out.push(Token { tok, line, end: i });
    }
    Ok(())
}

/// The index after the bracket closing the one at `i`.
fn balanced(b: &[u8], mut i: usize, open: u8, close: u8) -> Result<usize, String> {
    let mut depth = 0;
    while i < b.len() {
        if b[i] == open {
            depth += 1;
        } else if b[i] == close {
            depth -= 1;
            if depth == 0 {
                return Ok(i + 1);
            }
        }
        i += 1;
    }
    Err(format!("unbalanced `{}` in a pseudo-variable", open as char))
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Str(String),
    Int(i64),
    Pv(String),
    /// A bare name or word: `myself`, `uri`, `src_ip`, `127.0.0.1`, a route name.
    Word(String),
    Call(Call),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(Box<Expr>, &'static str, Box<Expr>),
    /// `a + b` (string concatenation or sum).
    Add(Box<Expr>, Box<Expr>),
}

/// A function call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub name: String,
    pub args: Vec<Expr>,
    /// Index of the preprocessed line.
    pub line: usize,
}

/// A statement in a route block.
#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    Call(Call),
    If { cond: Expr, then: Vec<Stmt>, els: Vec<Stmt>, line: usize },
    Exit(usize),
    Drop(usize),
    Return(usize),
    Break(usize),
    Assign { lhs: String, line: usize },
    Switch { line: usize },
    While { line: usize },
}

/// A top-level item.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `name = value` (value as written, up to the end of the line).
    Global {
        name: String,
        value: String,
        line: usize,
    },
    LoadModule {
        name: String,
        line: usize,
    },
    ModParam {
        module: String,
        param: String,
        value: Expr,
        line: usize,
    },
    /// `request_route`, `route[NAME]`, `failure_route[NAME]`, `event_route[x:y]`, ...
    Route {
        kind: String,
        name: Option<String>,
        body: Vec<Stmt>,
        line: usize,
    },
}

/// A parsed config.
pub struct Cfg {
    pub lines: Vec<Line>,
    pub items: Vec<Item>,
}

impl Cfg {
    /// Where preprocessed line `i` came from.
    pub fn origin(&self, i: usize) -> Origin {
        self.lines.get(i).map(|l| l.origin.clone()).unwrap_or_else(|| Origin { file: "?".into(), line: 0 })
    }
}

struct Parser<'a> {
    lines: &'a [Line],
    toks: Vec<Token>,
    pos: usize,
}

/// Parses the preprocessed lines.
pub fn parse(lines: Vec<Line>) -> Result<Cfg, PpError> {
    let mut toks = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        lex_line(&l.text, i, &mut toks).map_err(|m| PpError { origin: l.origin.clone(), message: m })?;
    }
    let mut p = Parser { lines: &lines, toks, pos: 0 };
    let items = p.items()?;
    Ok(Cfg { lines, items })
}

type R<T> = Result<T, PpError>;

impl Parser<'_> {
    fn origin(&self, line: usize) -> Origin {
        self.lines.get(line).map(|l| l.origin.clone()).unwrap_or_else(|| Origin { file: "?".into(), line: 0 })
    }

    fn err<T>(&self, message: impl Into<String>) -> R<T> {
        let line = self.toks.get(self.pos).or(self.toks.last()).map_or(0, |t| t.line);
        Err(PpError { origin: self.origin(line), message: message.into() })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.toks.get(self.pos + n).map(|t| &t.tok)
    }

    fn line(&self) -> usize {
        self.toks.get(self.pos).or(self.toks.last()).map_or(0, |t| t.line)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.tok.clone());
        self.pos += 1;
        t
    }

    fn is(&self, p: &str) -> bool {
        matches!(self.peek(), Some(Tok::Punct(q)) if *q == p)
    }

    fn eat(&mut self, p: &str) -> bool {
        let yes = self.is(p);
        if yes {
            self.pos += 1;
        }
        yes
    }

    fn expect(&mut self, p: &str) -> R<()> {
        if self.eat(p) {
            Ok(())
        } else {
            let found = self.describe();
            self.err(format!("expected `{p}`, found {found}"))
        }
    }

    fn describe(&self) -> String {
        match self.peek() {
            None => "the end of the config".into(),
            Some(Tok::Ident(s)) | Some(Tok::Word(s)) | Some(Tok::Pv(s)) => format!("`{s}`"),
            Some(Tok::Str(s)) => format!("\"{s}\""),
            Some(Tok::Int(n)) => format!("`{n}`"),
            Some(Tok::Punct(p)) => format!("`{p}`"),
        }
    }

    fn items(&mut self) -> R<Vec<Item>> {
        let mut items = Vec::new();
        while let Some(tok) = self.peek().cloned() {
            let line = self.line();
            match tok {
                Tok::Punct(";") => {
                    self.pos += 1;
                }
                Tok::Punct("}") => return self.err("this `}` closes no block"),
                Tok::Ident(id) if id == "loadmodule" => {
                    self.pos += 1;
                    match self.next() {
                        Some(Tok::Str(name)) => items.push(Item::LoadModule { name, line }),
                        _ => return self.err("loadmodule takes a quoted module name"),
                    }
                    // `loadmodule "x.so" "params"`: later Kamailio versions take module parameters here.
                    if let Some(Tok::Str(_)) = self.peek() {
                        self.pos += 1;
                    }
                }
                Tok::Ident(id) if id == "modparam" => {
                    self.pos += 1;
                    self.expect("(")?;
                    let module = self.string_arg("modparam's module")?;
                    self.expect(",")?;
                    let param = self.string_arg("modparam's name")?;
                    self.expect(",")?;
                    let value = self.expr()?;
                    self.expect(")")?;
                    items.push(Item::ModParam { module, param, value, line });
                }
                Tok::Ident(id)
                    if matches!(self.peek_at(1), Some(Tok::Punct("{")) | Some(Tok::Punct("[")))
                        && (id.ends_with("route") || id == "route") =>
                {
                    self.pos += 1;
                    let name = if self.is("[") { Some(self.route_name()?) } else { None };
                    let kind = if id == "route" && name.is_none() { "request_route".to_string() } else { id };
                    let body = self.block()?;
                    items.push(Item::Route { kind, name, body, line });
                }
                Tok::Ident(id) if matches!(self.peek_at(1), Some(Tok::Punct("=")) | Some(Tok::Punct("+="))) => {
                    // A global parameter: its value is the rest of the line, as written.
                    let eq = &self.toks[self.pos + 1];
                    let value = self.lines[eq.line].text[eq.end..].trim().trim_end_matches(';').trim().to_string();
                    items.push(Item::Global { name: id, value, line });
                    while self.toks.get(self.pos).is_some_and(|t| t.line == line) {
                        self.pos += 1;
                    }
                }
                _ => {
                    let found = self.describe();
                    return self
                        .err(format!("expected a global parameter, loadmodule, modparam or a route, found {found}"));
                }
            }
        }
        Ok(items)
    }

    fn string_arg(&mut self, what: &str) -> R<String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(s),
            _ => {
                self.pos -= 1;
                self.err(format!("{what} must be a quoted string"))
            }
        }
    }

    /// `[NAME]` after a route keyword; the name may hold `:` and `-` (`event_route[xhttp:request]`).
    fn route_name(&mut self) -> R<String> {
        self.expect("[")?;
        let mut name = String::new();
        loop {
            match self.next() {
                Some(Tok::Punct("]")) => break,
                Some(Tok::Ident(s)) | Some(Tok::Word(s)) | Some(Tok::Str(s)) => name += &s,
                Some(Tok::Int(n)) => name += &n.to_string(),
                Some(Tok::Punct(p)) if p == ":" || p == "-" => name += p,
                _ => {
                    self.pos -= 1;
                    return self.err("a route name must be a name in brackets: route[NAME]");
                }
            }
        }
        Ok(name)
    }

    fn block(&mut self) -> R<Vec<Stmt>> {
        let open_line = self.line();
        self.expect("{")?;
        let mut stmts = Vec::new();
        loop {
            if self.eat("}") {
                return Ok(stmts);
            }
            if self.peek().is_none() {
                return Err(PpError {
                    origin: self.origin(open_line),
                    message: "this `{` is never closed (unbalanced braces)".into(),
                });
            }
            if self.eat(";") {
                continue;
            }
            stmts.push(self.stmt()?);
        }
    }

    fn body(&mut self) -> R<Vec<Stmt>> {
        if self.is("{") { self.block() } else { Ok(vec![self.stmt()?]) }
    }

    fn end_stmt(&mut self) -> R<()> {
        // Kamailio lets the last statement of a block go without `;`.
        if self.is("}") {
            return Ok(());
        }
        self.expect(";")
    }

    fn stmt(&mut self) -> R<Stmt> {
        let line = self.line();
        match self.peek().cloned() {
            Some(Tok::Punct("{")) => {
                let body = self.block()?;
                Ok(Stmt::If { cond: Expr::Int(1), then: body, els: Vec::new(), line })
            }
            Some(Tok::Ident(id)) => match id.as_str() {
                "if" => {
                    self.pos += 1;
                    self.expect("(")?;
                    let cond = self.expr()?;
                    self.expect(")")?;
                    let then = self.body()?;
                    let els = if matches!(self.peek(), Some(Tok::Ident(e)) if e == "else") {
                        self.pos += 1;
                        self.body()?
                    } else {
                        Vec::new()
                    };
                    Ok(Stmt::If { cond, then, els, line })
                }
                "exit" | "drop" | "return" | "break" => {
                    self.pos += 1;
                    // `return(1)`, `return 1`, `exit;`
                    if !self.is(";") && !self.is("}") {
                        self.expr()?;
                    }
                    self.end_stmt()?;
                    Ok(match id.as_str() {
                        "exit" => Stmt::Exit(line),
                        "drop" => Stmt::Drop(line),
                        "return" => Stmt::Return(line),
                        _ => Stmt::Break(line),
                    })
                }
                "switch" | "while" => {
                    self.pos += 1;
                    self.expect("(")?;
                    self.expr()?;
                    self.expect(")")?;
                    if id == "switch" {
                        self.switch_body()?;
                        Ok(Stmt::Switch { line })
                    } else {
                        self.body()?;
                        Ok(Stmt::While { line })
                    }
                }
                _ => {
                    self.pos += 1;
                    if self.is("=") || self.is("+=") {
                        self.pos += 1;
                        self.expr()?;
                        self.end_stmt()?;
                        return Ok(Stmt::Assign { lhs: id, line });
                    }
                    let args = if self.is("(") { self.args()? } else { Vec::new() };
                    self.end_stmt()?;
                    Ok(Stmt::Call(Call { name: id, args, line }))
                }
            },
            Some(Tok::Pv(pv)) => {
                self.pos += 1;
                if !(self.eat("=") || self.eat("+=")) {
                    return self.err(format!("expected `=` after {pv}"));
                }
                self.expr()?;
                self.end_stmt()?;
                Ok(Stmt::Assign { lhs: pv, line })
            }
            _ => {
                let found = self.describe();
                self.err(format!("expected a statement, found {found}"))
            }
        }
    }

    /// `{ case X: ... default: ... }`: parsed for its structure only.
    fn switch_body(&mut self) -> R<()> {
        let open_line = self.line();
        self.expect("{")?;
        loop {
            match self.peek() {
                None => {
                    return Err(PpError {
                        origin: self.origin(open_line),
                        message: "this `{` is never closed (unbalanced braces)".into(),
                    });
                }
                Some(Tok::Punct("}")) => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(Tok::Ident(k)) if k == "case" => {
                    self.pos += 1;
                    self.eat("-");
                    self.next();
                    self.expect(":")?;
                }
                Some(Tok::Ident(k)) if k == "default" => {
                    self.pos += 1;
                    self.expect(":")?;
                }
                Some(Tok::Punct(";")) => self.pos += 1,
                _ => {
                    self.stmt()?;
                }
            }
        }
    }

    fn args(&mut self) -> R<Vec<Expr>> {
        self.expect("(")?;
        let mut args = Vec::new();
        if self.eat(")") {
            return Ok(args);
        }
        loop {
            args.push(self.expr()?);
            if self.eat(")") {
                return Ok(args);
            }
            self.expect(",")?;
        }
    }

    fn expr(&mut self) -> R<Expr> {
        let mut left = self.and()?;
        while self.eat("||") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> R<Expr> {
        let mut left = self.cmp()?;
        while self.eat("&&") {
            left = Expr::And(Box::new(left), Box::new(self.cmp()?));
        }
        Ok(left)
    }

    fn cmp(&mut self) -> R<Expr> {
        let left = self.add()?;
        for op in ["==", "!=", "=~", "!~", "<=", ">=", "<", ">"] {
            if self.eat(op) {
                let op: &'static str = PUNCTS.iter().find(|p| **p == op).expect("listed");
                return Ok(Expr::Cmp(Box::new(left), op, Box::new(self.add()?)));
            }
        }
        Ok(left)
    }

    fn add(&mut self) -> R<Expr> {
        let mut left = self.unary()?;
        while self.eat("+") {
            left = Expr::Add(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> R<Expr> {
        if self.eat("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat("-") {
            return match self.next() {
                Some(Tok::Int(n)) => Ok(Expr::Int(-n)),
                _ => {
                    self.pos -= 1;
                    self.err("expected a number after `-`")
                }
            };
        }
        self.primary()
    }

    fn primary(&mut self) -> R<Expr> {
        let line = self.line();
        match self.next() {
            Some(Tok::Punct("(")) => {
                let e = self.expr()?;
                self.expect(")")?;
                Ok(e)
            }
            Some(Tok::Str(mut s)) => {
                // Adjacent strings are one: "a" "b".
                while let Some(Tok::Str(more)) = self.peek() {
                    s += more;
                    self.pos += 1;
                }
                Ok(Expr::Str(s))
            }
            Some(Tok::Int(n)) => Ok(Expr::Int(n)),
            Some(Tok::Pv(p)) => Ok(Expr::Pv(p)),
            Some(Tok::Word(w)) => Ok(Expr::Word(w)),
            Some(Tok::Ident(id)) => {
                if self.is("(") {
                    let args = self.args()?;
                    Ok(Expr::Call(Call { name: id, args, line }))
                } else {
                    Ok(Expr::Word(id))
                }
            }
            _ => {
                self.pos -= 1;
                let found = self.describe();
                self.err(format!("expected a value, found {found}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::preprocess::preprocess_str;
    use super::*;

    fn cfg(text: &str) -> R<Cfg> {
        parse(preprocess_str("t.cfg", text, &[])?.lines)
    }

    #[test]
    fn top_level_items() {
        let c = cfg(concat!(
            "listen=udp:127.0.0.1:5060 advertise 1.2.3.4:5060\nchildren=4\n",
            "loadmodule \"presence.so\"\nmodparam(\"presence\", \"db_url\",\n \"sqlite:///a\" \"b\")\n",
            "modparam(\"m\", \"n\", 3)\nrequest_route { exit; }\nroute[PRES] { return; }\n",
            "event_route[xhttp:request] { exit; }\n"
        ))
        .unwrap();
        assert_eq!(
            c.items[0],
            Item::Global { name: "listen".into(), value: "udp:127.0.0.1:5060 advertise 1.2.3.4:5060".into(), line: 0 }
        );
        assert_eq!(c.items[2], Item::LoadModule { name: "presence.so".into(), line: 2 });
        assert_eq!(
            c.items[3],
            Item::ModParam {
                module: "presence".into(),
                param: "db_url".into(),
                value: Expr::Str("sqlite:///ab".into()),
                line: 3
            }
        );
        assert!(matches!(&c.items[5], Item::Route { kind, name: None, .. } if kind == "request_route"));
        assert!(matches!(&c.items[6], Item::Route { name: Some(n), .. } if n == "PRES"));
        assert!(matches!(&c.items[7], Item::Route { name: Some(n), .. } if n == "xhttp:request"));
    }

    #[test]
    fn statements() {
        let c = cfg(concat!(
            "request_route {\n",
            "  if (is_method(\"PUBLISH\") && !has_totag() || $rU == $null) { handle_publish(); exit; }\n",
            "  else if (uri =~ \"^sip:a\") drop;\n",
            "  $var(x) = $rU + \"@\";\n",
            "  switch ($rc) { case -1: send_reply(\"404\", \"Not Found\"); break; default: exit; }\n",
            "  route(REG); return(1)\n",
            "}\n"
        ))
        .unwrap();
        let Item::Route { body, .. } = &c.items[0] else { panic!() };
        assert_eq!(body.len(), 5);
        let Stmt::If { cond, then, els, line } = &body[0] else { panic!() };
        assert_eq!(*line, 1);
        assert!(matches!(cond, Expr::Or(..)));
        assert_eq!(then.len(), 2);
        assert!(matches!(&els[0], Stmt::If { then, .. } if then == &[Stmt::Drop(2)]));
        assert!(matches!(&body[1], Stmt::Assign { lhs, .. } if lhs == "$var(x)"));
        assert!(matches!(&body[2], Stmt::Switch { line: 4 }));
        assert!(
            matches!(&body[3], Stmt::Call(Call { name, args, .. }) if name == "route" && args == &[Expr::Word("REG".into())])
        );
        assert_eq!(body[4], Stmt::Return(5));
    }

    #[test]
    fn pseudo_variables_with_transformations() {
        let c = cfg("request_route { if (src_ip == 10.0.0.0/8) exit; }").unwrap();
        let Item::Route { body, .. } = &c.items[0] else { panic!() };
        let Stmt::If { cond: Expr::Cmp(_, "==", net), .. } = &body[0] else { panic!() };
        assert_eq!(**net, Expr::Word("10.0.0.0/8".into()));
        let c = cfg("request_route { if ($(hdr(X){s.len}) > 0 && $sht(ban=>$si) != $null) exit; }").unwrap();
        let Item::Route { body, .. } = &c.items[0] else { panic!() };
        let Stmt::If { cond: Expr::And(a, _), .. } = &body[0] else { panic!() };
        assert!(matches!(&**a, Expr::Cmp(l, ">", _) if **l == Expr::Pv("$(hdr(X){s.len})".into())));
    }

    #[test]
    fn errors_point_at_the_line() {
        let e = cfg("\nrequest_route {\n  if (a()) {\n exit;\n}\n").err().unwrap();
        assert_eq!(e.origin.line, 2);
        assert!(e.message.contains("never closed"), "{}", e.message);
        let e = cfg("request_route { exit; }\n}\n").err().unwrap();
        assert_eq!(e.origin.line, 2);
        let e = cfg("request_route {\n f(\"x);\n}").err().unwrap();
        assert_eq!((e.origin.line, e.message.as_str()), (2, "unterminated string"));
        let e = cfg("request_route {\n if (a() { exit; }\n}").err().unwrap();
        assert_eq!(e.origin.line, 2);
        assert!(cfg("modparam(presence, \"a\", 1)").is_err());
    }
}
