//! The browser client, compiled into the binary so a node needs no files at run time.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use super::resource;

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
    const ASSETS: [(&str, &str, &str); 3] = [
        ("/", INDEX, "text/html; charset=utf-8"),
        ("/static/app.js", APP_JS, "text/javascript; charset=utf-8"),
        ("/static/style.css", STYLE, "text/css; charset=utf-8"),
    ];
    for (path, body, content_type) in ASSETS {
        cfg.service(
            resource(path).route(web::get().to(move || async move { asset(body, content_type) })),
        );
    }
}
