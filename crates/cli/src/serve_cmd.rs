//! `seqlab serve`: model directories behind the OpenAI-style HTTP API, and the playground page.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use seqlab_serve::{ServeConfig, Server};

use crate::ranges::{at_least_one, positive};

/// Serve model directories over HTTP: POST /v1/completions (OpenAI's shape, streamed with "stream": true),
/// GET /v1/models, POST /v1/translate, /v1/caption, /v1/classify, and the playground page at /.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A model directory to serve (any task); repeat for more. Its name in the API is the directory's name.
    #[arg(long = "model", value_name = "DIR", required = true)]
    models: Vec<PathBuf>,
    /// Address to listen on (loopback by default: say 0.0.0.0 to serve other machines).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 picks a free one (printed at start).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The largest max_tokens a request may ask for.
    #[arg(long, default_value_t = 4096, value_parser = at_least_one("--max-tokens"))]
    max_tokens: usize,
    /// The largest request body, in bytes (an uploaded image included).
    #[arg(long, default_value_t = 8 << 20, value_parser = at_least_one("--max-body"))]
    max_body: usize,
    /// Requests to one language model decoded together in one step at most; 1 turns batching off.
    #[arg(long, default_value_t = 64, value_parser = at_least_one("--max-batch"))]
    max_batch: usize,
    /// Seconds a request may take before its response starts.
    #[arg(long, default_value_t = 300.0, value_parser = positive("--timeout"))]
    timeout: f64,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = ServeConfig {
        models: args.models,
        host: args.host,
        port: args.port,
        max_tokens: args.max_tokens,
        max_body: args.max_body,
        max_batch: args.max_batch,
        timeout: Duration::from_secs_f64(args.timeout),
    };
    let server = Server::bind(&config)?;
    let address = server.local_addr()?;
    let mut out = std::io::stdout().lock();
    for model in server.models().iter() {
        writeln!(
            out,
            "model {} ({}, {}) at {}",
            model.name,
            model.task.name(),
            model.dir.display(),
            model.task.endpoint()
        )?;
    }
    writeln!(
        out,
        "listening on http://{address} (the playground is at /; Ctrl-C or SIGTERM stops)"
    )?;
    out.flush()?;
    drop(out);
    server.run(seqlab_serve::shutdown_signal())?;
    eprintln!("seqlab serve: stopped after answering every request in flight");
    Ok(())
}
