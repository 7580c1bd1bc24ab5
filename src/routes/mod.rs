//! HTTP routes: health, documents (HTTP and WebSocket), the Hocuspocus socket, admin.

mod admin;
mod doc_path;
mod docs;
mod health;
mod history;
mod hocuspocus;
mod writes;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(health::healthz)
        .service(health::readyz)
        .service(health::metrics)
        .service(docs::get_doc)
        .service(docs::put_doc)
        .service(writes::post_update)
        .service(writes::put_prosemirror)
        .service(history::list_versions)
        .service(history::read_version)
        .service(history::restore)
        .service(docs::ws_json)
        .service(docs::ws_yjs)
        .service(hocuspocus::ws_hocuspocus)
        .service(
            web::scope("/admin")
                .service(admin::dashboard)
                .service(admin::get_breaker)
                .service(admin::post_breaker)
                .service(admin::get_flusher)
                .service(admin::flush_now)
                .service(admin::rooms)
                .service(admin::replicas)
                .service(admin::webhooks)
                .service(admin::versions),
        );
}
