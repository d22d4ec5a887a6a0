//! `seqlab`: the command line. Thin by design: parse the arguments, call the library, print.
//!
//! Every error reaches the user as one plain sentence on stderr with a non-zero exit, never a panic.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Build or try out a tokenizer (tokenizer.json).
    #[command(subcommand)]
    Tokenizer(tokenizer_cmd::TokenizerCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    seqlab_cells::runtime::configure();
    let result = match cli.command {
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
