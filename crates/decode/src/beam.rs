//! Beam search: the `width` most probable hypotheses, kept as the rows of one batched state.

use std::cmp::Ordering;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::model::{check_first_tokens, logits_rows};
use crate::pick::{argmax, exp_nonpositive, key_id, rank_key};
use crate::{Error, Result, StepModel};

/// What [`beam_search`] does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BeamConfig {
    /// Hypotheses kept at each step, as rows of one batched state. 1 is greedy decoding.
    pub width: usize,
    /// Most steps per hypothesis: its tokens, the end token included. Hypotheses still open at this length
    /// are returned with [`Hypothesis::ended`] false.
    pub max_len: usize,
    /// Exponent of the GNMT length penalty `lp = ((5 + steps) / 6)^alpha` that divides a hypothesis's
    /// log-probability (Wu et al. 2016). 0 ranks by raw log-probability, which favours short outputs;
    /// larger values favour longer ones. Must be finite and >= 0.
    pub alpha: f64,
    /// End tokens (`<eos>`): a hypothesis that produces one is finished.
    pub eos: Vec<u32>,
    /// Hypotheses returned, best first; between 1 and `width`.
    pub n_best: usize,
    /// Tokens never produced, such as `<pad>` and `<bos>`. Ids beyond the vocabulary are ignored.
    pub banned: Vec<u32>,
}

impl Default for BeamConfig {
    fn default() -> Self {
        BeamConfig {
            // Most of the gain of beam search over greedy comes with the first few beams.
            width: 4,
            // Longer than any sentence of the translation and captioning data sets.
            max_len: 100,
            // The usual choice (tensor2tensor's default), within GNMT's reported best range.
            alpha: 0.6,
            eos: Vec::new(),
            n_best: 1,
            banned: Vec::new(),
        }
    }
}

impl BeamConfig {
    /// Checks the parameters: width >= 1, 1 <= n_best <= width, alpha finite and >= 0.
    pub fn validate(&self) -> Result<()> {
        if self.width == 0 {
            return Err(Error::InvalidBeamWidth(self.width));
        }
        if self.n_best == 0 || self.n_best > self.width {
            return Err(Error::InvalidNBest {
                n_best: self.n_best,
                width: self.width,
            });
        }
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return Err(Error::InvalidLengthPenalty(self.alpha));
        }
        Ok(())
    }
}

/// One output of [`beam_search`].
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    /// The tokens produced, without the end token.
    pub tokens: Vec<u32>,
    /// Whether it finished with an end token (false: it reached `max_len`).
    pub ended: bool,
    /// Sum of the model's log-probabilities of its steps (natural log, softmax over the whole vocabulary,
    /// banned tokens included), the end token's step included.
    pub log_prob: f64,
    /// `log_prob / length_penalty(steps, alpha)`: what hypotheses are ranked by.
    pub score: f64,
}

impl Hypothesis {
    fn new(tokens: Vec<u32>, ended: bool, log_prob: f64, alpha: f64) -> Hypothesis {
        let steps = tokens.len() + usize::from(ended);
        Hypothesis {
            tokens,
            ended,
            log_prob,
            score: log_prob / length_penalty(steps, alpha),
        }
    }

    /// Steps of the model it took: its tokens, plus the end token if it ended.
    pub fn steps(&self) -> usize {
        self.tokens.len() + usize::from(self.ended)
    }
}

/// The GNMT length penalty `((5 + steps) / 6)^alpha`.
pub fn length_penalty(steps: usize, alpha: f64) -> f64 {
    libm::pow((5.0 + steps as f64) / 6.0, alpha)
}

/// Beam search from one starting point: `first_token` (shape `(1,)`, u32) fed to the model in `state`
/// (batch 1).
///
/// At each step every open hypothesis is extended by every token; the `width` best extensions by
/// log-probability stay open (ties go to the earlier hypothesis, then the lower token id), and an end token
/// ranked among them finishes its hypothesis. The open hypotheses are the rows of the model's state:
/// [`StepModel::select`] reorders and duplicates them, starting by expanding the single row of `state`. The
/// search stops at `max_len`, or as soon as `n_best` hypotheses have finished and no open one can still
/// reach a better score (an open hypothesis's log-probability can only fall, so its best possible score is
/// that log-probability divided by the length penalty at `max_len`).
///
/// Returns up to `n_best` hypotheses sorted by score, best first (fewer only when fewer exist).
pub fn beam_search<M>(
    model: &M,
    first_token: &Tensor,
    state: M::State,
    config: &BeamConfig,
) -> Result<Vec<Hypothesis>>
where
    M: StepModel + ?Sized,
{
    config.validate()?;
    if check_first_tokens(first_token, "(1,)")? != 1 {
        return Err(Error::InvalidFirstTokens {
            expected: "(1,)",
            dims: first_token.dims().to_vec(),
            dtype: first_token.dtype(),
        });
    }
    let device = first_token.device().clone();
    let (width, n_best, alpha) = (config.width, config.n_best, config.alpha);
    let mut eos = config.eos.clone();
    eos.sort_unstable();
    eos.dedup();
    let mut banned = config.banned.clone();
    banned.sort_unstable();
    let best_possible_penalty = length_penalty(config.max_len, alpha);

    if config.max_len == 0 {
        return Ok(vec![Hypothesis::new(Vec::new(), false, 0.0, alpha)]);
    }
    let mut open = vec![Open {
        tokens: Vec::new(),
        log_prob: 0.0,
    }];
    let mut finished: Vec<Hypothesis> = Vec::new();
    let mut tokens = first_token.clone();
    let mut state = state;
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut keys: Vec<u64> = Vec::new();
    let mut parents: Vec<u32> = Vec::with_capacity(width);
    let mut next_tokens: Vec<u32> = Vec::with_capacity(width);

    for step in 1..=config.max_len {
        let (logits, next_state) = model.step(&tokens, &state)?;
        let rows = open.len();
        let (flat, vocab) = logits_rows(&logits, rows)?;
        candidates.clear();
        expand(
            &open,
            &flat,
            vocab,
            &eos,
            &banned,
            width,
            &mut keys,
            &mut candidates,
        )?;
        candidates.sort_unstable_by(Candidate::rank);

        let mut next_open = Vec::with_capacity(width);
        parents.clear();
        next_tokens.clear();
        for c in &candidates {
            let parent = &open[c.row];
            if c.end {
                finished.push(Hypothesis::new(
                    parent.tokens.clone(),
                    true,
                    c.log_prob,
                    alpha,
                ));
                continue;
            }
            let mut tokens = Vec::with_capacity(parent.tokens.len() + 1);
            tokens.extend_from_slice(&parent.tokens);
            tokens.push(c.token);
            next_open.push(Open {
                tokens,
                log_prob: c.log_prob,
            });
            parents.push(c.row as u32);
            next_tokens.push(c.token);
            if next_open.len() == width {
                break;
            }
        }
        open = next_open;
        keep_best(&mut finished, n_best);

        if step == config.max_len {
            finished.extend(
                open.drain(..)
                    .map(|o| Hypothesis::new(o.tokens, false, o.log_prob, alpha)),
            );
            break;
        }
        let Some(best_open) = open.first() else {
            break;
        };
        if finished.len() >= n_best
            && best_open.log_prob / best_possible_penalty <= finished[n_best - 1].score
        {
            break;
        }
        let unchanged =
            parents.len() == rows && parents.iter().enumerate().all(|(i, &p)| p as usize == i);
        state = if unchanged {
            next_state
        } else {
            model.select(&next_state, &Tensor::new(parents.as_slice(), &device)?)?
        };
        tokens = Tensor::new(next_tokens.as_slice(), &device)?;
    }

    keep_best(&mut finished, n_best);
    Ok(finished)
}

/// The candidates of one step: for each open hypothesis (row `row` of `flat`, `vocab` logits a row), its
/// allowed end tokens and its `width` best other continuations, each with the hypothesis's log-probability
/// plus the token's (the model's own over the whole vocabulary: banning a token does not renormalise).
#[allow(clippy::too_many_arguments)]
fn expand(
    open: &[Open],
    flat: &[f32],
    vocab: usize,
    eos: &[u32],
    banned: &[u32],
    width: usize,
    keys: &mut Vec<u64>,
    candidates: &mut Vec<Candidate>,
) -> Result<()> {
    for (row, hypothesis) in open.iter().enumerate() {
        let logits = &flat[row * vocab..(row + 1) * vocab];
        // The model's own log-probabilities, over the whole vocabulary: banning a token removes it from
        // the candidates but does not renormalise the others.
        let (_, max) = argmax(logits, row)?;
        let max = f64::from(max);
        let log_sum: f64 = libm::log(
            logits
                .iter()
                .map(|&l| exp_nonpositive(f64::from(l) - max))
                .sum(),
        );
        let allowed =
            |t: u32| logits[t as usize] > f32::NEG_INFINITY && banned.binary_search(&t).is_err();
        let candidate = |token: u32, end: bool| Candidate {
            log_prob: hypothesis.log_prob + (f64::from(logits[token as usize]) - max - log_sum),
            row,
            token,
            end,
        };
        let before = candidates.len();
        for &token in eos {
            if (token as usize) < vocab && allowed(token) {
                candidates.push(candidate(token, true));
            }
        }
        // Only a row's `width` best continuations can be among the `width` best overall.
        keys.clear();
        keys.extend(
            (0..vocab as u32)
                .filter(|&t| allowed(t) && eos.binary_search(&t).is_err())
                .map(|t| rank_key(logits[t as usize], t)),
        );
        if keys.len() > width {
            keys.select_nth_unstable(width - 1);
            keys.truncate(width);
        }
        candidates.extend(keys.iter().map(|&key| candidate(key_id(key) as u32, false)));
        if candidates.len() == before {
            return Err(Error::NoTokenAllowed { row });
        }
    }
    Ok(())
}

/// An open hypothesis: one row of the batched state.
#[derive(Debug)]
struct Open {
    tokens: Vec<u32>,
    log_prob: f64,
}

/// One possible extension of an open hypothesis.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    log_prob: f64,
    /// The open hypothesis (row of the state) it extends.
    row: usize,
    token: u32,
    /// Whether `token` is an end token.
    end: bool,
}

impl Candidate {
    /// Higher log-probability first, then the earlier row, then the lower token: a total order.
    fn rank(a: &Candidate, b: &Candidate) -> Ordering {
        b.log_prob
            .partial_cmp(&a.log_prob)
            .unwrap_or(Ordering::Equal)
            .then(a.row.cmp(&b.row))
            .then(a.token.cmp(&b.token))
    }
}

/// Sorts by score, best first (stable: the earlier-finished first on ties), and keeps the first `n`.
fn keep_best(finished: &mut Vec<Hypothesis>, n: usize) {
    finished.sort_by(|a, b| b.score.partial_cmp(&a.score).unwrap_or(Ordering::Equal));
    finished.truncate(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_penalty_is_gnmt() {
        assert_eq!(length_penalty(7, 0.0), 1.0);
        assert_eq!(length_penalty(1, 1.0), 1.0);
        assert!((length_penalty(7, 0.5) - 2f64.sqrt()).abs() < 1e-15);
        assert!((length_penalty(19, 2.0) - 16.0).abs() < 1e-12);
    }

    #[test]
    fn hypothesis_counts_the_end_token_as_a_step() {
        let ended = Hypothesis::new(vec![4, 5], true, -3.0, 1.0);
        assert_eq!(ended.steps(), 3);
        assert!((ended.score - -3.0 / (8.0 / 6.0)).abs() < 1e-15);
        let open = Hypothesis::new(vec![4, 5], false, -3.0, 1.0);
        assert_eq!(open.steps(), 2);
        assert!((open.score - -3.0 / (7.0 / 6.0)).abs() < 1e-15);
    }

    #[test]
    fn candidates_rank_by_log_prob_then_row_then_token() {
        let c = |log_prob, row, token| Candidate {
            log_prob,
            row,
            token,
            end: false,
        };
        let mut cs = [
            c(-2.0, 0, 1),
            c(-1.0, 1, 5),
            c(-1.0, 1, 2),
            c(-1.0, 0, 9),
            c(-0.5, 2, 0),
        ];
        cs.sort_unstable_by(Candidate::rank);
        let order: Vec<(usize, u32)> = cs.iter().map(|c| (c.row, c.token)).collect();
        assert_eq!(order, [(2, 0), (0, 9), (1, 2), (1, 5), (0, 1)]);
    }

    #[test]
    fn keep_best_sorts_stably_and_truncates() {
        let h = |t: u32, score| Hypothesis {
            tokens: vec![t],
            ended: true,
            log_prob: score,
            score,
        };
        let mut hs = vec![h(0, -3.0), h(1, -1.0), h(2, -2.0), h(3, -1.0)];
        keep_best(&mut hs, 3);
        let tokens: Vec<u32> = hs.iter().map(|h| h.tokens[0]).collect();
        assert_eq!(tokens, [1, 3, 2]);
    }
}
