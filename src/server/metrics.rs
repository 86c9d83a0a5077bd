//! Prometheus metrics: per-route request counts and latency histograms
//! (recorded by [`super::middleware::track`]), engine gauges refreshed at each
//! scrape, and fsync latency fed by the engine's [`Observer`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::{Observer, Stats};

/// Labels of a request count.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route pattern, e.g. `/kv/{key:.*}`, or `unmatched`.
    pub route: String,
    /// The HTTP method.
    pub method: String,
    /// The response status.
    pub status: u16,
}

/// Labels of a latency histogram.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route pattern.
    pub route: String,
    /// The HTTP method.
    pub method: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// The engine's fsync timings, to pass as `Options::observer` when opening the
/// engine and as [`ServerConfig::fsync`](super::ServerConfig::fsync) to the server.
#[derive(Debug, Clone)]
pub struct FsyncObserver {
    seconds: Histogram,
    writes: Counter,
}

impl Default for FsyncObserver {
    fn default() -> Self {
        FsyncObserver {
            seconds: latency_histogram(),
            writes: Counter::default(),
        }
    }
}

impl Observer for FsyncObserver {
    fn fsync(&self, elapsed: Duration, writes: usize) {
        self.seconds.observe(elapsed.as_secs_f64());
        self.writes
            .inc_by(u64::try_from(writes).unwrap_or(u64::MAX));
    }
}

/// Where in [`Stats`] an engine metric's value comes from.
type StatFn = fn(&Stats) -> u64;

/// Engine figures exported as gauges, set at each scrape: name, help, source.
const ENGINE_GAUGES: [(&str, &str, StatFn); 6] = [
    ("keys", "Live keys", |s| s.live_keys),
    ("live_bytes", "Bytes of live values", |s| s.live_value_bytes),
    ("disk_bytes", "Bytes of segment files", |s| s.disk_bytes),
    ("dead_bytes", "Bytes of segment files not live", |s| {
        s.dead_bytes
    }),
    ("segments", "Segment files, wal.log included", |s| {
        s.segments
    }),
    (
        "read_only",
        "1 when an I/O failure latched the engine read-only",
        |s| u64::from(s.read_only),
    ),
];

/// Engine totals exported as counters, advanced to the engine's at each scrape.
const ENGINE_COUNTERS: [(&str, &str, StatFn); 3] = [
    ("compactions", "Compactions completed", |s| s.compactions),
    (
        "compaction_reclaimed_bytes",
        "Bytes reclaimed by compaction",
        |s| s.reclaimed_bytes,
    ),
    ("fsyncs", "fsyncs of wal.log", |s| s.fsyncs),
];

#[derive(Debug)]
struct EngineMetrics {
    gauges: Vec<(Gauge, StatFn)>,
    counters: Vec<(Counter, StatFn)>,
}

/// Every metric of one server and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    engine: EngineMetrics,
    // Serializes scrapes: counters are advanced by the difference to the engine's.
    scrape: Mutex<()>,
}

impl Metrics {
    /// Registers every metric; `fsync` is the observer given to the engine, if any.
    pub fn new(fsync: Option<Arc<FsyncObserver>>) -> Metrics {
        let mut registry = Registry::with_prefix("kvstore");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let fsync = fsync.map_or_else(FsyncObserver::default, |f| (*f).clone());
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (until the response head)",
            latency.clone(),
        );
        let engine = EngineMetrics {
            gauges: ENGINE_GAUGES
                .iter()
                .map(|&(name, help, stat)| {
                    let g = Gauge::default();
                    registry.register(name, help, g.clone());
                    (g, stat)
                })
                .collect(),
            counters: ENGINE_COUNTERS
                .iter()
                .map(|&(name, help, stat)| {
                    let c = Counter::default();
                    registry.register(name, help, c.clone());
                    (c, stat)
                })
                .collect(),
        };
        registry.register(
            "fsync_duration_seconds",
            "Time one fsync of wal.log took",
            fsync.seconds.clone(),
        );
        registry.register(
            "fsync_writes",
            "Writes acknowledged by fsyncs (group commit)",
            fsync.writes.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            engine,
            scrape: Mutex::new(()),
        }
    }

    /// Records one answered request.
    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                method: method.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_string(),
                method: method.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition, with engine figures from `stats`.
    pub fn encode(&self, stats: &Stats) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        for (gauge, stat) in &self.engine.gauges {
            gauge.set(i64::try_from(stat(stats)).unwrap_or(i64::MAX));
        }
        for (counter, stat) in &self.engine.counters {
            counter.inc_by(stat(stats).saturating_sub(counter.get()));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
