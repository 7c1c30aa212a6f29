//! Arbitrary product files never panic the loader: they load or are refused with a message.

use keel_core::product::AnyProduct;
use proptest::prelude::*;

const BASE: &str = include_str!("../../../products/eth2x-fli.toml");
const PERP: &str = include_str!("../../../products/eth2x-perp.toml");

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,300}") {
        let _ = AnyProduct::from_toml(&text);
    }

    #[test]
    fn mutated_values_never_panic(line in 0usize..80, value in prop_oneof![
        Just("\"\"".to_string()), Just("\"-1\"".to_string()), Just("\"1e400\"".to_string()), Just("0".to_string()),
        Just("\"99999999999999999999999999999999999999999999999999999999999999999999999999999999\"".to_string()),
        Just("\"0.0000000000000000000001\"".to_string()), Just("-3.5".to_string()), Just("true".to_string()),
        Just("[1, 2]".to_string()), Just("\"100%\"".to_string()), Just("\"1000000%\"".to_string()), Just("\"9999999999999d\"".to_string()),
        "[0-9.%a-z\"-]{0,12}",
    ], perp in any::<bool>()) {
        let src = if perp { PERP } else { BASE };
        let mut lines: Vec<String> = src.lines().map(String::from).collect();
        let idx = line % lines.len();
        if let Some((k, _)) = lines[idx].split_once('=') {
            lines[idx] = format!("{k}= {value}");
        }
        let text = lines.join("\n");
        if let Ok(AnyProduct::Lending(p)) = AnyProduct::from_toml(&text) {
            // A valid definition builds, or refuses to build with an error.
            let _ = p.build(keel_core::Address::with_last_byte(1), 1_700_000_000);
        }
    }
}
