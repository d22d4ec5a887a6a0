//! `seqlab bleu`: corpus BLEU of a hypothesis file against reference files, as sacreBLEU computes it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use seqlab_train::bleu::{corpus_bleu_with, BleuOptions, Tokenize, MAX_ORDER};

/// Arguments of `seqlab bleu`.
#[derive(clap::Args, Debug)]
pub struct BleuArgs {
    /// Reference files, one sentence per line, each parallel to --hyp; several files give several
    /// references per sentence.
    #[arg(long = "ref", value_name = "FILE", required = true, num_args = 1..)]
    refs: Vec<PathBuf>,
    /// The system output, one sentence per line.
    #[arg(long, value_name = "FILE")]
    hyp: PathBuf,
    /// Print one JSON object: {"score", "bp", "precisions", "sys_len", "ref_len", "counts", "totals"}.
    #[arg(long)]
    json: bool,
    /// Tokenizer: 13a (sacreBLEU's default) or none (the files are already tokenized).
    #[arg(long, value_name = "13a|none", default_value = "13a")]
    tokenize: String,
    /// Lowercase hypotheses and references first.
    #[arg(long)]
    lowercase: bool,
    /// Largest n-gram order, 1 to 4 (BLEU-1 .. BLEU-4).
    #[arg(long, value_name = "N", default_value_t = MAX_ORDER)]
    max_order: usize,
}

/// Runs `seqlab bleu`.
pub fn run(args: BleuArgs) -> anyhow::Result<()> {
    let tokenize = match args.tokenize.as_str() {
        "13a" => Tokenize::ThirteenA,
        "none" => Tokenize::None,
        other => bail!("unknown --tokenize {other:?}: expected 13a or none"),
    };
    if !(1..=MAX_ORDER).contains(&args.max_order) {
        bail!(
            "--max-order must be between 1 and {MAX_ORDER}, got {}",
            args.max_order
        );
    }
    let hyps = read_lines(&args.hyp)?;
    let mut refs_per_hyp: Vec<Vec<String>> = vec![Vec::new(); hyps.len()];
    for path in &args.refs {
        let refs = read_lines(path)?;
        if refs.len() != hyps.len() {
            bail!(
                "{} has {} lines but the hypotheses {} have {}; every reference file needs one line per hypothesis",
                path.display(),
                refs.len(),
                args.hyp.display(),
                hyps.len()
            );
        }
        for (all, line) in refs_per_hyp.iter_mut().zip(refs) {
            all.push(line);
        }
    }
    let options = BleuOptions {
        max_order: args.max_order,
        tokenize,
        lowercase: args.lowercase,
        ..BleuOptions::default()
    };
    let bleu = corpus_bleu_with(&hyps, &refs_per_hyp, &options);
    let precisions = &bleu.precisions[..bleu.max_order];
    let mut out = std::io::stdout().lock();
    if args.json {
        let json = serde_json::json!({
            "score": bleu.score,
            "bp": bleu.bp,
            "precisions": precisions,
            "sys_len": bleu.sys_len,
            "ref_len": bleu.ref_len,
            "counts": &bleu.counts[..bleu.max_order],
            "totals": &bleu.totals[..bleu.max_order],
        });
        writeln!(out, "{json}")?;
    } else {
        // sacreBLEU's own line.
        let ratio = if bleu.ref_len > 0 {
            bleu.sys_len as f64 / bleu.ref_len as f64
        } else {
            0.0
        };
        let precisions: Vec<String> = precisions.iter().map(|p| format!("{p:.1}")).collect();
        writeln!(
            out,
            "BLEU = {:.2} {} (BP = {:.3} ratio = {ratio:.3} hyp_len = {} ref_len = {})",
            bleu.score,
            precisions.join("/"),
            bleu.bp,
            bleu.sys_len,
            bleu.ref_len
        )?;
    }
    Ok(())
}

/// The lines of a UTF-8 file (a byte-order mark dropped, `\r\n` or `\n` line ends, no final empty line).
fn read_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
        anyhow::anyhow!("{} is not UTF-8 (line {line})", path.display())
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    Ok(text.lines().map(str::to_string).collect())
}
