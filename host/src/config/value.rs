//! The TOML document as an owned tree whose every key and value keeps its byte span, so errors
//! found after parsing (a modparam of the wrong type, an unknown function) still point at the
//! line they are about.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Range<usize>,
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: Range<usize>) -> Self {
        Self { value, span }
    }
}

/// A TOML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime(String),
    Array(Vec<Spanned<Value>>),
    Table(Table),
}

/// A TOML table, in file order.
pub type Table = Vec<(Spanned<String>, Spanned<Value>)>;

impl Value {
    /// What kind of value this is, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Datetime(_) => "a date",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

/// Parses `text`; a syntax error comes back as (message, span).
pub fn parse(text: &str) -> Result<Table, (String, Option<Range<usize>>)> {
    let doc = DeTable::parse(text).map_err(|e| (e.message().to_string(), e.span()))?;
    convert_table(doc.get_ref()).map_err(|(m, s)| (m, Some(s)))
}

fn convert_table(t: &DeTable<'_>) -> Result<Table, (String, Range<usize>)> {
    t.iter()
        .map(|(k, v)| Ok((Spanned::new(k.get_ref().to_string(), k.span()), convert(v.get_ref(), v.span())?)))
        .collect()
}

fn convert(v: &DeValue<'_>, span: Range<usize>) -> Result<Spanned<Value>, (String, Range<usize>)> {
    let value = match v {
        DeValue::String(s) => Value::Str(s.to_string()),
        DeValue::Integer(i) => {
            let text = i.as_str().replace('_', "");
            let parsed = match i.radix() {
                10 => text.parse::<i64>().ok(),
                radix => {
                    let digits = text.trim_start_matches(['0']).trim_start_matches(['x', 'o', 'b']);
                    i64::from_str_radix(if digits.is_empty() { "0" } else { digits }, radix).ok()
                }
            };
            Value::Int(parsed.ok_or_else(|| (format!("integer {} does not fit in 64 bits", i.as_str()), span.clone()))?)
        }
        DeValue::Float(f) => Value::Float(f.as_str().replace('_', "").parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::Datetime(d.to_string()),
        DeValue::Array(a) => {
            Value::Array(a.iter().map(|item| convert(item.get_ref(), item.span())).collect::<Result<_, _>>()?)
        }
        DeValue::Table(t) => Value::Table(convert_table(t)?),
    };
    Ok(Spanned::new(value, span))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_spans() {
        let text = "b = 1\na = \"x\"\n[t]\nk = [1, 2]\n";
        let t = parse(text).unwrap();
        assert_eq!(t[0].0.value, "b");
        assert_eq!(t[1].0.value, "a");
        assert_eq!(&text[t[1].1.span.clone()], "\"x\"");
        let Value::Table(inner) = &t[2].1.value else { panic!() };
        let Value::Array(items) = &inner[0].1.value else { panic!() };
        assert_eq!(items[1].value, Value::Int(2));
    }

    #[test]
    fn hex_and_underscores() {
        let t = parse("a = 0x10\nb = 1_000\n").unwrap();
        assert_eq!(t[0].1.value, Value::Int(16));
        assert_eq!(t[1].1.value, Value::Int(1000));
    }

    #[test]
    fn syntax_error_has_span() {
        let (msg, span) = parse("a = \n").unwrap_err();
        assert!(!msg.is_empty());
        assert!(span.is_some());
    }
}
