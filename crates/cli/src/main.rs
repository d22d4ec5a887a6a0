//! `seqlab`: the command line. Thin by design: parse the arguments, call the library, print.
//!
//! Every error reaches the user as one plain sentence on stderr with a non-zero exit, never a panic or a
//! backtrace, whatever `RUST_BACKTRACE` says: usage mistakes (a bad flag, a value out of its range) exit with
//! 2, failures with 1. `SEQLAB_DEBUG=1` prints the whole cause chain, with backtraces, for bug reports.
// The doc comments of the argument structs are clap's help text, written for a terminal: `<unk>` and
// `hf://datasets/OWNER/NAME[@REVISION]` are literal text there, not HTML or intra-doc links.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bleu_cmd;
mod caption_cmd;
mod class_report;
mod classify_cmd;
mod data_cmd;
#[cfg(feature = "images")]
mod images_cmd;
mod lm_cmd;
mod ranges;
mod serve_cmd;
mod tokenizer_cmd;
mod train_args;
mod translate_cmd;

/// Recurrent sequence models: language models, classifiers, translators and captioners.
#[derive(Parser, Debug)]
#[command(name = "seqlab", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Language models, char or word level: train, generate, eval.
    #[command(subcommand)]
    Lm(lm_cmd::LmCommand),
    /// Text classifiers (topic, spam, ...): train, eval, predict.
    #[command(subcommand)]
    Classify(classify_cmd::ClassifyCommand),
    /// Image captioners (CNN encoder + recurrent decoder): train, eval, run.
    #[command(subcommand)]
    Caption(caption_cmd::CaptionCommand),
    /// Real datasets by name on the Hugging Face Hub: list the catalogue, fetch into the hub cache.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// Build or try out a tokenizer (tokenizer.json).
    #[command(subcommand)]
    Tokenizer(tokenizer_cmd::TokenizerCommand),
    /// Translators (encoder-decoder with attention): train, eval, run.
    #[command(subcommand)]
    Translate(translate_cmd::TranslateCommand),
    /// Corpus BLEU of a hypothesis file against reference files, as sacreBLEU computes it.
    Bleu(bleu_cmd::BleuArgs),
    /// Serve model directories over HTTP (OpenAI-style completions API) with a playground page.
    Serve(serve_cmd::ServeArgs),
    /// Images read as sequences (sequential MNIST, row by row or pixel by pixel): train, eval, predict.
    #[cfg(feature = "images")]
    #[command(subcommand)]
    Images(images_cmd::ImagesCommand),
    /// Images read as sequences: not in this build (cargo feature `images`).
    #[cfg(not(feature = "images"))]
    Images {
        /// The arguments of the command.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let debug = std::env::var_os("SEQLAB_DEBUG").is_some_and(|v| !v.is_empty() && v != "0");
    if !debug {
        // candle's errors capture a backtrace when these ask for one, and print it as part of the message.
        // Read once, at the first capture: removed before any thread starts.
        std::env::remove_var("RUST_BACKTRACE");
        std::env::remove_var("RUST_LIB_BACKTRACE");
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    seqlab_cells::runtime::configure();
    let result = match cli.command {
        Command::Lm(cmd) => lm_cmd::run(cmd),
        Command::Classify(cmd) => classify_cmd::run(cmd),
        Command::Caption(cmd) => caption_cmd::run(cmd),
        Command::Data(cmd) => data_cmd::run(cmd),
        Command::Tokenizer(cmd) => tokenizer_cmd::run(cmd),
        Command::Bleu(args) => bleu_cmd::run(args),
        Command::Translate(cmd) => translate_cmd::run(cmd),
        Command::Serve(args) => serve_cmd::run(args),
        #[cfg(feature = "images")]
        Command::Images(cmd) => images_cmd::run(cmd),
        #[cfg(not(feature = "images"))]
        Command::Images { .. } => Err(anyhow::anyhow!(
            "this seqlab was built without the sequential image pipeline; build it with \
             `cargo build --release -p seqlab-cli --features images`"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if debug => {
            eprintln!("error: {e:?}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {}", seqlab_base::one_line(format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// Help and version go to stdout as clap prints them; a usage mistake becomes one line on stderr (clap's
/// first line, which names the argument) with exit code 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    // clap's message is the part before "Usage:" (some kinds continue on indented lines: joined).
    let rendered = e.render().to_string();
    let message = rendered
        .lines()
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let first = if message.starts_with("error:") {
        message
    } else {
        format!("error: {message}")
    };
    eprintln!("{first} (see --help)");
    ExitCode::from(2)
}
