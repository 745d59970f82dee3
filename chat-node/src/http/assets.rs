//! The browser client, compiled into the binary so a node needs no files at run time.
//! `static/protocol.js` and `static/jsconfig.json` are for editors only: no module imports
//! them at run time, so they are not served.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use super::resource;

const JS: &str = "text/javascript; charset=utf-8";

/// `("/static/<name>", contents, content type)`, with the contents compiled in.
macro_rules! static_file {
    ($name:literal, $content_type:expr) => {
        (
            concat!("/static/", $name),
            include_str!(concat!("../../static/", $name)),
            $content_type,
        )
    };
}

/// Every file the client loads: each JS file is an ES module that `app.js` imports,
/// directly or through another module.
const ASSETS: [(&str, &str, &str); 10] = [
    (
        "/",
        include_str!("../../static/index.html"),
        "text/html; charset=utf-8",
    ),
    static_file!("style.css", "text/css; charset=utf-8"),
    static_file!("app.js", JS),
    static_file!("api.js", JS),
    static_file!("chat.js", JS),
    static_file!("input.js", JS),
    static_file!("render.js", JS),
    static_file!("session.js", JS),
    static_file!("socket.js", JS),
    static_file!("state.js", JS),
];

fn asset(body: &'static str, content_type: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    for (path, body, content_type) in ASSETS {
        cfg.service(
            resource(path).route(web::get().to(move || async move { asset(body, content_type) })),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::ASSETS;

    /// A module the browser cannot fetch breaks the whole client, and only at run time.
    #[test]
    fn every_imported_module_is_served() {
        let mut imports = 0;
        for (path, body, _) in ASSETS.iter().filter(|(path, ..)| path.ends_with(".js")) {
            for rest in body.split(" from \"./").skip(1) {
                let module = rest.split('"').next().unwrap_or_default();
                let wanted = format!("/static/{module}");
                assert!(
                    ASSETS.iter().any(|(served, ..)| *served == wanted),
                    "{path} imports {wanted}, which is not served"
                );
                imports += 1;
            }
        }
        assert!(
            imports > 0,
            "no imports found: the check no longer reads them"
        );
    }
}
