#![no_main]
//! `cargo fuzz run price_csv`: see `keel_cli::fuzzing::price_csv`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_cli::fuzzing::price_csv(data));
