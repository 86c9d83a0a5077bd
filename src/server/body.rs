//! Request bodies in, response bodies out.
//!
//! - [`JsonBody`]: the extractor every body-taking handler uses. It refuses a
//!   present non-JSON `Content-Type` (415; an absent one is accepted, as
//!   clients of the original specification send JSON without it), refuses a
//!   body over the configured limit (413) before and while reading it, and
//!   checks the body is UTF-8. Parsing into a shape is the handler's. The
//!   body is read under the deadlines and the budget of [`super::intake`].
//! - [`Out`]: response bodies written by splicing stored value bytes between
//!   escaped keys, so a value is never parsed or re-serialized.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::{Bytes, Data};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::{ApiError, BodyProblem};
use super::intake::Held;
use super::state::AppState;

/// A request body that is allowed to be parsed as JSON: within the size limit,
/// UTF-8, and sent as JSON (or with no content type). It holds its share of
/// the in-flight body budget ([`super::intake`]) until dropped.
#[derive(Debug)]
pub struct JsonBody {
    bytes: Bytes,
    _budget: Held,
}

impl JsonBody {
    /// The body as text.
    pub fn text(&self) -> Result<&str, ApiError> {
        std::str::from_utf8(&self.bytes).map_err(|e| ApiError::InvalidJson(e.to_string()))
    }
}

impl FromRequest for JsonBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<JsonBody, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let state = req.app_data::<Data<AppState>>().cloned();
        let limit = state.as_ref().map_or(16 << 20, |s| s.limits.max_body_bytes);
        let checked = check_headers(req, limit);
        let payload = payload.take();
        Box::pin(async move {
            let declared = checked?;
            let state = state.ok_or_else(|| ApiError::Internal("no server state".into()))?;
            let (bytes, held) = state.intake.read(payload, limit, declared).await?;
            Ok(JsonBody {
                bytes,
                _budget: held,
            })
        })
    }
}

/// Checks the content type and the declared length; returns the declared
/// length (within `limit`) when there is one.
fn check_headers(req: &HttpRequest, limit: usize) -> Result<Option<usize>, ApiError> {
    if req.headers().contains_key(header::CONTENT_TYPE) {
        let shown = || {
            req.headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_string()
        };
        match req.mime_type() {
            Ok(Some(m))
                if m.type_() == "application"
                    && (m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json")) => {}
            _ => return Err(ApiError::UnsupportedMediaType(shown())),
        }
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => Err(ApiError::BodyTooLarge { limit }),
        // Within the limit, so within usize.
        Some(n) => Ok(usize::try_from(n).ok()),
        None => Ok(None),
    }
}

/// Parses `text` as a JSON object into `T`: invalid JSON → `InvalidJson`,
/// valid JSON that is not an object (serde would read an array as a struct)
/// or an object of the wrong shape → `not_object` / `InvalidJson`.
pub fn parse_object<'a, T: Deserialize<'a>>(
    text: &'a str,
    not_object: BodyProblem,
) -> Result<T, ApiError> {
    let raw: &RawValue =
        serde_json::from_str(text).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    if !raw.get().starts_with('{') {
        return Err(ApiError::InvalidBody(not_object));
    }
    serde_json::from_str(raw.get()).map_err(|e| ApiError::InvalidJson(e.to_string()))
}

/// Deserializes a field that may be present as `null` as `Some("null")`, so
/// "absent" and "null" stay distinct.
pub fn present<'de, D>(d: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <&RawValue>::deserialize(d).map(Some)
}

/// A `ttl` that is not a number (nor `null`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ttl must be a number of seconds or null")]
pub struct BadTtl;

/// A `ttl` field: `None` for absent or `null`, else the seconds.
pub fn ttl_seconds(raw: Option<&RawValue>) -> Result<Option<f64>, BadTtl> {
    match raw.map(RawValue::get) {
        None | Some("null") => Ok(None),
        Some(text) => match serde_json::from_str::<serde_json::Number>(text) {
            Ok(n) => n.as_f64().map(Some).ok_or(BadTtl),
            Err(_) => Err(BadTtl),
        },
    }
}

/// A JSON response body being written.
#[derive(Debug, Default)]
pub struct Out(Vec<u8>);

impl Out {
    /// An empty body with room for `cap` bytes.
    pub fn with_capacity(cap: usize) -> Out {
        Out(Vec::with_capacity(cap))
    }

    /// Appends JSON text verbatim (punctuation or a stored value).
    pub fn raw(&mut self, json: &[u8]) -> &mut Out {
        self.0.extend_from_slice(json);
        self
    }

    /// Appends `s` as an escaped JSON string.
    pub fn string(&mut self, s: &str) -> &mut Out {
        // Writing a &str to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.0, s);
        self
    }

    /// Appends key bytes as a JSON string (lossy for the non-UTF-8 keys only an
    /// embedding program can have stored).
    pub fn key(&mut self, key: &[u8]) -> &mut Out {
        self.string(&String::from_utf8_lossy(key))
    }

    /// `{"key": <key>, "value": <value>}`.
    pub fn key_value(&mut self, key: &[u8], value: &[u8]) -> &mut Out {
        self.raw(b"{\"key\":")
            .key(key)
            .raw(b",\"value\":")
            .raw(value)
            .raw(b"}")
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// A 200 response with this body.
    pub fn ok(self) -> HttpResponse {
        HttpResponse::Ok()
            .content_type("application/json")
            .body(self.0)
    }

    /// A 201 response with this body.
    pub fn created(self) -> HttpResponse {
        HttpResponse::Created()
            .content_type("application/json")
            .body(self.0)
    }
}
