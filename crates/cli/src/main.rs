//! `seqlab`: the command line. Thin by design: parse the arguments, call the library, print.
//!
//! Every error reaches the user as one plain sentence on stderr with a non-zero exit, never a panic.
// The doc comments of the argument structs are clap's help text, written for a terminal: `<unk>` and
// `hf://datasets/OWNER/NAME[@REVISION]` are literal text there, not HTML or intra-doc links.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod lm_cmd;
mod tokenizer_cmd;

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
    /// Build or try out a tokenizer (tokenizer.json).
    #[command(subcommand)]
    Tokenizer(tokenizer_cmd::TokenizerCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    seqlab_cells::runtime::configure();
    let result = match cli.command {
        Command::Lm(cmd) => lm_cmd::run(cmd),
        Command::Tokenizer(cmd) => tokenizer_cmd::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
