//! docs/openapi.json against the app, so the document cannot drift:
//! - its paths and methods are exactly the routes the app mounts
//!   ([`kvstore::server::routes::table`], the table `configure` mounts from);
//! - every reply any server test gets is checked by [`check`] (called from
//!   `common::Server::send`): its status must be documented for its route
//!   (an error status may fall to the route's `default`), its content type listed,
//!   and a JSON body valid against the schema, `$ref`s resolved inside the
//!   document;
//! - `GET /openapi.json` serves the file byte for byte.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use actix_web::http::Method;
use jsonschema::{Draft, Registry, Validator};
use kvstore::server::routes;
use serde_json::Value;

use crate::common::{Reply, start};

/// The document as committed.
const DOC: &str = include_str!("../../docs/openapi.json");
/// The base URI the document is registered under, for `$ref`s into it.
const BASE: &str = "urn:kvstore:openapi";

/// The document's operations, their schemas compiled once per test binary.
struct Contract {
    operations: Vec<Operation>,
    error: Documented,
}

struct Operation {
    path: String,
    method: String,
    /// Status ("200", ..., or "default") → what the document says of it.
    responses: Vec<(String, Documented)>,
}

/// One documented response: its media types and, for JSON, its schema.
struct Documented {
    media: Vec<String>,
    schema: Option<Validator>,
}

fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(load)
}

fn load() -> Contract {
    let doc: Value = serde_json::from_str(DOC).expect("docs/openapi.json is JSON");
    let registry = Registry::new()
        .draft(Draft::Draft202012)
        .add(BASE, doc.clone())
        .unwrap()
        .prepare()
        .unwrap();
    let documented = |pointer: String| -> Documented {
        let mut pointer = pointer;
        let mut response = doc.pointer(&pointer).unwrap();
        if let Some(target) = response.get("$ref").and_then(Value::as_str) {
            pointer = target.strip_prefix('#').unwrap().to_string();
            response = doc
                .pointer(&pointer)
                .unwrap_or_else(|| panic!("dangling $ref {target}"));
        }
        let content = response["content"]
            .as_object()
            .unwrap_or_else(|| panic!("{pointer} has no content"));
        let schema = content.get("application/json").map(|_| {
            let fragment = format!("{pointer}/content/application~1json/schema");
            let root = serde_json::json!({ "$ref": format!("{BASE}#{}", uri_escape(&fragment)) });
            jsonschema::options()
                .with_draft(Draft::Draft202012)
                .with_registry(&registry)
                .build(&root)
                .unwrap_or_else(|e| panic!("schema of {pointer}: {e}"))
        });
        Documented {
            media: content.keys().cloned().collect(),
            schema,
        }
    };
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            let base = format!("/paths/{}/{method}/responses", escape(path));
            let responses = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|status| (status.clone(), documented(format!("{base}/{status}"))))
                .collect();
            operations.push(Operation {
                path: path.clone(),
                method: method.to_uppercase(),
                responses,
            });
        }
    }
    let error = documented("/components/responses/Error".into());
    Contract { operations, error }
}

/// A JSON pointer's escaping of one reference token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// A JSON pointer as a URI fragment: the template braces percent-encoded.
fn uri_escape(pointer: &str) -> String {
    pointer
        .replace('%', "%25")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

/// Whether request path `path` is an instance of template `template`; a
/// `{param}` takes the rest of the path (keys may hold `/`).
fn matches(template: &str, path: &str) -> bool {
    match template.find('{') {
        None => template == path,
        Some(open) => path.starts_with(&template[..open]),
    }
}

impl Contract {
    /// The operation answering `method path`: a literal path before a
    /// template, as the app mounts them.
    fn operation(&self, method: &str, path: &str) -> Option<&Operation> {
        let candidates = self
            .operations
            .iter()
            .filter(|op| op.method == method && matches(&op.path, path));
        candidates.min_by_key(|op| op.path.contains('{'))
    }
}

/// Checks one reply of the app against the document; panics (failing the
/// test that sent the request) when the document does not describe it.
pub fn check(method: &Method, path: &str, reply: &Reply) {
    if method == Method::HEAD {
        // A HEAD has GET's status and headers and no body to validate.
        return;
    }
    let contract = contract();
    let shown: String = reply.body.chars().take(300).collect();
    let what = format!("{method} {path} → {} {shown}", reply.status);
    let documented = match contract.operation(method.as_str(), path) {
        Some(op) => {
            let status = reply.status.to_string();
            op.responses
                .iter()
                .find(|(s, _)| *s == status)
                .or_else(|| {
                    let error = reply.status >= 400;
                    op.responses.iter().find(|(s, _)| error && s == "default")
                })
                .map(|(_, d)| d)
                .unwrap_or_else(|| panic!("undocumented status: {what}"))
        }
        // Unknown routes and wrong methods: the document's error.
        None if reply.status >= 400 => &contract.error,
        None => panic!("a success on a route docs/openapi.json lacks: {what}"),
    };
    let media = reply.content_type.split(';').next().unwrap_or("").trim();
    assert!(
        documented.media.iter().any(|m| m == media),
        "content type {media:?} is not documented ({:?}): {what}",
        documented.media
    );
    if let Some(schema) = &documented.schema {
        let body: Value = match serde_json::from_str(&reply.body) {
            Ok(body) => body,
            // A value nested past serde_json's depth limit (errors.rs stores
            // one on purpose) is valid JSON this check cannot hold.
            Err(e) if e.to_string().starts_with("recursion limit exceeded") => return,
            Err(e) => panic!("body is not JSON ({e}): {what}"),
        };
        let problems: Vec<String> = schema
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            problems.is_empty(),
            "reply does not match docs/openapi.json: {problems:?}: {what}"
        );
    }
}

#[test]
fn the_document_lists_exactly_the_mounted_routes() {
    #[allow(unused_mut, reason = "only the cluster feature adds routes")]
    let mut all = routes::table();
    #[cfg(feature = "cluster")]
    all.extend(routes::cluster_table());
    let mounted: BTreeSet<(String, String)> = all
        .iter()
        .flat_map(|m| {
            let path = m.path();
            m.methods()
                .into_iter()
                .map(move |method| (path.clone(), method.to_string()))
        })
        .collect();
    let documented: BTreeSet<(String, String)> = contract()
        .operations
        .iter()
        .map(|op| (op.path.clone(), op.method.clone()))
        .collect();
    assert_eq!(
        mounted.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "mounted but not in docs/openapi.json"
    );
    assert_eq!(
        documented.difference(&mounted).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "in docs/openapi.json but not mounted"
    );
}

#[actix_web::test]
async fn every_documented_operation_reaches_its_handler() {
    // A route shadowed by an earlier pattern would answer 405 or no-route.
    let s = start().await;
    for op in &contract().operations {
        // Cluster routes are mounted on cluster nodes only (tests/cli/cluster_smoke.rs).
        if op.path.starts_with("/cluster") || op.path.starts_with("/raft/") {
            continue;
        }
        let path = op.path.replace("{key}", "probe");
        let method = Method::from_bytes(op.method.as_bytes()).unwrap();
        let r = s.call(method, &path, "{}").await;
        assert_ne!(r.status, 405, "{} {path}: {}", op.method, r.body);
        assert!(
            !r.body.contains("no route"),
            "{} {path}: {}",
            op.method,
            r.body
        );
    }
}

#[test]
fn the_document_is_openapi_3_1_with_an_error_default_on_every_operation() {
    let doc: Value = serde_json::from_str(DOC).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    for op in &contract().operations {
        assert!(
            op.responses.iter().any(|(s, _)| s == "default"),
            "{} {} has no default (error) response",
            op.method,
            op.path
        );
        assert!(
            op.responses.iter().any(|(s, _)| s.starts_with('2')),
            "{} {} documents no success",
            op.method,
            op.path
        );
    }
}

#[test]
fn a_reply_that_breaks_the_schema_is_caught() {
    let reply = |status: u16, body: &str| Reply {
        status,
        content_type: "application/json".into(),
        headers: Default::default(),
        body: body.into(),
    };
    check(
        &Method::GET,
        "/kv/a",
        &reply(200, r#"{"key":"a","value":1}"#),
    );
    let caught = |status: u16, body: &'static str| {
        std::panic::catch_unwind(|| check(&Method::GET, "/kv/a", &reply(status, body))).is_err()
    };
    assert!(caught(200, r#"{"key":"a"}"#), "a missing value");
    assert!(
        caught(200, r#"{"key":"a","value":1,"extra":2}"#),
        "an extra field"
    );
    assert!(
        caught(404, r#"{"message":"key not found"}"#),
        "a non-house error"
    );
    assert!(
        caught(201, r#"{"key":"a","value":1}"#),
        "a status the route lacks"
    );
}

#[actix_web::test]
async fn get_openapi_json_serves_the_document_byte_for_byte() {
    let s = start().await;
    s.get("/openapi.json").await.assert_ok(DOC);
}
