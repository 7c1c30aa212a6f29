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
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{{labels}}} {cum}");
    }
}

/// Everything the service counts.
#[derive(Default)]
pub struct Metrics {
    /// Events appended, by kind.
    events: RwLock<BTreeMap<&'static str, AtomicU64>>,
    /// Requests by route and status.
    requests: RwLock<BTreeMap<(String, u16), AtomicU64>>,
    /// Request latency by route.
    latency: RwLock<BTreeMap<String, Histogram>>,
    /// Keeper submissions that failed (refused or not delivered).
    pub keeper_failures: AtomicU64,
    /// Keeper submissions made.
    pub keeper_submissions: AtomicU64,
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

impl Metrics {
    /// Count an appended event.
    pub fn event(&self, kind: &'static str) {
        bump(&self.events, &kind);
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

    /// Events of `kind` appended so far.
    pub fn events_of(&self, kind: &str) -> u64 {
        self.events.read().expect("metrics lock").get(kind).map(|c| c.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Render counters and histograms, then `gauges` (already formatted lines).
    pub fn render(&self, gauges: &str) -> String {
        let mut out = String::with_capacity(8192);
        out.push_str(
            "# HELP keel_events_total Events appended to the log, by kind.\n# TYPE keel_events_total counter\n",
        );
        for (k, v) in self.events.read().expect("metrics lock").iter() {
            let _ = writeln!(out, "keel_events_total{{kind=\"{k}\"}} {}", v.load(Ordering::Relaxed));
        }
        for (name, kind) in [("keel_rebalances_total", "rebalance"), ("keel_ripcords_total", "ripcord")] {
            let _ = writeln!(out, "# TYPE {name} counter\n{name} {}", self.events_of(kind));
        }
        let _ = writeln!(
            out,
            "# HELP keel_keeper_failures_total Keeper submissions refused or not delivered.\n# TYPE keel_keeper_failures_total counter\nkeel_keeper_failures_total {}",
            self.keeper_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# TYPE keel_keeper_submissions_total counter\nkeel_keeper_submissions_total {}",
            self.keeper_submissions.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP keel_http_requests_total Requests by route and status.\n# TYPE keel_http_requests_total counter\n",
        );
        for ((r, s), v) in self.requests.read().expect("metrics lock").iter() {
            let _ =
                writeln!(out, "keel_http_requests_total{{route=\"{r}\",status=\"{s}\"}} {}", v.load(Ordering::Relaxed));
        }
        out.push_str("# HELP keel_http_request_duration_seconds Request latency by route.\n# TYPE keel_http_request_duration_seconds histogram\n");
        for (r, h) in self.latency.read().expect("metrics lock").iter() {
            h.render(&mut out, "keel_http_request_duration_seconds", &format!("route=\"{r}\""));
        }
        out.push_str("# HELP keel_commit_duration_seconds Time to make a batch durable.\n# TYPE keel_commit_duration_seconds histogram\n");
        self.commit.render(&mut out, "keel_commit_duration_seconds", "");
        let _ = writeln!(
            out,
            "# TYPE keel_batches_total counter\nkeel_batches_total {}",
            self.batches.load(Ordering::Relaxed)
        );
        out.push_str(gauges);
        out
    }
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
}
