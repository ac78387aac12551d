//! `ApiError`: every failure a handler can answer with, and the one place
//! that maps it to a status code and the JSON body `{ "error", "hint" }`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::db::DbError;

#[derive(Debug)]
pub enum ApiError {
    /// The request cannot be read: bad JSON, a malformed id or parameter.
    BadRequest { error: String, hint: &'static str },
    /// Well-formed but not acceptable: a negative price, an unknown field.
    Unprocessable { error: String, hint: &'static str },
    /// No such product; `layer` says who knew (for `X-Cache`).
    NotFound { id: i64, layer: &'static str },
    /// The database failed; the cache could not answer either.
    Database(DbError),
}

impl ApiError {
    pub fn bad_request(error: impl Into<String>, hint: &'static str) -> Self {
        ApiError::BadRequest {
            error: error.into(),
            hint,
        }
    }

    pub fn unprocessable(error: impl Into<String>, hint: &'static str) -> Self {
        ApiError::Unprocessable {
            error: error.into(),
            hint,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        ApiError::Database(error)
    }
}

#[derive(serde::Serialize)]
struct ErrorBody {
    error: String,
    hint: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (error, hint, layer) = match self {
            ApiError::BadRequest { error, hint } | ApiError::Unprocessable { error, hint } => {
                (error, hint.to_string(), None)
            }
            ApiError::NotFound { id, layer } => (
                format!("no product with id {id}"),
                "GET /products lists the ids that exist".to_string(),
                Some(layer),
            ),
            ApiError::Database(error) => (
                format!("the database did not answer: {error}"),
                "check GET /healthz; the service retries on the next request".to_string(),
                None,
            ),
        };
        let mut response = (status, Json(ErrorBody { error, hint })).into_response();
        if let Some(layer) = layer {
            response
                .headers_mut()
                .insert("x-cache", HeaderValue::from_static(layer));
        }
        response
    }
}

/// Fallback for paths the service does not have.
pub async fn no_route() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(ErrorBody {
            error: "no such endpoint".into(),
            hint: "endpoints: GET / (the dashboard), GET /events, GET /products/{id}, GET /products, PUT /products/{id}, GET /stats, GET /metrics, GET /healthz"
                .into(),
        }),
    )
        .into_response()
}
