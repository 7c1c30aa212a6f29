//! Arbitrary input never panics the parsers: it loads or it is refused with a message.

use keel_sim::prices::{BridgedBars, PriceSource, load_bars};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn csv_loader_never_panics(text in "[0-9a-zA-Z:,.\\- \\n+eE_]{0,400}") {
        let _ = load_bars(&text, false);
        let _ = load_bars(&text, true);
    }

    #[test]
    fn csv_like_rows_never_panic(rows in proptest::collection::vec((0u64..20_000, -5.0f64..500.0, -5.0f64..500.0, -5.0f64..500.0, -5.0f64..500.0), 0..40), bt in 1u64..7_200) {
        let mut text = String::from("timestamp,open,high,low,close\n");
        for (t, o, h, l, c) in &rows {
            text.push_str(&format!("{},{o},{h},{l},{c}\n", t * 60));
        }
        if let Ok(series) = load_bars(&text, true) {
            // Whatever loads can be walked at any block time the bridge accepts.
            if let Ok(mut b) = BridgedBars::new(series.bars, series.interval, bt, 1) {
                let mut n = 0;
                while let Some(t) = b.next_tick() {
                    prop_assert!(t.price.is_finite() && t.price > 0.0);
                    n += 1;
                    if n > 100_000 { break; }
                }
            }
        }
    }
}
