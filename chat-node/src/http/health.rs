//! Liveness, readiness and metrics.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Answers from what the background check last found (see `server::run_readiness`), so
/// a probe never waits on MySQL or Redis, nor adds load to them.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.is_draining() {
        return HttpResponse::ServiceUnavailable().json(json!({"status": "draining"}));
    }
    let (db_ok, redis_ok) = state.readiness.get();
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
