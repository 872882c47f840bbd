//! Response builders: JSON bodies, empty answers and the two error body shapes.

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::response::Response;
use neutrino_types::ApiError;
use serde_json::{json, Value};

use crate::status;

/// A JSON response.
pub fn json(code: u16, body: &Value) -> Response {
    Response::builder()
        .status(status(code))
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap_or_default()))
        .unwrap_or_default()
}

/// A response without a body (204, or 201 for tag creation).
pub fn empty(code: u16) -> Response {
    Response::builder()
        .status(status(code))
        .body(Body::empty())
        .unwrap_or_default()
}

/// Neutron's error body.
pub fn neutron_error(err: &ApiError) -> Response {
    let mut resp = json(
        err.status,
        &json!({"NeutronError": {"type": err.kind, "message": err.message, "detail": ""}}),
    );
    if err.status == 503 {
        // Busy (the database's connections all taken, a storm of agents): say when to retry.
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
    }
    resp
}

/// Keystone's error body.
pub fn keystone_error(err: &ApiError) -> Response {
    let title = match err.status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Request Entity Too Large",
        _ => "Internal Server Error",
    };
    json(
        err.status,
        &json!({"error": {"code": err.status, "message": err.message, "title": title}}),
    )
}
