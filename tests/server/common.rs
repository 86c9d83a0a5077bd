//! A server over a fresh temp data dir with a manual clock, and a tiny client.

use actix_http::Request;
use actix_web::body::BoxBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::Method;
use actix_web::test::{self, TestRequest};
use actix_web::web::Data;
use kvstore::engine::clock::ManualClock;
use kvstore::engine::{Engine, Options, SyncMode};
use kvstore::server::{self, AppState, ServerConfig};
use serde_json::Value;

/// One running app: its service, its state, its clock and data dir.
pub struct Server<S> {
    pub svc: S,
    pub state: Data<AppState>,
    pub clock: ManualClock,
    _dir: tempfile::TempDir,
}

/// What a request got back.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub headers: actix_web::http::header::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The body parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// Asserts an error reply: status, JSON content type, `{"error": <string>}`.
    pub fn assert_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.content_type, "application/json", "{}", self.body);
        let v = self.json();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 1, "only \"error\": {}", self.body);
        obj["error"].as_str().unwrap().to_string()
    }

    /// Asserts a 200 JSON reply with exactly this body.
    pub fn assert_ok(&self, body: &str) {
        assert_eq!(self.status, 200, "body: {}", self.body);
        assert_eq!(self.content_type, "application/json");
        assert_eq!(self.body, body);
    }
}

/// A server with the default config.
pub async fn start()
-> Server<impl Service<Request, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>> {
    start_with(ServerConfig::default()).await
}

/// A server with `config`; the engine does not fsync (tests need speed, not
/// power-loss safety) and its clock only moves when told.
pub async fn start_with(
    config: ServerConfig,
) -> Server<impl Service<Request, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>> {
    start_on(config, Options::default().with_sync(SyncMode::Never)).await
}

/// A server with `config` over an engine opened with `opts` (its clock
/// replaced by a manual one).
pub async fn start_on(
    config: ServerConfig,
    opts: Options,
) -> Server<impl Service<Request, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>> {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let opts = opts.with_clock(std::sync::Arc::new(clock.clone()));
    let (engine, _) = Engine::open(dir.path(), opts).unwrap();
    let state = Data::new(AppState::new(engine, &config));
    let svc = test::init_service(server::app(state.clone())).await;
    Server {
        svc,
        state,
        clock,
        _dir: dir,
    }
}

impl<S> Server<S>
where
    S: Service<Request, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>,
{
    /// Sends `req` and reads the whole reply, checked against docs/openapi.json.
    pub async fn send(&self, req: TestRequest) -> Reply {
        let req = req.to_request();
        let (method, path) = (req.method().clone(), req.path().to_string());
        let res = test::call_service(&self.svc, req).await;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let content_type = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = test::read_body(res).await;
        let reply = Reply {
            status,
            content_type,
            headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        };
        crate::openapi::check(&method, &path, &reply);
        reply
    }

    /// `method path` with a JSON body (no body when empty).
    pub async fn call(&self, method: Method, path: &str, body: &str) -> Reply {
        let mut req = TestRequest::default().method(method).uri(path);
        if !body.is_empty() {
            req = req
                .insert_header(("content-type", "application/json"))
                .set_payload(body.to_string());
        }
        self.send(req).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, "").await
    }

    pub async fn put(&self, path: &str, body: &str) -> Reply {
        self.call(Method::PUT, path, body).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, "").await
    }

    pub async fn post(&self, path: &str, body: &str) -> Reply {
        self.call(Method::POST, path, body).await
    }

    /// PUTs `value` (JSON text) at key path `key` and checks it succeeded.
    pub async fn set(&self, key: &str, value: &str) {
        let r = self
            .put(&format!("/kv/{key}"), &format!("{{\"value\": {value}}}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
}
