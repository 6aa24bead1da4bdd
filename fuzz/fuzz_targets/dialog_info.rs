#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| puahost_fuzz::entry::dialog_info(data));
