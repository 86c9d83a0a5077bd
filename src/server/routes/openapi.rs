//! `GET /openapi.json`: the OpenAPI 3.1 description of every route, the
//! repository's `docs/openapi.json` compiled in byte for byte. The server
//! tests check that its paths are exactly the mounted routes
//! ([`super::table`]) and validate the responses they get against its schemas.

use actix_web::HttpResponse;

/// The document, as committed.
pub const DOCUMENT: &str = include_str!("../../../docs/openapi.json");

/// `GET /openapi.json` → the document.
pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT)
}
