//! `seqlab tokenizer build|encode`: make a tokenizer.json from text files, and show the ids of a text.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use seqlab_tokenize::{read_corpus, CharOptions, Tokenizer, WordOptions};

/// Build or try out a tokenizer.
#[derive(clap::Subcommand, Debug)]
pub enum TokenizerCommand {
    /// Build a character- or word-level tokenizer from text files and save it as a tokenizer.json
    /// (loadable by Python's `tokenizers`).
    Build {
        /// One token per character, or one per word and punctuation mark.
        #[arg(long, value_enum)]
        kind: TokenizerKind,
        /// UTF-8 text files (a byte-order mark and CRLF line ends are fine).
        #[arg(long, value_name = "FILE", required = true, num_args = 1..)]
        data: Vec<PathBuf>,
        /// Where to write the tokenizer.json.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Keep only tokens seen at least N times; the rest become <unk>.
        #[arg(long, value_name = "N", default_value_t = 1)]
        min_freq: usize,
        /// Keep at most N tokens, the 4 special tokens included, the most frequent first.
        #[arg(long, value_name = "N", value_parser = crate::ranges::vocabulary("--max-size"))]
        max_size: Option<usize>,
        /// Lowercase the text first.
        #[arg(long)]
        lowercase: bool,
    },
    /// Print the ids of TEXT, space-separated, without added special tokens (what Python's
    /// `encode(text, add_special_tokens=False)` gives).
    Encode {
        /// A tokenizer.json: one built by seqlab, or any other.
        #[arg(long, value_name = "FILE")]
        tokenizer: PathBuf,
        /// The text to encode.
        text: String,
    },
}

/// What `seqlab tokenizer build` splits text into.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// One token per character; every whitespace character is kept.
    Char,
    /// One token per word, number or punctuation mark; newlines are tokens.
    Word,
}

/// Runs a `seqlab tokenizer` command.
pub fn run(cmd: TokenizerCommand) -> anyhow::Result<()> {
    match cmd {
        TokenizerCommand::Build {
            kind,
            data,
            out,
            min_freq,
            max_size,
            lowercase,
        } => build(kind, &data, &out, min_freq, max_size, lowercase),
        TokenizerCommand::Encode { tokenizer, text } => encode(&tokenizer, &text),
    }
}

fn build(
    kind: TokenizerKind,
    data: &[PathBuf],
    out: &std::path::Path,
    min_freq: usize,
    max_size: Option<usize>,
    lowercase: bool,
) -> anyhow::Result<()> {
    // Errors from reading and saving name their file already.
    let corpus = read_corpus(data)?;
    let files = data
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let tokenizer = match kind {
        TokenizerKind::Char => Tokenizer::build_char(
            &[&corpus],
            &CharOptions {
                lowercase,
                min_freq,
                max_size,
                ..CharOptions::default()
            },
        ),
        TokenizerKind::Word => Tokenizer::build_word(
            &[&corpus],
            &WordOptions {
                lowercase,
                min_freq,
                max_size,
                ..WordOptions::default()
            },
        ),
    }
    .with_context(|| format!("cannot build a tokenizer from {files}"))?;
    tokenizer.save(out)?;
    let kind = match kind {
        TokenizerKind::Char => "char",
        TokenizerKind::Word => "word",
    };
    writeln!(
        std::io::stdout().lock(),
        "saved a {kind} tokenizer of {} tokens to {}",
        tokenizer.vocab_size(),
        out.display()
    )
    .context("cannot write to standard output")
}

fn encode(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let tokenizer = Tokenizer::from_file(path)?;
    let ids = tokenizer
        .encode(text)
        .with_context(|| format!("cannot encode the text with {}", path.display()))?;
    let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
    writeln!(std::io::stdout().lock(), "{}", ids.join(" "))
        .context("cannot write to standard output")
}
