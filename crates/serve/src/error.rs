//! Errors as the OpenAI API writes them: a status and `{"error": {"message", "type", "param", "code"}}`.

use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A request that cannot be served: what the client sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status: 4xx for the client's mistakes, 5xx for the server's.
    pub status: StatusCode,
    /// One sentence that names the input at fault.
    pub message: String,
    /// The request field at fault, where there is one (`temperature`, `model`, `body`).
    pub param: Option<String>,
}

impl ApiError {
    /// A 400 about `param`.
    pub fn invalid(param: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: Some(param.to_string()),
        }
    }

    /// A 404 for a model that is not loaded.
    pub fn unknown_model(name: &str, loaded: &[String]) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "model {name:?} is not loaded; this server has {}",
                if loaded.is_empty() {
                    "none".to_string()
                } else {
                    loaded.join(", ")
                }
            ),
            param: Some("model".to_string()),
        }
    }

    /// A 500: the server failed (a model's computation), not the request.
    pub fn internal(message: impl std::fmt::Display) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: seqlab_base::one_line(message),
            param: None,
        }
    }

    /// The OpenAI error type of the status.
    fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind(),
            "param": self.param,
            "code": null,
        }})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        let status = rejection.status();
        let message = match &rejection {
            JsonRejection::MissingJsonContentType(_) => {
                "the body must be JSON, sent with Content-Type: application/json".to_string()
            }
            JsonRejection::BytesRejection(_) if status == StatusCode::PAYLOAD_TOO_LARGE => {
                "the request body is larger than this server accepts (--max-body)".to_string()
            }
            _ => format!(
                "the request body is not valid JSON for this endpoint: {}",
                seqlab_base::one_line(rejection.body_text())
            ),
        };
        ApiError {
            status,
            message,
            param: Some("body".to_string()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> ApiError {
        let status = rejection.status();
        ApiError {
            status,
            message: if status == StatusCode::PAYLOAD_TOO_LARGE {
                "the request body is larger than this server accepts (--max-body)".to_string()
            } else {
                format!(
                    "cannot read the request body: {}",
                    seqlab_base::one_line(rejection.body_text())
                )
            },
            param: Some("body".to_string()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!(
                "bad query string: {}",
                seqlab_base::one_line(rejection.body_text())
            ),
            param: Some("query".to_string()),
        }
    }
}
