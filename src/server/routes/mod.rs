//! One module per resource; each handler extracts, calls the engine and maps
//! the result. [`configure`] mounts them all from one table, [`table`], which
//! is also what the tests compare with `docs/openapi.json`: a route cannot be
//! mounted without being listed, so the document cannot miss one.
//!
//! Three API shapes share the same keys and the same helpers ([`kv`]): the
//! current path-keyed `/kv/{key}`, and the two older ones clients migrate from,
//! [`store`] (`/store`) and [`body_kv`] (`PUT`/`DELETE /kv`, `GET /kv?key=`).

pub mod admin;
pub mod batch;
pub mod body_kv;
pub mod kv;
pub mod list;
pub mod openapi;
pub mod store;

use actix_web::http::Method;
use actix_web::{
    FromRequest, Handler, HttpRequest, HttpResponse, Resource, Responder, ResponseError, Route,
    guard, web,
};

use super::error::ApiError;

/// One mounted path: its pattern as actix matches it and its handlers.
pub struct Mount {
    pattern: &'static str,
    routes: Vec<(Method, Route)>,
    falls_through: bool,
}

impl Mount {
    fn new(pattern: &'static str) -> Mount {
        Mount {
            pattern,
            routes: Vec::new(),
            falls_through: false,
        }
    }

    fn on<F, Args>(mut self, method: Method, handler: F) -> Mount
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let route = web::route().method(method.clone()).to(handler);
        self.routes.push((method, route));
        self
    }

    /// Requests with another method go on to the next matching pattern
    /// instead of answering 405 (`GET /kv/batch` is the key "batch").
    fn falling_through(mut self) -> Mount {
        self.falls_through = true;
        self
    }

    /// The path as OpenAPI writes it: `{key:.*}` becomes `{key}`.
    pub fn path(&self) -> String {
        let mut out = String::with_capacity(self.pattern.len());
        let mut rest = self.pattern;
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
            let param = &rest[open + 1..close];
            out.push_str(&rest[..open]);
            out.push('{');
            out.push_str(param.split_once(':').map_or(param, |(name, _)| name));
            out.push('}');
            rest = rest.get(close + 1..).unwrap_or("");
        }
        out.push_str(rest);
        out
    }

    /// The methods this path answers.
    pub fn methods(&self) -> Vec<Method> {
        self.routes.iter().map(|(m, _)| m.clone()).collect()
    }

    fn into_resource(self) -> Resource {
        let mut resource = web::resource(self.pattern);
        if self.falls_through {
            let methods = self.methods();
            resource = resource.guard(guard::fn_guard(move |ctx| {
                methods.contains(&ctx.head().method)
            }));
        } else {
            resource = resource.default_service(web::to(method_not_allowed));
        }
        for (_, route) in self.routes {
            resource = resource.route(route);
        }
        resource
    }
}

/// Every route, in matching order (a literal path before a pattern that
/// would also match it).
pub fn table() -> Vec<Mount> {
    use Method as M;
    vec![
        Mount::new("/kv")
            .on(M::GET, body_kv::get)
            .on(M::PUT, body_kv::put)
            .on(M::DELETE, body_kv::delete),
        Mount::new("/kv/batch")
            .on(M::POST, batch::apply)
            .falling_through(),
        Mount::new("/kv/{key:.*}")
            .on(M::GET, kv::get)
            .on(M::PUT, kv::put)
            .on(M::DELETE, kv::delete),
        Mount::new("/store")
            .on(M::GET, store::get)
            .on(M::POST, store::create)
            .on(M::PUT, store::update)
            .on(M::DELETE, store::delete),
        Mount::new("/stats").on(M::GET, admin::stats),
        Mount::new("/health").on(M::GET, admin::health),
        Mount::new("/metrics").on(M::GET, admin::metrics),
        Mount::new("/admin/compact").on(M::POST, admin::compact),
        Mount::new("/openapi.json").on(M::GET, openapi::document),
    ]
}

/// Mounts every route of `docs/API.md`. Unknown paths and wrong methods
/// answer 404 and 405 with the API's JSON error body.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for mount in table() {
        cfg.service(mount.into_resource());
    }
    cfg.default_service(web::to(no_route));
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
