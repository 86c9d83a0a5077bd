//! The server's one error type and its one table from error to HTTP status.
//!
//! Every error a client can see is an [`ApiError`]; its `Display` is the
//! sentence sent as `{"error": "<message>"}`. Handlers return it, the body
//! extractor returns it, and the fallback middleware ([`super::middleware`])
//! turns actix's own bare error responses (404, 405, ...) into the same body.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};

use crate::engine;

/// What is wrong with a key taken from a path or a batch operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// Zero bytes.
    #[error("key must not be empty")]
    Empty,
    /// Longer than the configured limit.
    #[error("key is {len} bytes; the limit is {max}")]
    TooLong {
        /// Bytes in the key.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// Percent-decoded bytes that are not UTF-8.
    #[error("key must be UTF-8")]
    NotUtf8,
    /// A batch operation's key that is not a JSON string.
    #[error("key must be a string")]
    NotString,
}

/// What is wrong with one operation of a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpProblem {
    /// The operation is not a JSON object.
    #[error("must be an object like {{\"op\": \"set\", \"key\": \"k\", \"value\": 1}}")]
    NotObject,
    /// No `op` field.
    #[error("missing \"op\" (set, get or delete)")]
    MissingOp,
    /// An `op` other than set, get, delete.
    #[error("unknown op {0} (expected \"set\", \"get\" or \"delete\")")]
    UnknownOp(String),
    /// No `key` field.
    #[error("missing \"key\"")]
    MissingKey,
    /// A bad key.
    #[error("{0}")]
    Key(KeyProblem),
    /// A `set` without `value`.
    #[error("set needs a \"value\"")]
    MissingValue,
    /// A `ttl` that is not a number.
    #[error("ttl must be a number of seconds or null")]
    BadTtl,
    /// The same field twice, or another shape error.
    #[error("{0}")]
    Malformed(String),
}

/// What is wrong with a request body that is valid JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyProblem {
    /// A PUT body that is not an object.
    #[error("body must be a JSON object like {{\"value\": <any JSON>, \"ttl\": <seconds>}}")]
    PutNotObject,
    /// A PUT body without `value`.
    #[error("body must have a \"value\" field")]
    MissingValue,
    /// A PUT `ttl` that is not a number.
    #[error("ttl must be a number of seconds or null")]
    BadTtl,
    /// A batch body that is not an object.
    #[error("body must be a JSON object like {{\"operations\": [...]}}")]
    BatchNotObject,
    /// A batch whose `operations` is missing or not an array.
    #[error("operations must be an array of operations")]
    OperationsNotArray,
    /// A body-keyed write (`/store`, `PUT /kv`) that is not an object.
    #[error(
        "body must be a JSON object like {{\"key\": \"k\", \"value\": <any JSON>, \"ttl\": <seconds>}}"
    )]
    KeyedNotObject,
    /// A `DELETE /kv` body that is not an object.
    #[error("body must be a JSON object like {{\"key\": \"k\"}}")]
    DeleteNotObject,
    /// A body-keyed request without `key`.
    #[error("body must have a \"key\" field")]
    MissingKey,
}

/// Every error the HTTP API answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The key is absent, deleted or expired.
    #[error("key not found")]
    KeyNotFound,
    /// `POST /store` of a key that has a live value; nothing changed.
    #[error("key already exists")]
    KeyExists,
    /// No route has this path.
    #[error("not found: no route for {path}")]
    NoRoute {
        /// The request path.
        path: String,
    },
    /// The path exists but not with this method.
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// The key in the path is unusable.
    #[error("invalid key: {0}")]
    InvalidKey(KeyProblem),
    /// The body is not valid JSON (or not UTF-8).
    #[error("invalid JSON body: {0}")]
    InvalidJson(String),
    /// The body is JSON of the wrong shape.
    #[error("{0}")]
    InvalidBody(BodyProblem),
    /// A query parameter is unusable.
    #[error("invalid query parameter {name}: {reason}")]
    InvalidQuery {
        /// The parameter.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// A required query parameter is absent.
    #[error("missing query parameter {name}: send {example}")]
    MissingQuery {
        /// The parameter.
        name: &'static str,
        /// A request that has it.
        example: &'static str,
    },
    /// One operation of a batch is invalid; nothing was applied.
    #[error("operation {index}: {problem}")]
    InvalidOperation {
        /// Index of the operation in `operations`.
        index: usize,
        /// What is wrong with it.
        problem: OpProblem,
    },
    /// The body is larger than the configured limit.
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The batch has more operations than the configured limit.
    #[error("batch has {count} operations; the limit is {max}")]
    TooManyOperations {
        /// Operations sent.
        count: usize,
        /// The configured limit.
        max: usize,
    },
    /// The body has a content type other than JSON.
    #[error("unsupported content type {0:?}: send application/json")]
    UnsupportedMediaType(String),
    /// Auth is on and the bearer token is missing or wrong.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// The engine refused or failed.
    #[error("{0}")]
    Engine(#[from] engine::Error),
    /// A failure outside the engine (a blocking task that died, ...).
    #[error("internal error: {0}")]
    Internal(String),
    /// An error status actix produced on its own, kept with its status.
    #[error("{reason}")]
    Http {
        /// The status actix chose.
        status: StatusCode,
        /// Its canonical reason.
        reason: String,
    },
}

impl ApiError {
    /// The one table from error to status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::KeyNotFound | ApiError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::KeyExists => StatusCode::CONFLICT,
            ApiError::InvalidKey(_)
            | ApiError::InvalidJson(_)
            | ApiError::InvalidBody(_)
            | ApiError::InvalidQuery { .. }
            | ApiError::MissingQuery { .. }
            | ApiError::InvalidOperation { .. } => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge { .. } | ApiError::TooManyOperations { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Engine(e) => engine_status(e),
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Http { status, .. } => *status,
        }
    }
}

/// Engine errors: caller input → 400 (too large → 413), closed or read-only →
/// 503, anything else → 500.
fn engine_status(e: &engine::Error) -> StatusCode {
    use engine::Error as E;
    match e {
        E::ValueTooLarge { .. } | E::BatchTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        e if e.is_invalid_input() => StatusCode::BAD_REQUEST,
        E::ReadOnly { .. } | E::Closed => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %self, "request failed");
        }
        let body = serde_json::json!({ "error": self.to_string() }).to_string();
        let mut res = HttpResponse::build(status);
        res.insert_header((header::CONTENT_TYPE, "application/json"));
        if matches!(self, ApiError::Unauthorized) {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        res.body(body)
    }
}
