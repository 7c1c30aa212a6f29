//! Sweeps: identical results with one thread or many; the expected shape; invalid points
//! listed with their rule and skipped.

use keel_sim::SimConfig;
use keel_sim::prices::Model;
use keel_sim::sweep::{Market, SweepConfig, run_sweep, run_sweep_with};

const PRODUCT: &str = include_str!("../../../products/eth2x-fli.toml");

fn config(grid: Vec<(String, Vec<String>)>, paths: usize) -> SweepConfig {
    SweepConfig {
        product_toml: PRODUCT.to_string(),
        grid,
        paths,
        market: Market::Model { model: Model::Gbm { drift: 0.0, vol: 0.9 }, shocks: vec![] },
        horizon: 60 * 86_400,
        block_time: 3_600,
        seed: 11,
        sim: SimConfig::default(),
        p0: 2000.0,
        funding: keel_sim::funding::FundingModel::default(),
    }
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

#[test]
fn same_bytes_with_one_thread_or_two() {
    let cfg = config(vec![("methodology.max_leverage_ratio".into(), vec!["2.2".into(), "2.4".into()])], 6);
    let run = |threads| {
        in_pool(threads, || {
            let mut rows = Vec::new();
            let points = run_sweep_with(&cfg, &|_, _| {}, &mut |settings, outs| {
                rows.extend(outs.iter().map(|o| format!("{settings:?} {o:?}")));
                Ok(())
            })
            .unwrap();
            (serde_json::to_string(&points).unwrap(), rows)
        })
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one.0, two.0, "per-point statistics");
    assert_eq!(one.1, two.1, "per-path rows, in path order");
    assert_eq!(one.1.len(), 12);
    assert_eq!(one.0, serde_json::to_string(&run_sweep(&cfg, &|_, _| {}).unwrap()).unwrap());
}

#[test]
fn wider_bands_rebalance_less_and_invalid_points_are_listed() {
    let cfg = config(
        vec![
            ("methodology.min_leverage_ratio".into(), vec!["1.9".into(), "1.6".into()]),
            ("methodology.max_leverage_ratio".into(), vec!["2.1".into(), "2.6".into(), "1.5".into()]),
        ],
        6,
    );
    let r = run_sweep(&cfg, &|_, _| {}).unwrap();
    assert_eq!(r.len(), 6);
    let rebalances = |min: &str, max: &str| {
        let p = r.iter().find(|p| p.settings[0].1 == min && p.settings[1].1 == max).unwrap();
        p.stats.as_ref().unwrap().mean_rebalances
    };
    assert!(
        rebalances("1.6", "2.6") < rebalances("1.9", "2.1"),
        "wide {} vs narrow {}",
        rebalances("1.6", "2.6"),
        rebalances("1.9", "2.1")
    );
    let tracking = |min: &str, max: &str| {
        let p = r.iter().find(|p| p.settings[0].1 == min && p.settings[1].1 == max).unwrap();
        p.stats.as_ref().unwrap().tracking_error
    };
    assert!(tracking("1.6", "2.6") > tracking("1.9", "2.1"), "wider bounds track the target worse");
    let bad: Vec<_> = r.iter().filter(|p| p.invalid.is_some()).collect();
    assert_eq!(bad.len(), 2, "max 1.5 is below the target 2");
    assert!(bad[0].invalid.as_ref().unwrap().contains("Must be valid max leverage"), "{:?}", bad[0].invalid);
    assert!(bad.iter().all(|p| p.stats.is_none()));
}

#[test]
fn smaller_max_trade_delevers_slower_and_ripcords_more_in_the_crash() {
    // The crash scenario at 12 s blocks (at coarse blocks a ripcord trades one chunk per block).
    let cfg = SweepConfig {
        market: Market::Scenario("crash".into(), vec![]),
        block_time: 12,
        ..config(vec![("exchanges.uniswap-v3.twap_max_trade_size".into(), vec!["2".into(), "20".into()])], 4)
    };
    let r = run_sweep(&cfg, &|_, _| {}).unwrap();
    let stats = |v: &str| r.iter().find(|p| p.settings[0].1 == v).unwrap().stats.clone().unwrap();
    let (small, large) = (stats("2"), stats("20"));
    assert!(small.p_ripcord > large.p_ripcord, "ripcords: max trade 2 → {}, 20 → {}", small.p_ripcord, large.p_ripcord);
    assert!(
        small.delever_speed < large.delever_speed,
        "delever speed: max trade 2 → {}, 20 → {}",
        small.delever_speed,
        large.delever_speed
    );
    assert!(small.tracking_error > large.tracking_error);
}

#[test]
fn threshold_products_sweep_over_theta() {
    let cfg = SweepConfig {
        product_toml: include_str!("../../../products/eth-3x-threshold.toml").to_string(),
        block_time: 300,
        horizon: 60 * 86_400,
        ..config(vec![("methodology.rebalance_threshold".into(), vec!["5%".into(), "30%".into(), "95%".into()])], 4)
    };
    let r = run_sweep(&cfg, &|_, _| {}).unwrap();
    let stats = |v: &str| r.iter().find(|p| p.settings[0].1 == v).unwrap().stats.clone();
    let (tight, wide) = (stats("5%").unwrap(), stats("30%").unwrap());
    assert!(tight.mean_rebalances > wide.mean_rebalances, "{} vs {}", tight.mean_rebalances, wide.mean_rebalances);
    assert!(tight.tracking_error < wide.tracking_error, "{} vs {}", tight.tracking_error, wide.tracking_error);
    let bad = r.iter().find(|p| p.settings[0].1 == "95%").unwrap();
    assert!(bad.invalid.as_deref().unwrap_or("").contains("rebalance_threshold"), "{:?}", bad.invalid);
}
