//! `seqlab serve`: trained model directories behind an HTTP API that existing clients speak, and the
//! lesson's playground page.
//!
//! The decision: speak OpenAI's completions API (`POST /v1/completions`, `GET /v1/models`, server-sent
//! events for `stream`), because every serving tool people use (llama.cpp's server, vLLM, Ollama, TGI) does,
//! so their client libraries and UIs work against a seqlab model unchanged. The three tasks that API has no
//! word for get small endpoints of their own in the same style (`/v1/translate`, `/v1/caption`,
//! `/v1/classify`), and errors have OpenAI's shape (`{"error": {"message", "type", "param"}}`), always
//! naming the field at fault.
//!
//! The shape: axum on tokio for HTTP (tower-http for CORS and the request timeout; axum's own body limit),
//! and no model code on the async threads. Each language model has a worker thread that batches the
//! requests in flight into one recurrent step ([`lm`]); the other tasks, and beam search, run on tokio's
//! blocking pool. The playground is one static page compiled into the binary (`GET /`), which calls the
//! same API as any client.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use seqlab_serve::{ServeConfig, Server};
//!
//! let config = ServeConfig { models: vec!["runs/eighty".into()], ..ServeConfig::default() };
//! let server = Server::bind(&config)?;
//! println!("listening on http://{}", server.local_addr()?);
//! server.run(seqlab_serve::shutdown_signal())?; // until SIGTERM or Ctrl-C, then drains
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use axum::Router;
use tower_http::cors::{Any, CorsLayer};
use tower_http::timeout::TimeoutLayer;

pub mod completions;
pub mod error;
pub mod fields;
pub mod lm;
pub mod models;
pub mod tasks;

pub use error::ApiError;
pub use models::{Model, Models, Task};

/// What `seqlab serve` is told.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Model directories, any task.
    pub models: Vec<PathBuf>,
    /// Address to listen on: loopback unless asked.
    pub host: String,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// The largest `max_tokens` a request may ask for.
    pub max_tokens: usize,
    /// The largest request body, in bytes.
    pub max_body: usize,
    /// Requests of one language model decoded together at most; 1 turns batching off.
    pub max_batch: usize,
    /// The longest a request may take to start its response.
    pub timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            models: Vec::new(),
            host: "127.0.0.1".to_string(),
            port: 8080,
            max_tokens: 4096,
            max_body: 8 << 20,
            max_batch: 64,
            timeout: Duration::from_secs(300),
        }
    }
}

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The loaded models.
    pub models: Models,
    /// The server's settings.
    pub config: ServeConfig,
}

/// The playground page.
const PLAYGROUND: &str = include_str!("playground.html");

/// The routes, over loaded models.
pub fn router(state: Arc<AppState>) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers(Any);
    let max_body = state.config.max_body;
    let timeout = state.config.timeout;
    Router::new()
        .route("/", get(|| async { Html(PLAYGROUND) }))
        .route("/healthz", get(tasks::healthz))
        .route("/v1/models", get(tasks::models))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/translate", post(tasks::translate))
        .route("/v1/caption", post(tasks::caption))
        .route("/v1/classify", post(tasks::classify))
        .fallback(|uri: axum::http::Uri| async move {
            ApiError {
                status: StatusCode::NOT_FOUND,
                message: format!("no such endpoint: {uri}"),
                param: None,
            }
            .into_response()
        })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(cors)
        .with_state(state)
}

/// A server with its models loaded and its port bound, not yet serving.
#[derive(Debug)]
pub struct Server {
    listener: std::net::TcpListener,
    state: Arc<AppState>,
}

impl Server {
    /// Loads the models and binds the address. Errors name the directory or the address.
    pub fn bind(config: &ServeConfig) -> anyhow::Result<Server> {
        if config.models.is_empty() {
            anyhow::bail!("no model to serve: give at least one --model DIR");
        }
        let models = Models::load(&config.models, config.max_batch)?;
        let address = format!("{}:{}", config.host, config.port);
        let listener = std::net::TcpListener::bind(&address)
            .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))?;
        listener.set_nonblocking(true)?;
        Ok(Server {
            listener,
            state: Arc::new(AppState {
                models,
                config: config.clone(),
            }),
        })
    }

    /// The address it listens on (the port chosen, when asked for 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The loaded models.
    pub fn models(&self) -> &Models {
        &self.state.models
    }

    /// Serves until `shutdown` completes, then stops accepting connections and returns once every request
    /// in flight has been answered (streams included).
    pub fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("seqlab-serve")
            .build()?;
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(self.listener)?;
            axum::serve(listener, router(self.state))
                .with_graceful_shutdown(shutdown)
                .await?;
            anyhow::Ok(())
        })
    }
}

/// Completes at SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
