//! Parallel text for a translator: `source<TAB>target[<TAB>anything]` lines (the Tatoeba / Anki layout), with
//! length filters, a direction swap, and a count of what was left out.

use std::path::Path;

use crate::error::{Error, Result};

/// What to do with a line that has no tab or an empty side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BadLine {
    /// Leave it out and count it ([`Parallel::malformed`]); the default, as real files have a few.
    #[default]
    Skip,
    /// Stop with an error naming the file and the line.
    Error,
}

/// How [`read_parallel`] and [`parse_parallel`] read pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParallelOptions {
    /// Swap the columns: the second column becomes the source.
    pub reverse: bool,
    /// Leave out pairs whose source has more whitespace-separated words than this.
    pub max_source_words: Option<usize>,
    /// Leave out pairs whose target has more whitespace-separated words than this.
    pub max_target_words: Option<usize>,
    /// Lines without a tab or with an empty side: skipped (counted) or an error.
    pub bad_lines: BadLine,
}

/// One sentence pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The sentence to translate.
    pub source: String,
    /// Its translation.
    pub target: String,
    /// The 1-based line of the file it came from.
    pub line: usize,
}

/// The pairs of a parallel file and what was left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parallel {
    /// The pairs kept, in file order.
    pub pairs: Vec<Pair>,
    /// Lines left out for having no tab or an empty side (blank lines are not counted).
    pub malformed: usize,
    /// Pairs left out by the length filters.
    pub too_long: usize,
}

impl Parallel {
    /// Splits off the last `fraction` of the pairs (at least one pair when `fraction > 0` and there are two
    /// or more): `(head, tail)`. The order is the file's, so the tail is a held-out part of the corpus.
    pub fn split_tail(mut self, fraction: f64) -> Result<(Parallel, Vec<Pair>)> {
        if !(0.0..1.0).contains(&fraction) {
            return Err(Error::InvalidFraction(fraction));
        }
        let n = self.pairs.len();
        let mut tail = (n as f64 * fraction).round() as usize;
        if fraction > 0.0 && n >= 2 {
            tail = tail.clamp(1, n - 1);
        }
        let held_out = self.pairs.split_off(n - tail);
        Ok((self, held_out))
    }
}

/// Reads a UTF-8 parallel file (a byte-order mark and CRLF line ends are fine). See [`parse_parallel`].
pub fn read_parallel(path: &Path, options: &ParallelOptions) -> Result<Parallel> {
    // Hub splits and parquet files are tables: their source and target columns, one line per row.
    if let Some(source) = path.to_str().filter(|s| crate::rows::is_labelled_table(s)) {
        let hub = crate::hub_dataset::Hub::from_env();
        let text = crate::rows::parallel_text(&hub, source, &Default::default())?;
        return parse_parallel(&text, source, options);
    }
    let text = seqlab_tokenize::read_text(path)?;
    parse_parallel(&text, &path.display().to_string(), options)
}

/// Parses `source<TAB>target[<TAB>anything]` lines; `file` names the source in errors. Columns after the
/// second (attribution, verse ids) are ignored; both sides are trimmed; blank lines are ignored.
///
/// Errors: [`Error::MalformedRow`] for a line without a tab or with an empty side when `bad_lines` is
/// [`BadLine::Error`]; [`Error::NoPairs`] when no pair is left.
pub fn parse_parallel(text: &str, file: &str, options: &ParallelOptions) -> Result<Parallel> {
    let mut parallel = Parallel::default();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let mut fields = raw.split('\t');
        let first = fields.next().unwrap_or("").trim();
        let problem = match fields.next().map(str::trim) {
            None => Some("no tab between the source and the target".to_string()),
            Some(second) if first.is_empty() || second.is_empty() => {
                let side = if first.is_empty() { "first" } else { "second" };
                Some(format!("the {side} column is empty"))
            }
            Some(second) => {
                let (source, target) = if options.reverse {
                    (second, first)
                } else {
                    (first, second)
                };
                let words = |s: &str| s.split_whitespace().count();
                if options
                    .max_source_words
                    .is_some_and(|max| words(source) > max)
                    || options
                        .max_target_words
                        .is_some_and(|max| words(target) > max)
                {
                    parallel.too_long += 1;
                } else {
                    parallel.pairs.push(Pair {
                        source: source.to_string(),
                        target: target.to_string(),
                        line,
                    });
                }
                None
            }
        };
        if let Some(reason) = problem {
            match options.bad_lines {
                BadLine::Skip => parallel.malformed += 1,
                BadLine::Error => {
                    return Err(Error::MalformedRow {
                        file: file.to_string(),
                        line,
                        reason: format!("{reason} (expected source<TAB>target)"),
                    })
                }
            }
        }
    }
    if parallel.pairs.is_empty() {
        return Err(Error::NoPairs {
            file: file.to_string(),
            skipped: parallel.malformed + parallel.too_long,
        });
    }
    Ok(parallel)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "Hi.\tHola.\tCC-BY 2.0 (France)\nno tab here\n\t¿Qué?\nRun!\t¡Corre!\n\nI am very tired today.\tEstoy muy cansado hoy.\n";

    #[test]
    fn pairs_are_read_bad_lines_counted_and_long_ones_filtered() {
        let options = ParallelOptions {
            max_source_words: Some(3),
            ..Default::default()
        };
        let parallel = parse_parallel(TEXT, "t.tsv", &options).unwrap();
        let sources: Vec<&str> = parallel.pairs.iter().map(|p| p.source.as_str()).collect();
        assert_eq!(sources, ["Hi.", "Run!"]);
        assert_eq!(parallel.pairs[1].target, "¡Corre!");
        assert_eq!(parallel.pairs[1].line, 4);
        assert_eq!((parallel.malformed, parallel.too_long), (2, 1));
    }

    #[test]
    fn reverse_swaps_the_columns_and_errors_name_the_line() {
        let options = ParallelOptions {
            reverse: true,
            ..Default::default()
        };
        let parallel = parse_parallel(TEXT, "t.tsv", &options).unwrap();
        assert_eq!(parallel.pairs[0].source, "Hola.");
        assert_eq!(parallel.pairs[0].target, "Hi.");
        let strict = ParallelOptions {
            bad_lines: BadLine::Error,
            ..Default::default()
        };
        let error = parse_parallel(TEXT, "t.tsv", &strict)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("t.tsv, line 2: no tab"), "{error}");
        let error = parse_parallel("a\tb\n\tc\n", "t.tsv", &strict)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("line 2: the first column is empty"),
            "{error}"
        );
        assert!(parse_parallel("just text\n", "t.tsv", &options).is_err());
    }

    #[test]
    fn the_tail_is_held_out_in_file_order() {
        let text: String = (0..20).map(|i| format!("s{i}\tt{i}\n")).collect();
        let parallel = parse_parallel(&text, "t.tsv", &ParallelOptions::default()).unwrap();
        let (train, held_out) = parallel.split_tail(0.05).unwrap();
        assert_eq!(train.pairs.len(), 19);
        assert_eq!(held_out.len(), 1);
        assert_eq!(held_out[0].source, "s19");
    }
}
