//! Checks a `[modparam.<module>]` table against the module's declared modparams.

use std::ops::Range;

use abi_stable::std_types::{RString, RVec};
use plugin_api::ffi::{FfiModuleInfo, FfiParam, FfiParamKind, FfiParamSpec, FfiParamValue};

use crate::config::{Diagnostic, ModparamTable, Spanned, Value, did_you_mean};

fn kind_name(spec: &FfiParamSpec) -> &'static str {
    match (spec.kind, spec.repeatable) {
        (FfiParamKind::INT, false) => "an integer",
        (FfiParamKind::INT, true) => "an integer or an array of integers",
        (_, false) => "a string",
        (_, true) => "a string or an array of strings",
    }
}

fn check_int(module: &str, spec: &FfiParamSpec, v: &Spanned<Value>, errors: &mut Vec<Diagnostic>) -> Option<i64> {
    let Value::Int(n) = v.value else {
        let mut d = Diagnostic::new(
            format!("modparam {module}.{} must be {}, found {}", spec.name, kind_name(spec), v.value.kind()),
            Some(v.span.clone()),
        );
        if let Value::Str(s) = &v.value
            && s.trim().parse::<i64>().is_ok()
        {
            d = d.help(format!("write the number without quotes: {} = {}", spec.name, s.trim()));
        }
        errors.push(d);
        return None;
    };
    let below = spec.min.into_option().is_some_and(|min| n < min);
    let above = spec.max.into_option().is_some_and(|max| n > max);
    if below || above {
        let range = match (spec.min.into_option(), spec.max.into_option()) {
            (Some(a), Some(b)) => format!("between {a} and {b}"),
            (Some(a), None) => format!("at least {a}"),
            (None, Some(b)) => format!("at most {b}"),
            (None, None) => unreachable!("a bound was crossed"),
        };
        errors.push(Diagnostic::new(
            format!("modparam {module}.{} must be {range}, found {n}", spec.name),
            Some(v.span.clone()),
        ));
        return None;
    }
    Some(n)
}

fn check_str(module: &str, spec: &FfiParamSpec, v: &Spanned<Value>, errors: &mut Vec<Diagnostic>) -> Option<RString> {
    match &v.value {
        Value::Str(s) => Some(s.as_str().into()),
        other => {
            errors.push(Diagnostic::new(
                format!("modparam {module}.{} must be {}, found {}", spec.name, kind_name(spec), other.kind()),
                Some(v.span.clone()),
            ));
            None
        }
    }
}

fn check_value(
    module: &str,
    spec: &FfiParamSpec,
    v: &Spanned<Value>,
    errors: &mut Vec<Diagnostic>,
) -> Option<FfiParamValue> {
    let items: Vec<&Spanned<Value>> = match (&v.value, spec.repeatable) {
        (Value::Array(items), true) => items.iter().collect(),
        (_, true) => vec![v],
        (Value::Array(_), false) => {
            errors.push(
                Diagnostic::new(
                    format!("modparam {module}.{} takes one value, found an array", spec.name),
                    Some(v.span.clone()),
                )
                .help(format!("{module}.{} cannot be repeated", spec.name)),
            );
            return None;
        }
        (_, false) => vec![v],
    };
    let before = errors.len();
    let value = match (spec.kind, spec.repeatable) {
        (FfiParamKind::INT, false) => FfiParamValue::Int(check_int(module, spec, items[0], errors)?),
        (FfiParamKind::INT, true) => {
            FfiParamValue::IntList(items.iter().filter_map(|i| check_int(module, spec, i, errors)).collect::<RVec<_>>())
        }
        (_, false) => FfiParamValue::Str(check_str(module, spec, items[0], errors)?),
        (_, true) => {
            FfiParamValue::StrList(items.iter().filter_map(|i| check_str(module, spec, i, errors)).collect::<RVec<_>>())
        }
    };
    (errors.len() == before).then_some(value)
}

/// Checks `table` (absent when the config has no `[modparam.<module>]`) against `info`, and
/// returns every declared modparam with its configured value or default.
pub fn check_modparams(
    module: &str,
    info: &FfiModuleInfo,
    table: Option<&ModparamTable>,
    loadmodule_span: Option<Range<usize>>,
    errors: &mut Vec<Diagnostic>,
) -> Vec<FfiParam> {
    let names: Vec<&str> = info.params.iter().map(|p| p.name.as_str()).collect();
    let mut out = Vec::new();
    if let Some(table) = table {
        for (key, value) in &table.params {
            let Some(spec) = info.params.iter().find(|p| p.name.as_str() == key.value) else {
                let help = match did_you_mean(&key.value, names.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if names.is_empty() => format!("module {module} has no modparams"),
                    None => format!("module {module} has: {} (see puahost params {module})", names.join(", ")),
                };
                errors.push(
                    Diagnostic::new(
                        format!("unknown modparam `{}` for module {module}", key.value),
                        Some(key.span.clone()),
                    )
                    .help(help),
                );
                continue;
            };
            if let Some(v) = check_value(module, spec, value, errors) {
                out.push(FfiParam { name: spec.name.clone(), value: v });
            }
        }
    }
    for spec in info.params.iter() {
        if out.iter().any(|p| p.name == spec.name) {
            continue;
        }
        match spec.default.clone().into_option() {
            Some(default) => out.push(FfiParam { name: spec.name.clone(), value: default }),
            None if spec.required => {
                let span = table.map(|t| t.module.span.clone()).or_else(|| loadmodule_span.clone());
                errors.push(
                    Diagnostic::new(format!("module {module} needs modparam `{}`, which is not set", spec.name), span)
                        .help(format!("set it in [modparam.{module}]: {} = ...  ({})", spec.name, spec.doc)),
                );
            }
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::{RNone, RSome};

    fn spec(
        name: &str,
        kind: FfiParamKind,
        repeatable: bool,
        required: bool,
        default: Option<FfiParamValue>,
    ) -> FfiParamSpec {
        FfiParamSpec {
            name: name.into(),
            kind,
            repeatable,
            required,
            default: default.map_or(RNone, RSome),
            min: RNone,
            max: RNone,
            doc: "a doc".into(),
        }
    }

    fn info(params: Vec<FfiParamSpec>) -> FfiModuleInfo {
        FfiModuleInfo {
            name: "m".into(),
            version: "1".into(),
            doc: "".into(),
            requires: RVec::new(),
            params: params.into(),
            functions: RVec::new(),
            rpcs: RVec::new(),
            exports: RVec::new(),
        }
    }

    fn table(text: &str) -> ModparamTable {
        let cfg = crate::config::Config::from_str(
            std::path::Path::new("t.toml"),
            format!("loadmodule = [\"m\"]\n[modparam.m]\n{text}"),
        )
        .unwrap();
        cfg.modparams[0].clone()
    }

    #[test]
    fn defaults_types_ranges() {
        let mut min_expires = spec("min_expires", FfiParamKind::INT, false, false, Some(FfiParamValue::Int(0)));
        min_expires.min = RSome(0);
        let i = info(vec![
            min_expires,
            spec("db_url", FfiParamKind::STR, false, false, Some(FfiParamValue::Str("sqlite://x".into()))),
            spec("xcap_server", FfiParamKind::STR, true, false, Some(FfiParamValue::StrList(RVec::new()))),
            spec("server_address", FfiParamKind::STR, false, true, None),
        ]);
        let mut errors = Vec::new();
        let out = check_modparams(
            "m",
            &i,
            Some(&table("min_expires = 5\nxcap_server = [\"a\", \"b\"]\nserver_address = \"sip:x\"")),
            None,
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(out.len(), 4);
        assert!(out.iter().any(|p| p.value == FfiParamValue::StrList(vec![RString::from("a"), "b".into()].into())));
        assert!(out.iter().any(|p| p.value == FfiParamValue::Str("sqlite://x".into())));

        let mut errors = Vec::new();
        check_modparams("m", &i, Some(&table("min_expires = \"300\"\nmin_expirs = 1")), None, &mut errors);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].message.contains("must be an integer, found a string"));
        assert!(errors[0].help.as_deref().unwrap().contains("without quotes"));
        assert!(errors[1].help.as_deref().unwrap().contains("did you mean `min_expires`"));
        assert!(errors[2].message.contains("needs modparam `server_address`"));

        let mut errors = Vec::new();
        check_modparams("m", &i, Some(&table("min_expires = -1\nserver_address = \"x\"")), None, &mut errors);
        assert!(errors[0].message.contains("must be at least 0, found -1"), "{errors:?}");
    }
}
