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

#[derive(Debug, Default)]
struct EngineGauges {
    keys: Gauge,
    live_bytes: Gauge,
    disk_bytes: Gauge,
    dead_bytes: Gauge,
    segments: Gauge,
    read_only: Gauge,
    compactions: Counter,
    reclaimed_bytes: Counter,
    fsyncs: Counter,
}

/// Every metric of one server and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    engine: EngineGauges,
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
        let engine = EngineGauges::default();
        let fsync = fsync.map_or_else(FsyncObserver::default, |f| (*f).clone());
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (until the response head)",
            latency.clone(),
        );
        registry.register("keys", "Live keys", engine.keys.clone());
        registry.register(
            "live_bytes",
            "Bytes of live values",
            engine.live_bytes.clone(),
        );
        registry.register(
            "disk_bytes",
            "Bytes of segment files",
            engine.disk_bytes.clone(),
        );
        registry.register(
            "dead_bytes",
            "Bytes of segment files not live",
            engine.dead_bytes.clone(),
        );
        registry.register(
            "segments",
            "Segment files, wal.log included",
            engine.segments.clone(),
        );
        registry.register(
            "read_only",
            "1 when an I/O failure latched the engine read-only",
            engine.read_only.clone(),
        );
        registry.register(
            "compactions",
            "Compactions completed",
            engine.compactions.clone(),
        );
        registry.register(
            "compaction_reclaimed_bytes",
            "Bytes reclaimed by compaction",
            engine.reclaimed_bytes.clone(),
        );
        registry.register("fsyncs", "fsyncs of wal.log", engine.fsyncs.clone());
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
        let g = &self.engine;
        let set = |gauge: &Gauge, v: u64| {
            gauge.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&g.keys, stats.live_keys);
        set(&g.live_bytes, stats.live_value_bytes);
        set(&g.disk_bytes, stats.disk_bytes);
        set(&g.dead_bytes, stats.dead_bytes);
        set(&g.segments, stats.segments);
        set(&g.read_only, u64::from(stats.read_only));
        let advance = |c: &Counter, to: u64| {
            c.inc_by(to.saturating_sub(c.get()));
        };
        advance(&g.compactions, stats.compactions);
        advance(&g.reclaimed_bytes, stats.reclaimed_bytes);
        advance(&g.fsyncs, stats.fsyncs);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
