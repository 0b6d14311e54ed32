//! Per-plugin call counters and a lock-free latency histogram, cheap enough for the
//! routing hot path (a handful of relaxed atomic adds per call).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::error::ErrorKind;

/// Values below this many nanoseconds get one bucket each.
const LINEAR: u64 = 16;
/// Sub-buckets per power of two above that (8: at most 12.5 % relative error).
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Up to 2^40 ns (about 18 minutes); longer calls land in the last bucket.
const MAX_EXP: u32 = 40;
const BUCKETS: usize = LINEAR as usize + ((MAX_EXP - 4) as usize) * SUB as usize;

/// A histogram of durations with log-linear buckets (12.5 % resolution).
pub struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }
}

fn bucket_of(ns: u64) -> usize {
    if ns < LINEAR {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros(); // >= 4
    if exp >= MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = (ns >> (exp - SUB_BITS)) & (SUB - 1);
    LINEAR as usize + (exp as usize - 4) * SUB as usize + sub as usize
}

/// The smallest value of bucket `i` and its width.
fn bucket_range(i: usize) -> (u64, u64) {
    if (i as u64) < LINEAR {
        return (i as u64, 1);
    }
    let j = i - LINEAR as usize;
    let exp = (j / SUB as usize) as u32 + 4;
    let sub = (j % SUB as usize) as u64;
    let width = 1u64 << (exp - SUB_BITS);
    ((1u64 << exp) + sub * width, width)
}

impl LatencyHistogram {
    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(ns)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    pub fn mean(&self) -> Option<Duration> {
        let n = self.count();
        (n > 0).then(|| Duration::from_nanos(self.sum_ns.load(Relaxed) / n))
    }

    /// The `q` quantile (0.0..=1.0), to within the bucket resolution; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, width) = bucket_range(i);
                return Some(Duration::from_nanos(lo + width / 2));
            }
        }
        None
    }
}

/// Calls, errors by kind and call latency of one loaded plugin version.
#[derive(Default)]
pub struct PluginMetrics {
    calls: AtomicU64,
    errors: [AtomicU64; ErrorKind::ALL.len()],
    instantiations: AtomicU64,
    latency: LatencyHistogram,
}

impl PluginMetrics {
    pub(crate) fn record(&self, elapsed: Duration, outcome: Option<ErrorKind>) {
        self.calls.fetch_add(1, Relaxed);
        if let Some(kind) = outcome {
            self.errors[kind.index()].fetch_add(1, Relaxed);
        }
        self.latency.record(elapsed);
    }

    pub(crate) fn instantiated(&self) {
        self.instantiations.fetch_add(1, Relaxed);
    }

    /// A consistent-enough copy of the counters (each one is read atomically).
    pub fn snapshot(&self) -> MetricsSnapshot {
        let errors_by_kind: Vec<(ErrorKind, u64)> = ErrorKind::ALL
            .iter()
            .map(|k| (*k, self.errors[k.index()].load(Relaxed)))
            .collect();
        MetricsSnapshot {
            calls: self.calls.load(Relaxed),
            errors: errors_by_kind.iter().map(|(_, n)| n).sum(),
            errors_by_kind,
            instantiations: self.instantiations.load(Relaxed),
            p50: self.latency.quantile(0.50),
            p99: self.latency.quantile(0.99),
            mean: self.latency.mean(),
        }
    }

    /// The latency histogram, for exporting buckets.
    pub fn latency(&self) -> &LatencyHistogram {
        &self.latency
    }
}

/// What [`PluginMetrics::snapshot`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    pub calls: u64,
    pub errors: u64,
    pub errors_by_kind: Vec<(ErrorKind, u64)>,
    /// Instances created (fresh calls, plus warm instances built or rebuilt).
    pub instantiations: u64,
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    pub mean: Option<Duration>,
}

impl MetricsSnapshot {
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors_by_kind
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_their_values() {
        for ns in [
            0u64,
            1,
            15,
            16,
            17,
            31,
            32,
            1000,
            12_345,
            1 << 30,
            (1 << 40) - 1,
        ] {
            let i = bucket_of(ns);
            let (lo, w) = bucket_range(i);
            assert!(
                lo <= ns && ns < lo + w,
                "{ns} not in bucket {i} = [{lo}, {})",
                lo + w
            );
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_within_resolution() {
        let h = LatencyHistogram::default();
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).unwrap().as_nanos() as f64;
        let p99 = h.quantile(0.99).unwrap().as_nanos() as f64;
        assert!((p50 / 50_000.0 - 1.0).abs() < 0.125, "{p50}");
        assert!((p99 / 99_000.0 - 1.0).abs() < 0.125, "{p99}");
        assert_eq!(h.count(), 100);
    }
}
