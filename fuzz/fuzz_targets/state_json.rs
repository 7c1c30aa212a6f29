#![no_main]
//! `cargo fuzz run state_json`: see `keel_cli::fuzzing::state_json`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_cli::fuzzing::state_json(data));
