//! Prometheus metrics. Names follow Prometheus conventions (`chat_` prefix, base units,
//! `_total` counters); Prometheus adds the pod label, so there is no node label.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use crate::storage::writer::WriterMetrics;

/// 1 ms to 5 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Powers of two up to the largest batch the flag allows.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub ws_connections: IntGauge,
    pub connected_users: IntGauge,
    pub draining: IntGauge,
    pub messages_received: IntCounter,
    pub messages_stored: IntCounter,
    pub messages_published: IntCounter,
    pub messages_delivered: IntCounter,
    pub fanout_latency: Histogram,
    pub db_write: Histogram,
    pub writer_batch_size: Histogram,
    pub redis_publish: Histogram,
    pub client_errors: IntCounterVec,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub presence_changes: IntCounterVec,
    pub db_pool_size: IntGauge,
    pub db_pool_available: IntGauge,
    pub db_pool_waiting: IntGauge,
    pub redis_pool_size: IntGauge,
    pub redis_pool_available: IntGauge,
    pub redis_pool_waiting: IntGauge,
    pub db_pool_wait: Histogram,
    pub redis_pool_wait: Histogram,
    pub ws_frames_refused: IntCounterVec,
    pub ws_forced_closes: IntCounterVec,
    pub ws_admission_refused: IntCounter,
}

#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

fn histogram(registry: &Registry, name: &str, help: &str) -> Result<Histogram, MetricsError> {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()))?;
    registry.register(Box::new(h.clone()))?;
    Ok(h)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, MetricsError> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    pub fn new() -> Result<Self, MetricsError> {
        let r = Registry::new();
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "chat_http_request_duration_seconds",
                "HTTP request duration by route",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        r.register(Box::new(http_duration.clone()))?;
        Ok(Self {
            ws_connections: gauge(&r, "chat_ws_connections", "Open WebSocket connections")?,
            connected_users: gauge(
                &r,
                "chat_connected_users",
                "Users with a connection on this node",
            )?,
            draining: gauge(&r, "chat_draining", "1 while the node drains after SIGTERM")?,
            messages_received: counter(
                &r,
                "chat_messages_received_total",
                "chatMessage frames received",
            )?,
            messages_stored: counter(
                &r,
                "chat_messages_stored_total",
                "Messages written to MySQL",
            )?,
            messages_published: counter(
                &r,
                "chat_messages_published_total",
                "Messages published to Redis",
            )?,
            messages_delivered: counter(
                &r,
                "chat_messages_delivered_total",
                "Messages written to local sockets",
            )?,
            fanout_latency: histogram(
                &r,
                "chat_fanout_latency_seconds",
                "From stored in MySQL to handed to a local socket",
            )?,
            db_write: histogram(
                &r,
                "chat_db_write_seconds",
                "One write batch: its MySQL transaction from BEGIN to COMMIT",
            )?,
            writer_batch_size: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "chat_writer_batch_size",
                        "Messages committed together in one write batch",
                    )
                    .buckets(BATCH_BUCKETS.to_vec()),
                )?;
                r.register(Box::new(h.clone()))?;
                h
            },
            redis_publish: histogram(
                &r,
                "chat_redis_publish_seconds",
                "Redis PUBLISH of one event, or the pipeline of one write batch",
            )?,
            client_errors: counter_vec(
                &r,
                "chat_client_errors_total",
                "Errors sent to clients, by code",
                &["code"],
            )?,
            http_requests: counter_vec(
                &r,
                "chat_http_requests_total",
                "HTTP requests by route and status",
                &["route", "status"],
            )?,
            http_duration,
            presence_changes: counter_vec(
                &r,
                "chat_presence_changes_total",
                "Users this node saw come online or go offline",
                &["state"],
            )?,
            db_pool_size: gauge(&r, "chat_db_pool_size", "MySQL pool connections")?,
            db_pool_available: gauge(&r, "chat_db_pool_available", "Idle MySQL pool connections")?,
            db_pool_waiting: gauge(
                &r,
                "chat_db_pool_waiting",
                "Tasks waiting for a MySQL connection",
            )?,
            redis_pool_size: gauge(&r, "chat_redis_pool_size", "Redis pool connections")?,
            redis_pool_available: gauge(
                &r,
                "chat_redis_pool_available",
                "Idle Redis pool connections",
            )?,
            redis_pool_waiting: gauge(
                &r,
                "chat_redis_pool_waiting",
                "Tasks waiting for a Redis connection",
            )?,
            db_pool_wait: histogram(
                &r,
                "chat_db_pool_wait_seconds",
                "Wait for a MySQL pool connection",
            )?,
            redis_pool_wait: histogram(
                &r,
                "chat_redis_pool_wait_seconds",
                "Wait for a Redis pool connection",
            )?,
            ws_frames_refused: counter_vec(
                &r,
                "chat_ws_frames_refused_total",
                "Client frames dropped over a rate limit, by limit: rate or history_rate",
                &["reason"],
            )?,
            ws_forced_closes: counter_vec(
                &r,
                "chat_ws_forced_closes_total",
                "Sockets closed with 1008 for what they cost: slow_reader, stalled or flooding",
                &["reason"],
            )?,
            ws_admission_refused: counter(
                &r,
                "chat_ws_admission_refused_total",
                "WebSocket upgrades refused with 503 by admission: over the rate, or too many set-ups at once",
            )?,
            registry: r,
        })
    }

    pub fn writer(&self) -> WriterMetrics {
        WriterMetrics {
            batch_size: self.writer_batch_size.clone(),
            batch_seconds: self.db_write.clone(),
        }
    }

    pub fn presence_changed(&self, online: bool) {
        let state = if online { "online" } else { "offline" };
        self.presence_changes.with_label_values(&[state]).inc();
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let families = self.registry.gather();
        if TextEncoder::new().encode(&families, &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
