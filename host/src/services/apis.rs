//! APIs modules export to each other by name (Kamailio's `bind_pua`, `bind_usrloc`, ...).
//!
//! The exporter registers a vtable pointer with the `TypeLayout` of the vtable type as it was
//! compiled into the exporter; a binder passes the layout it was compiled with, and the host
//! compares the two with abi_stable's checker before handing the pointer out. A module built
//! against another version of the API is therefore refused at init, with a message, instead of
//! calling through a function pointer of the wrong type.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;

use abi_stable::abi_stability::abi_checking::check_layout_compatibility;
use abi_stable::type_layout::TypeLayout;

struct Exported {
    module: String,
    version: u32,
    layout: &'static TypeLayout,
    vtable: usize,
}

/// The exported APIs and which modules declared which exports.
pub struct ApiRegistry {
    declared: HashMap<String, Vec<String>>,
    exported: Mutex<HashMap<String, Exported>>,
}

impl ApiRegistry {
    /// `declared`: module name → the API names its declaration says it exports.
    pub fn new(declared: HashMap<String, Vec<String>>) -> Self {
        Self { declared, exported: Mutex::new(HashMap::new()) }
    }

    /// # Safety
    /// `layout` must point at a `'static` `TypeLayout` and `vtable` at a `'static` vtable of
    /// that type; both come from `plugin_api::Host::export`, which guarantees it.
    pub unsafe fn export(
        &self,
        module: &str,
        name: &str,
        version: u32,
        layout: *const c_void,
        vtable: *const c_void,
    ) -> Result<(), String> {
        if !self.declared.get(module).is_some_and(|apis| apis.iter().any(|a| a == name)) {
            return Err(format!(
                "module {module} exports API `{name}` without declaring it (add .exports(\"{name}\") to its ModuleInfo)"
            ));
        }
        let mut exported = self.exported.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(other) = exported.get(name) {
            return Err(format!("API `{name}` is already exported by module {}", other.module));
        }
        // SAFETY: per this function's contract.
        let layout = unsafe { &*(layout as *const TypeLayout) };
        exported.insert(
            name.to_string(),
            Exported { module: module.to_string(), version, layout, vtable: vtable as usize },
        );
        Ok(())
    }

    /// # Safety
    /// `expected` must point at a `'static` `TypeLayout` (from `plugin_api::Host::bind`).
    pub unsafe fn bind(
        &self,
        module: &str,
        name: &str,
        version: u32,
        expected: *const c_void,
    ) -> Result<*const c_void, String> {
        let exported = self.exported.lock().unwrap_or_else(|e| e.into_inner());
        let Some(api) = exported.get(name) else {
            let provider =
                self.declared.iter().find(|(_, apis)| apis.iter().any(|a| a == name)).map(|(m, _)| m.clone());
            return Err(match provider {
                Some(p) => format!(
                    "module {module} binds API `{name}`, which module {p} has not exported yet: load {p} before {module} (or {p} failed to initialise)"
                ),
                None => format!(
                    "module {module} binds API `{name}`, which no loaded module exports: load the module that provides it"
                ),
            });
        };
        if api.version != version {
            return Err(format!(
                "module {module} needs API `{name}` version {version}, but module {} exports version {}: rebuild one of them against the same plugin-api",
                api.module, api.version
            ));
        }
        // SAFETY: per this function's contract.
        let expected = unsafe { &*(expected as *const TypeLayout) };
        check_layout_compatibility(expected, api.layout).map_err(|e| {
            let detail: String = e.to_string().lines().filter(|l| !l.trim().is_empty()).take(8).collect::<Vec<_>>().join(" | ");
            format!("API `{name}` exported by module {} has a layout module {module} was not built for (built against another plugin-api): {detail}", api.module)
        })?;
        Ok(api.vtable as *const c_void)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::StableAbi;
    use plugin_api::ffi::{FfiError, FfiParam};

    fn layout<T: StableAbi>() -> *const c_void {
        <T as StableAbi>::LAYOUT as *const TypeLayout as *const c_void
    }

    #[test]
    fn bind_checks_name_version_and_layout() {
        static VTABLE: u8 = 7;
        let declared = HashMap::from([("pua".to_string(), vec!["pua".to_string()]), ("other".to_string(), vec![])]);
        let reg = ApiRegistry::new(declared);
        let vt = &VTABLE as *const u8 as *const c_void;
        // SAFETY (all calls): the layouts are `'static` TypeLayouts of real types.
        unsafe {
            let e = reg.bind("pua_mi", "pua", 1, layout::<FfiError>()).unwrap_err();
            assert!(e.contains("which module pua has not exported yet"), "{e}");
            let e = reg.bind("pua_mi", "usrloc", 1, layout::<FfiError>()).unwrap_err();
            assert!(e.contains("which no loaded module exports"), "{e}");
            let e = reg.export("other", "pua", 1, layout::<FfiError>(), vt).unwrap_err();
            assert!(e.contains("without declaring it"), "{e}");
            reg.export("pua", "pua", 1, layout::<FfiError>(), vt).unwrap();
            assert!(reg.export("pua", "pua", 1, layout::<FfiError>(), vt).unwrap_err().contains("already exported"));
            assert_eq!(reg.bind("pua_mi", "pua", 1, layout::<FfiError>()).unwrap(), vt);
            let e = reg.bind("pua_mi", "pua", 2, layout::<FfiError>()).unwrap_err();
            assert!(e.contains("needs API `pua` version 2, but module pua exports version 1"), "{e}");
            let e = reg.bind("pua_mi", "pua", 1, layout::<FfiParam>()).unwrap_err();
            assert!(e.contains("has a layout module pua_mi was not built for"), "{e}");
        }
    }
}
