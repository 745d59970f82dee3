//! Liveness, readiness and metrics.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

/// Readiness must answer before the kubelet's probe times out.
const CHECK_TIMEOUT: Duration = Duration::from_millis(800);

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.is_draining() {
        return HttpResponse::ServiceUnavailable().json(json!({"status": "draining"}));
    }
    let (db, redis) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, state.db.ping()),
        tokio::time::timeout(CHECK_TIMEOUT, state.redis.ping()),
    );
    let db_ok = matches!(db, Ok(Ok(())));
    let redis_ok = matches!(redis, Ok(Ok(())));
    let body = json!({"mysql": db_ok, "redis": redis_ok});
    if db_ok && redis_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let m = &state.metrics;
    let db = state.db.status();
    m.db_pool_size.set(db.size as i64);
    m.db_pool_available.set(db.available as i64);
    m.db_pool_waiting.set(db.waiting as i64);
    let redis = state.redis.pool().status();
    m.redis_pool_size.set(redis.size as i64);
    m.redis_pool_available.set(redis.available as i64);
    m.redis_pool_waiting.set(redis.waiting as i64);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(m.render())
}
