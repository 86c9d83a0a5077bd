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

use std::sync::OnceLock;

use actix_web::dev::ResourceDef;
use actix_web::http::{Method, header};
use actix_web::{
    FromRequest, Handler, HttpRequest, HttpResponse, Resource, Responder, ResponseError, Route,
    guard, web,
};

use super::error::ApiError;

/// One mounted path: its pattern as actix matches it and its handlers.
/// A path with `GET` also answers `HEAD` with the same handler (actix's
/// HTTP/1 encoder then sends the head of the `GET` response and no body);
/// `HEAD` is not listed in [`Mount::methods`], as OpenAPI leaves it implied.
pub struct Mount {
    pattern: &'static str,
    routes: Vec<(Method, Route)>,
    head: Option<Route>,
    falls_through: bool,
}

impl Mount {
    fn new(pattern: &'static str) -> Mount {
        Mount {
            pattern,
            routes: Vec::new(),
            head: None,
            falls_through: false,
        }
    }

    fn on<F, Args>(mut self, method: Method, handler: F) -> Mount
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        if method == Method::GET {
            self.head = Some(web::route().method(Method::HEAD).to(handler.clone()));
        }
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

    /// The methods this path answers, `HEAD` included where `GET` is.
    pub fn allowed(&self) -> Vec<Method> {
        let mut methods = self.methods();
        if self.head.is_some() {
            methods.push(Method::HEAD);
        }
        methods
    }

    fn into_resource(self) -> Resource {
        let mut resource = web::resource(self.pattern);
        if self.falls_through {
            let methods = self.allowed();
            resource = resource.guard(guard::fn_guard(move |ctx| {
                methods.contains(&ctx.head().method)
            }));
        } else {
            resource = resource.default_service(web::to(method_not_allowed));
        }
        for (_, route) in self.routes {
            resource = resource.route(route);
        }
        if let Some(head) = self.head {
            resource = resource.route(head);
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
        Mount::new("/admin/backup").on(M::POST, admin::backup),
        Mount::new("/openapi.json").on(M::GET, openapi::document),
    ]
}

/// The routes a cluster node mounts besides [`table`]: its view of the
/// cluster, membership changes and the Raft RPCs peers send.
#[cfg(feature = "cluster")]
pub fn cluster_table() -> Vec<Mount> {
    use crate::cluster::routes as c;
    use Method as M;
    vec![
        Mount::new("/cluster").on(M::GET, c::status),
        Mount::new("/cluster/members").on(M::POST, c::add_member),
        Mount::new("/cluster/members/{id}").on(M::DELETE, c::remove_member),
        Mount::new("/raft/append").on(M::POST, c::append),
        Mount::new("/raft/vote").on(M::POST, c::vote),
        Mount::new("/raft/snapshot").on(M::POST, c::snapshot),
    ]
}

/// Mounts [`cluster_table`] (before [`configure`]).
#[cfg(feature = "cluster")]
pub fn configure_cluster(cfg: &mut web::ServiceConfig) {
    for mount in cluster_table() {
        cfg.service(mount.into_resource());
    }
}

/// Mounts every route of `docs/API.md`. Unknown paths and wrong methods
/// answer 404 and 405 with the API's JSON error body.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for mount in table() {
        cfg.service(mount.into_resource());
    }
    cfg.default_service(web::to(no_route));
}

/// 405, with `Allow` naming every method some mounted pattern matching the
/// path answers (`/kv/batch` takes `POST` itself and the rest as a key).
async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let mut res = ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.path().to_string(),
    }
    .error_response();
    if let Ok(value) = header::HeaderValue::from_str(&allow(req.path())) {
        res.headers_mut().insert(header::ALLOW, value);
    }
    res
}

/// The `Allow` value for `path`: methods of every pattern matching it, in
/// table order.
pub fn allow(path: &str) -> String {
    static PATTERNS: OnceLock<Vec<(ResourceDef, Vec<Method>)>> = OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        table()
            .iter()
            .map(|m| (ResourceDef::new(m.pattern), m.allowed()))
            .collect()
    });
    let mut methods: Vec<&Method> = Vec::new();
    for (def, allowed) in patterns {
        if def.is_match(path) {
            for m in allowed {
                if !methods.contains(&m) {
                    methods.push(m);
                }
            }
        }
    }
    methods
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

async fn no_route(req: HttpRequest) -> HttpResponse {
    ApiError::NoRoute {
        path: req.path().to_string(),
    }
    .error_response()
}
