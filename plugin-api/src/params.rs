//! A module's modparams, as validated by the host.

use std::collections::HashMap;

use abi_stable::std_types::RVec;

use crate::ffi::{FfiParam, FfiParamValue};

/// The modparams handed to [`Module::init`](crate::Module::init): every declared modparam has
/// its configured value or its default, already checked for type and range by the host.
#[derive(Debug, Default, Clone)]
pub struct Params {
    values: HashMap<String, FfiParamValue>,
}

impl Params {
    pub(crate) fn from_ffi(params: RVec<FfiParam>) -> Self {
        Self { values: params.into_iter().map(|p| (p.name.into_string(), p.value)).collect() }
    }

    /// An integer modparam (0 if it was not declared as one).
    pub fn int(&self, name: &str) -> i64 {
        match self.values.get(name) {
            Some(FfiParamValue::Int(v)) => *v,
            _ => 0,
        }
    }

    /// A string modparam (empty if unset and without default).
    pub fn str(&self, name: &str) -> &str {
        self.opt_str(name).unwrap_or("")
    }

    /// A string modparam, `None` when it has no default and the config does not set it.
    pub fn opt_str(&self, name: &str) -> Option<&str> {
        match self.values.get(name) {
            Some(FfiParamValue::Str(v)) => Some(v.as_str()),
            _ => None,
        }
    }

    /// Every value of a repeatable string modparam, in config order.
    pub fn strs(&self, name: &str) -> Vec<&str> {
        match self.values.get(name) {
            Some(FfiParamValue::StrList(v)) => v.iter().map(|s| s.as_str()).collect(),
            Some(FfiParamValue::Str(v)) => vec![v.as_str()],
            _ => Vec::new(),
        }
    }

    /// Every value of a repeatable integer modparam, in config order.
    pub fn ints(&self, name: &str) -> Vec<i64> {
        match self.values.get(name) {
            Some(FfiParamValue::IntList(v)) => v.to_vec(),
            Some(FfiParamValue::Int(v)) => vec![*v],
            _ => Vec::new(),
        }
    }

    /// Whether the modparam has a value (configured or default).
    pub fn is_set(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }
}
