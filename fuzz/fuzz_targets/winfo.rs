#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| puahost_fuzz::entry::winfo(data));
