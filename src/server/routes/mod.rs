//! One module per resource; each handler extracts, calls the engine and maps
//! the result. [`configure`] mounts them all.

pub mod admin;
pub mod batch;
pub mod kv;
pub mod list;

use actix_web::{HttpRequest, HttpResponse, ResponseError, guard, web};

use super::error::ApiError;

/// Mounts every route of API.md. Unknown paths and wrong methods answer 404
/// and 405 with the API's JSON error body.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/kv")
            .route(web::get().to(list::list))
            .default_service(web::to(method_not_allowed)),
    )
    // Guarded on the resource, not the route: `GET /kv/batch` falls through to
    // the key "batch".
    .service(
        web::resource("/kv/batch")
            .guard(guard::Post())
            .to(batch::apply),
    )
    .service(
        web::resource("/kv/{key:.*}")
            .route(web::get().to(kv::get))
            .route(web::put().to(kv::put))
            .route(web::delete().to(kv::delete))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/stats")
            .route(web::get().to(admin::stats))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/health")
            .route(web::get().to(admin::health))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/metrics")
            .route(web::get().to(admin::metrics))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/admin/compact")
            .route(web::post().to(admin::compact))
            .default_service(web::to(method_not_allowed)),
    )
    .default_service(web::to(no_route));
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.path().to_string(),
    }
    .error_response()
}

async fn no_route(req: HttpRequest) -> HttpResponse {
    ApiError::NoRoute {
        path: req.path().to_string(),
    }
    .error_response()
}
