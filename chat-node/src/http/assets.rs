//! The browser client, compiled into the binary so a node needs no files at run time.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

const INDEX: &str = include_str!("../../static/index.html");
const APP_JS: &str = include_str!("../../static/app.js");
const STYLE: &str = include_str!("../../static/style.css");

fn asset(body: &'static str, content_type: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(body)
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/",
        web::get().to(|| async { asset(INDEX, "text/html; charset=utf-8") }),
    )
    .route(
        "/static/app.js",
        web::get().to(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
    )
    .route(
        "/static/style.css",
        web::get().to(|| async { asset(STYLE, "text/css; charset=utf-8") }),
    );
}
