//! Corpus BLEU exactly as sacreBLEU 2.x computes it by default (`sacrebleu.corpus_bleu(hyps, refs)`).
//!
//! The defaults are sacreBLEU's: the `13a` tokenizer (mteval-v13a, the WMT standard), case kept, n-grams up to
//! order 4, the `exp` smoothing method, the brevity penalty taken against the reference length closest to each
//! hypothesis (the shorter one on a tie), and scores on sacreBLEU's 0-100 scale. Everything is accumulated over
//! the corpus first (sufficient statistics, [`BleuStats`]) and the score is taken once, so the result is a
//! corpus BLEU, not a mean of sentence scores.
//!
//! Two details of sacreBLEU's default that are easy to get wrong, reproduced here:
//!
//! - `exp` smoothing is *on* by default, but it only acts when some order has matches and another has none:
//!   the k-th order without a match gets the precision `100 / (2^k * total)` instead of 0. A corpus without a
//!   single matching unigram scores exactly 0 (sacreBLEU's early stop), and an order with no n-grams at all
//!   (every hypothesis shorter than n) makes the score 0. [`Smoothing::None`] turns smoothing off.
//! - Every segment is right-stripped before tokenisation, and whitespace is Python's (`str.isspace`, which also
//!   counts U+001C..U+001F).
//!
//! ```
//! use seqlab_train::bleu::{corpus_bleu, tokenize_13a};
//!
//! let hyps = vec!["The cat sat on the mat.".to_string()];
//! let refs = vec![vec!["The cat sat on the mat.".to_string()]];
//! let bleu = corpus_bleu(&hyps, &refs);
//! assert!((bleu.score - 100.0).abs() < 1e-9);
//! assert_eq!(tokenize_13a("Hello, world! 1,000.5 &amp; more"), "Hello , world ! 1,000.5 & more");
//! ```

use std::collections::HashMap;

/// The largest n-gram order sacreBLEU uses by default, and the largest [`Bleu`] reports.
pub const MAX_ORDER: usize = 4;

/// How segments are split into words before n-grams are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tokenize {
    /// sacreBLEU's `13a` tokenizer ([`tokenize_13a`]); the default.
    #[default]
    ThirteenA,
    /// sacreBLEU's `none`: the text is already tokenized, words are separated by whitespace.
    None,
}

/// What happens to an n-gram order without a single match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Smoothing {
    /// sacreBLEU's default `exp` (NIST, mteval-v13a): the k-th order without a match gets the precision
    /// `100 / (2^k * total)`.
    #[default]
    Exp,
    /// sacreBLEU's `none`: the precision stays 0 and so does the score.
    None,
}

/// Settings of [`corpus_bleu_with`]. `Default` is sacreBLEU's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BleuOptions {
    /// The largest n-gram order in the geometric mean, 1 to [`MAX_ORDER`] (BLEU-1 .. BLEU-4); values out of
    /// that range are clamped into it. Default 4.
    pub max_order: usize,
    /// How segments are tokenized. Default `13a`.
    pub tokenize: Tokenize,
    /// Smoothing of orders without a match. Default `exp`.
    pub smoothing: Smoothing,
    /// Lowercase hypotheses and references first (sacreBLEU's `lowercase=True`). Default false.
    pub lowercase: bool,
}

impl Default for BleuOptions {
    fn default() -> Self {
        BleuOptions {
            max_order: MAX_ORDER,
            tokenize: Tokenize::ThirteenA,
            smoothing: Smoothing::Exp,
            lowercase: false,
        }
    }
}

/// A corpus BLEU score and its parts, with sacreBLEU's meaning and scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Bleu {
    /// BLEU, 0 to 100.
    pub score: f64,
    /// The (smoothed) n-gram precisions of orders 1..=4, in percent; orders above `max_order` are 0.
    pub precisions: [f64; MAX_ORDER],
    /// The brevity penalty, `exp(1 - ref_len / sys_len)` when the system output is shorter, else 1.
    pub bp: f64,
    /// Words in the hypotheses, after tokenisation.
    pub sys_len: usize,
    /// The sum over sentences of the reference length closest to the hypothesis length.
    pub ref_len: usize,
    /// Clipped n-gram matches of orders 1..=4.
    pub counts: [usize; MAX_ORDER],
    /// Hypothesis n-grams of orders 1..=4.
    pub totals: [usize; MAX_ORDER],
    /// The largest order in the geometric mean.
    pub max_order: usize,
}

/// The sufficient statistics of corpus BLEU, summed over sentences. One pass over a corpus gives every
/// BLEU-n: `stats.bleu(n, Smoothing::Exp)` equals sacreBLEU with `max_ngram_order=n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BleuStats {
    /// Words in the hypotheses.
    pub sys_len: usize,
    /// Sum of the closest reference lengths.
    pub ref_len: usize,
    /// Clipped n-gram matches of orders 1..=4.
    pub counts: [usize; MAX_ORDER],
    /// Hypothesis n-grams of orders 1..=4.
    pub totals: [usize; MAX_ORDER],
}

impl BleuStats {
    /// The statistics of one tokenized hypothesis against its tokenized references (words as slices). A
    /// sentence without references adds its n-grams and length but no reference length.
    pub fn sentence(hypothesis: &[&str], references: &[Vec<&str>]) -> BleuStats {
        let mut stats = BleuStats {
            sys_len: hypothesis.len(),
            ref_len: closest_ref_len(hypothesis.len(), references.iter().map(Vec::len)),
            ..Default::default()
        };
        let mut max_ref: HashMap<&[&str], usize> = HashMap::new();
        for reference in references {
            for (ngram, count) in ngram_counts(reference) {
                let best = max_ref.entry(ngram).or_insert(0);
                *best = (*best).max(count);
            }
        }
        for (ngram, count) in ngram_counts(hypothesis) {
            let n = ngram.len() - 1;
            stats.totals[n] += count;
            if let Some(&in_ref) = max_ref.get(ngram) {
                stats.counts[n] += count.min(in_ref);
            }
        }
        stats
    }

    /// Adds another sentence's (or corpus's) statistics.
    pub fn add(&mut self, other: &BleuStats) {
        self.sys_len += other.sys_len;
        self.ref_len += other.ref_len;
        for n in 0..MAX_ORDER {
            self.counts[n] += other.counts[n];
            self.totals[n] += other.totals[n];
        }
    }

    /// The score of these statistics with n-grams up to `max_order` (clamped to 1..=4), as sacreBLEU's
    /// `BLEU.compute_bleu`.
    pub fn bleu(&self, max_order: usize, smoothing: Smoothing) -> Bleu {
        let max_order = max_order.clamp(1, MAX_ORDER);
        let bp = if self.sys_len < self.ref_len {
            if self.sys_len > 0 {
                (1.0 - self.ref_len as f64 / self.sys_len as f64).exp()
            } else {
                0.0
            }
        } else {
            1.0
        };
        let mut bleu = Bleu {
            score: 0.0,
            precisions: [0.0; MAX_ORDER],
            bp,
            sys_len: self.sys_len,
            ref_len: self.ref_len,
            counts: self.counts,
            totals: self.totals,
            max_order,
        };
        // sacreBLEU stops early, at 0 with all precisions 0, when no order has a match.
        if self.counts[..max_order].iter().all(|&c| c == 0) {
            return bleu;
        }
        let mut smooth = 1.0;
        for n in 0..max_order {
            if self.totals[n] == 0 {
                break;
            }
            bleu.precisions[n] = if self.counts[n] > 0 {
                100.0 * self.counts[n] as f64 / self.totals[n] as f64
            } else {
                match smoothing {
                    Smoothing::Exp => {
                        smooth *= 2.0;
                        100.0 / (smooth * self.totals[n] as f64)
                    }
                    Smoothing::None => 0.0,
                }
            };
        }
        let log_sum: f64 = bleu.precisions[..max_order]
            .iter()
            .map(|&p| floored_log(p))
            .sum();
        bleu.score = bp * (log_sum / max_order as f64).exp();
        bleu
    }
}

/// sacreBLEU's `my_log`: the log, floored at -9999999999 for 0 (so a zero precision gives a zero score).
fn floored_log(x: f64) -> f64 {
    if x == 0.0 {
        -9_999_999_999.0
    } else {
        x.ln()
    }
}

/// The reference length closest to `hyp_len`; the shorter of two equally close ones. 0 without references.
fn closest_ref_len(hyp_len: usize, ref_lens: impl Iterator<Item = usize>) -> usize {
    let mut best: Option<(usize, usize)> = None; // (difference, length)
    for len in ref_lens {
        let diff = hyp_len.abs_diff(len);
        best = match best {
            Some((d, l)) if d < diff || (d == diff && l <= len) => Some((d, l)),
            _ => Some((diff, len)),
        };
    }
    best.map_or(0, |(_, len)| len)
}

/// Counts of the n-grams of orders 1..=4 of a word list.
fn ngram_counts<'a, 'w>(words: &'a [&'w str]) -> HashMap<&'a [&'w str], usize> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_ORDER.min(words.len()) {
        for ngram in words.windows(n) {
            *counts.entry(ngram).or_insert(0) += 1;
        }
    }
    counts
}

/// Corpus BLEU with sacreBLEU's defaults. `references[k]` is one reference *stream*, a list parallel to
/// `hypotheses` (sacreBLEU's `refs` argument): `references[k][i]` is the k-th reference of sentence i.
///
/// A stream shorter than `hypotheses` lacks references for the last sentences (sacreBLEU's `None` entries);
/// reference lines past the last hypothesis are ignored. Callers reading files should check the line counts
/// first (`seqlab bleu` does).
pub fn corpus_bleu<H: AsRef<str>, R: AsRef<str>>(hypotheses: &[H], references: &[Vec<R>]) -> Bleu {
    let per_hyp: Vec<Vec<&str>> = (0..hypotheses.len())
        .map(|i| {
            references
                .iter()
                .filter_map(|stream| stream.get(i).map(AsRef::as_ref))
                .collect()
        })
        .collect();
    corpus_bleu_with(hypotheses, &per_hyp, &BleuOptions::default())
}

/// Corpus BLEU with sacreBLEU's defaults and any number of references per sentence: `refs_per_hyp[i]` holds
/// every reference of hypothesis i (captions: five per image, or fewer). A hypothesis past the end of
/// `refs_per_hyp` has no references.
pub fn corpus_bleu_multi<H: AsRef<str>, R: AsRef<str>>(
    hypotheses: &[H],
    refs_per_hyp: &[Vec<R>],
) -> Bleu {
    corpus_bleu_with(hypotheses, refs_per_hyp, &BleuOptions::default())
}

/// Corpus BLEU with chosen [`BleuOptions`] (n-gram order, tokenizer, smoothing, case) and any number of
/// references per sentence, as in [`corpus_bleu_multi`].
pub fn corpus_bleu_with<H: AsRef<str>, R: AsRef<str>>(
    hypotheses: &[H],
    refs_per_hyp: &[Vec<R>],
    options: &BleuOptions,
) -> Bleu {
    corpus_stats(
        hypotheses,
        refs_per_hyp,
        options.tokenize,
        options.lowercase,
    )
    .bleu(options.max_order, options.smoothing)
}

/// The summed [`BleuStats`] of a corpus, references given per hypothesis as in [`corpus_bleu_multi`]. Call
/// [`BleuStats::bleu`] on the result once per order to get BLEU-1 .. BLEU-4 from one pass.
pub fn corpus_stats<H: AsRef<str>, R: AsRef<str>>(
    hypotheses: &[H],
    refs_per_hyp: &[Vec<R>],
    tokenize: Tokenize,
    lowercase: bool,
) -> BleuStats {
    let prepare = |text: &str| -> String {
        let text = text.trim_end_matches(is_python_space);
        let text = if lowercase {
            text.to_lowercase()
        } else {
            text.to_string()
        };
        match tokenize {
            Tokenize::ThirteenA => tokenize_13a(&text),
            Tokenize::None => text,
        }
    };
    let mut total = BleuStats::default();
    for (i, hypothesis) in hypotheses.iter().enumerate() {
        let hyp = prepare(hypothesis.as_ref());
        let refs: Vec<String> = refs_per_hyp
            .get(i)
            .map(|refs| refs.iter().map(|r| prepare(r.as_ref())).collect())
            .unwrap_or_default();
        let hyp_words = split_python(&hyp);
        let ref_words: Vec<Vec<&str>> = refs.iter().map(|r| split_python(r)).collect();
        total.add(&BleuStats::sentence(&hyp_words, &ref_words));
    }
    total
}

/// Python's `str.isspace`: Unicode White_Space plus the separators U+001C..U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.split()` without arguments.
fn split_python(text: &str) -> Vec<&str> {
    text.split(is_python_space)
        .filter(|w| !w.is_empty())
        .collect()
}

/// sacreBLEU's `13a` tokenizer (mteval-v13a): returns the words joined by single spaces.
///
/// In order: `<skipped>` is removed, `-\n` joined, newlines made spaces, the entities `&quot; &amp; &lt; &gt;`
/// unescaped; then ASCII punctuation other than `' , - .` is split off, periods and commas are split off
/// unless between digits (`1,000.5` stays), a dash after a digit is split off, and whitespace is collapsed.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    // ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> ' \1 '
    let mut spaced = String::with_capacity(line.len() * 2 + 2);
    spaced.push(' ');
    for c in line.chars() {
        if is_13a_symbol(c) {
            spaced.push(' ');
            spaced.push(c);
            spaced.push(' ');
        } else {
            spaced.push(c);
        }
    }
    spaced.push(' ');
    let chars: Vec<char> = spaced.chars().collect();
    let is_digit = |c: char| c.is_ascii_digit();
    let is_period_comma = |c: char| c == '.' || c == ',';
    // ([^0-9])([\.,]) -> '\1 \2 '
    let chars = substitute_pairs(
        &chars,
        |a, b| !is_digit(a) && is_period_comma(b),
        |a, b| vec![a, ' ', b, ' '],
    );
    // ([\.,])([^0-9]) -> ' \1 \2'
    let chars = substitute_pairs(
        &chars,
        |a, b| is_period_comma(a) && !is_digit(b),
        |a, b| vec![' ', a, ' ', b],
    );
    // ([0-9])(-) -> '\1 \2 '
    let chars = substitute_pairs(
        &chars,
        |a, b| is_digit(a) && b == '-',
        |a, b| vec![a, ' ', b, ' '],
    );
    let text: String = chars.into_iter().collect();
    split_python(&text).join(" ")
}

/// The character class `[\{-\~\[-\` -\&\(-\+\:-\@\/]` of the 13a tokenizer: ASCII punctuation and the space,
/// except `'`, `,`, `-` and `.`.
fn is_13a_symbol(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

/// Python's `re.sub` of a two-character pattern: scans left to right, replaces each non-overlapping match.
fn substitute_pairs(
    chars: &[char],
    matches: impl Fn(char, char) -> bool,
    replace: impl Fn(char, char) -> Vec<char>,
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + chars.len() / 2);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && matches(chars[i], chars[i + 1]) {
            out.extend(replace(chars[i], chars[i + 1]));
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_reference_length_prefers_the_shorter_on_a_tie() {
        assert_eq!(closest_ref_len(5, [3, 7].into_iter()), 3);
        assert_eq!(closest_ref_len(5, [7, 3].into_iter()), 3);
        assert_eq!(closest_ref_len(5, [9, 6, 4].into_iter()), 4);
        assert_eq!(closest_ref_len(5, std::iter::empty()), 0);
    }

    #[test]
    fn thirteen_a_keeps_numbers_and_splits_punctuation() {
        assert_eq!(tokenize_13a("a..b"), "a . . b");
        assert_eq!(
            tokenize_13a("1999-2000 well-known"),
            "1999 - 2000 well-known"
        );
        assert_eq!(
            tokenize_13a("It's (really) $5.00!"),
            "It's ( really ) $ 5.00 !"
        );
    }

    #[test]
    fn exp_smoothing_halves_each_empty_order() {
        let stats = BleuStats {
            sys_len: 4,
            ref_len: 4,
            counts: [2, 0, 0, 0],
            totals: [4, 3, 2, 1],
        };
        let bleu = stats.bleu(4, Smoothing::Exp);
        assert_eq!(
            bleu.precisions,
            [50.0, 100.0 / 6.0, 100.0 / 8.0, 100.0 / 8.0]
        );
        assert_eq!(stats.bleu(4, Smoothing::None).score, 0.0);
        assert!(bleu.score > 0.0);
    }
}
