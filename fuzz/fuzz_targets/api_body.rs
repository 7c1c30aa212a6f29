#![no_main]
//! `cargo fuzz run api_body`: see `keel_cli::fuzzing::api_body`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_cli::fuzzing::api_body(data));
