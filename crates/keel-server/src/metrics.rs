//! Prometheus metrics, kept in atomics and rendered in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Latency buckets, seconds.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0];

/// A fixed-bucket histogram.
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; 15],
    sum_us: AtomicU64,
}

impl Histogram {
    /// Record one observation, seconds.
    pub fn observe(&self, secs: f64) {
        let i = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cum = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cum}");
        }
        cum += self.counts[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cum}");
        // no empty label set: `name_sum 1.5`, not `name_sum{} 1.5`
        let set = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{set} {}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{set} {cum}");
    }
}

/// Everything the service counts.
#[derive(Default)]
pub struct Metrics {
    /// Events appended, by kind and product ("" for none).
    events: RwLock<BTreeMap<(&'static str, String), AtomicU64>>,
    /// Requests by route and status.
    requests: RwLock<BTreeMap<(String, u16), AtomicU64>>,
    /// Request latency by route.
    latency: RwLock<BTreeMap<String, Histogram>>,
    /// The in-process keeper's submissions that failed (refused or not delivered), by product.
    keeper_failures: RwLock<BTreeMap<String, AtomicU64>>,
    /// The in-process keeper's submissions, by product.
    keeper_submissions: RwLock<BTreeMap<String, AtomicU64>>,
    /// Commit latency of a batch.
    pub commit: Histogram,
    /// Batches committed.
    pub batches: AtomicU64,
}

fn bump<K: Ord + Clone>(map: &RwLock<BTreeMap<K, AtomicU64>>, key: &K) {
    if let Some(c) = map.read().expect("metrics lock").get(key) {
        c.fetch_add(1, Ordering::Relaxed);
        return;
    }
    map.write().expect("metrics lock").entry(key.clone()).or_default().fetch_add(1, Ordering::Relaxed);
}

/// Escape a label value (`\`, `"` and newlines).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// Count an appended event of `product` (if it has one).
    pub fn event(&self, kind: &'static str, product: Option<&str>) {
        bump(&self.events, &(kind, product.unwrap_or("").to_string()));
    }

    /// Count a keeper submission for `product`.
    pub fn keeper_submission(&self, product: &str) {
        bump(&self.keeper_submissions, &product.to_string());
    }

    /// Count a keeper submission for `product` that failed.
    pub fn keeper_failure(&self, product: &str) {
        bump(&self.keeper_failures, &product.to_string());
    }

    /// Count a request and record its latency.
    pub fn request(&self, route: &str, status: u16, secs: f64) {
        bump(&self.requests, &(route.to_string(), status));
        if let Some(h) = self.latency.read().expect("metrics lock").get(route) {
            h.observe(secs);
            return;
        }
        self.latency.write().expect("metrics lock").entry(route.to_string()).or_default().observe(secs);
    }

    /// Events of `kind` appended so far, every product.
    pub fn events_of(&self, kind: &str) -> u64 {
        self.events
            .read()
            .expect("metrics lock")
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, c)| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Render counters and histograms, then `gauges` (already formatted lines, each with its
    /// HELP and TYPE).
    pub fn render(&self, gauges: &str) -> String {
        let mut out = String::with_capacity(8192);
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(&mut out, "keel_build_info", "gauge", "keel's version; always 1.");
        let _ = writeln!(out, "keel_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        head(&mut out, "keel_events_total", "counter", "Events appended to the log, by kind and product.");
        let events = self.events.read().expect("metrics lock");
        for ((k, p), v) in events.iter() {
            let v = v.load(Ordering::Relaxed);
            match p.as_str() {
                "" => _ = writeln!(out, "keel_events_total{{kind=\"{k}\"}} {v}"),
                p => _ = writeln!(out, "keel_events_total{{kind=\"{k}\",product=\"{}\"}} {v}", label(p)),
            }
        }
        for (name, kind, help) in [
            ("keel_rebalances_total", "rebalance", "Rebalances (TWAP starts and single trades) accepted, by product."),
            ("keel_iterations_total", "iterate", "TWAP iterations accepted, by product."),
            ("keel_ripcords_total", "ripcord", "Ripcords accepted, by product."),
            ("keel_liquidations_total", "liquidation", "Liquidations of the token's account, by product."),
        ] {
            head(&mut out, name, "counter", help);
            for ((k, p), v) in events.iter().filter(|((k, p), _)| *k == kind && !p.is_empty()) {
                let _ = k;
                let _ = writeln!(out, "{name}{{product=\"{}\"}} {}", label(p), v.load(Ordering::Relaxed));
            }
        }
        drop(events);
        for (name, map, help) in [
            (
                "keel_keeper_submissions_total",
                &self.keeper_submissions,
                "Calls the in-process keeper submitted, by product.",
            ),
            (
                "keel_keeper_failures_total",
                &self.keeper_failures,
                "The in-process keeper's calls refused or not delivered, by product.",
            ),
        ] {
            head(&mut out, name, "counter", help);
            for (p, v) in map.read().expect("metrics lock").iter() {
                let _ = writeln!(out, "{name}{{product=\"{}\"}} {}", label(p), v.load(Ordering::Relaxed));
            }
        }
        head(&mut out, "keel_http_requests_total", "counter", "Requests by route and status.");
        for ((r, s), v) in self.requests.read().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "keel_http_requests_total{{route=\"{}\",status=\"{s}\"}} {}",
                label(r),
                v.load(Ordering::Relaxed)
            );
        }
        head(&mut out, "keel_http_request_duration_seconds", "histogram", "Request latency by route.");
        for (r, h) in self.latency.read().expect("metrics lock").iter() {
            h.render(&mut out, "keel_http_request_duration_seconds", &format!("route=\"{}\"", label(r)));
        }
        head(&mut out, "keel_commit_duration_seconds", "histogram", "Time to make a batch of events durable.");
        self.commit.render(&mut out, "keel_commit_duration_seconds", "");
        head(&mut out, "keel_batches_total", "counter", "Batches of events committed.");
        let _ = writeln!(out, "keel_batches_total {}", self.batches.load(Ordering::Relaxed));
        process(&mut out);
        out.push_str(gauges);
        out
    }
}

/// The process's own figures from /proc (Linux; nothing elsewhere), as Prometheus' client
/// libraries name them.
fn process(out: &mut String) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return };
    // fields after the command name, which is in parentheses and may hold spaces
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { return };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok());
    // (utime, stime, starttime) are fields 14, 15, 22 of the whole line: 11, 12, 19 here
    let ticks = 100.0; // USER_HZ on Linux
    let page = 4096.0;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse::<f64>().ok())));
    let mut g = |name: &str, kind: &str, help: &str, v: Option<f64>| {
        if let Some(v) = v {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
    };
    g(
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time spent, seconds.",
        num(11).zip(num(12)).map(|(u, s)| (u + s) / ticks),
    );
    g("process_resident_memory_bytes", "gauge", "Resident memory, bytes.", num(21).map(|p| p * page));
    g("process_virtual_memory_bytes", "gauge", "Virtual memory, bytes.", num(20));
    g(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process, unix seconds.",
        num(19).zip(boot).map(|(s, b)| b + s / ticks),
    );
    g(
        "process_open_fds",
        "gauge",
        "Open file descriptors.",
        std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as f64),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.request("/x", 200, 0.0007);
        m.request("/x", 200, 0.003);
        m.request("/x", 422, 30.0);
        let text = m.render("");
        assert!(text.contains("keel_http_request_duration_seconds_bucket{route=\"/x\",le=\"0.001\"} 1"), "{text}");
        assert!(text.contains("keel_http_request_duration_seconds_bucket{route=\"/x\",le=\"0.005\"} 2"));
        assert!(text.contains("keel_http_request_duration_seconds_bucket{route=\"/x\",le=\"+Inf\"} 3"));
        assert!(text.contains("keel_http_requests_total{route=\"/x\",status=\"422\"} 1"));
    }

    #[test]
    fn every_metric_has_help_and_no_empty_label_set() {
        let m = Metrics::default();
        m.event("rebalance", Some("eth2x"));
        m.event("key_created", None);
        m.keeper_submission("eth2x");
        m.commit.observe(0.01);
        let text = m.render("");
        assert!(!text.contains("{}"), "{text}");
        assert!(text.contains("keel_rebalances_total{product=\"eth2x\"} 1"), "{text}");
        assert!(text.contains("keel_events_total{kind=\"key_created\"} 1"), "{text}");
        assert!(text.contains("keel_build_info{version="), "{text}");
        let mut helped = std::collections::BTreeSet::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# HELP ") {
                helped.insert(rest.split(' ').next().unwrap().to_string());
            }
        }
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            let base = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
            assert!(helped.contains(name) || helped.contains(base), "{name} has no HELP");
        }
    }
}
