#![no_main]
//! `cargo fuzz run product_toml`: see `keel_cli::fuzzing::product_toml`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_cli::fuzzing::product_toml(data));
