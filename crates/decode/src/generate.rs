//! Free-running generation: token after token from a [`StepModel`], each streamed to a callback as soon as it
//! is final, for a batch of rows that stop independently.

use std::ops::ControlFlow;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::model::{check_first_tokens, logits_rows};
use crate::pick::Picker;
use crate::sampling::row_rng;
use crate::{Error, Result, Sampling, StepModel};

/// What [`generate`] does: how tokens are chosen and when a row stops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateConfig {
    /// How each token is chosen from the logits.
    pub sampling: Sampling,
    /// Seed of the random numbers. Row `r` of a batch draws from ChaCha8 stream `r` of this seed, so a
    /// row's tokens depend only on the seed, the row and the logits, on every run and platform.
    pub seed: u64,
    /// Most steps of the model per row: the tokens produced, an end token included.
    pub max_len: usize,
    /// End tokens (`<eos>`): a row that produces one stops; the end token itself is not reported.
    pub eos: Vec<u32>,
    /// Token sequences that stop a row when it produces one. The stop sequence is not reported: tokens that
    /// could begin one are held back until it is clear they do not.
    pub stop_sequences: Vec<Vec<u32>>,
    /// Tokens never produced, such as `<pad>` and `<bos>`. Ids beyond the vocabulary are ignored.
    pub banned: Vec<u32>,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            // Temperature 1, the model's own distribution: greedy decoding loops.
            sampling: Sampling::default(),
            // A fixed seed: the same text on every run unless the caller asks for another.
            seed: 0,
            // A paragraph of characters, a few sentences of words.
            max_len: 200,
            eos: Vec::new(),
            stop_sequences: Vec::new(),
            banned: Vec::new(),
        }
    }
}

/// Why a row stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// It reached [`GenerateConfig::max_len`].
    Length,
    /// It produced this end token.
    EndToken(u32),
    /// It produced the stop sequence at this index of [`GenerateConfig::stop_sequences`].
    StopSequence(usize),
    /// The callback returned [`ControlFlow::Break`].
    Callback,
}

/// The output of one row of [`generate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// The tokens reported to the callback, in order: without the end token or the stop sequence.
    pub tokens: Vec<u32>,
    /// Why the row stopped.
    pub stop: StopReason,
}

/// Generates tokens for each row of a batch until it reaches the length, an end token or a stop sequence.
///
/// `first_tokens` (shape `(batch,)`, u32) is fed to the model in `state` (batch `batch`): for a language
/// model, the last prompt token and the state after the rest of the prompt. Each token is passed to
/// `on_token(row, token)` as soon as it is final; returning [`ControlFlow::Break`] stops that row. Rows that
/// stop are dropped from the batch with [`StepModel::select`], so they cost nothing afterwards.
///
/// Returns one [`Generation`] per row, in row order.
pub fn generate<M, F>(
    model: &M,
    first_tokens: &Tensor,
    state: M::State,
    config: &GenerateConfig,
    mut on_token: F,
) -> Result<Vec<Generation>>
where
    M: StepModel + ?Sized,
    F: FnMut(usize, u32) -> ControlFlow<()>,
{
    if let Some(index) = config.stop_sequences.iter().position(Vec::is_empty) {
        return Err(Error::EmptyStopSequence { index });
    }
    let mut picker = Picker::new(config.sampling, &config.banned)?;
    let batch = check_first_tokens(first_tokens, "(batch,)")?;
    let device = first_tokens.device().clone();

    let mut rngs: Vec<_> = (0..batch).map(|row| row_rng(config.seed, row)).collect();
    let mut rows: Vec<Row> = (0..batch).map(|_| Row::default()).collect();
    // `active[pos]` is the row at position `pos` of the model's current batch.
    let mut active: Vec<usize> = (0..batch).collect();
    let mut kept: Vec<u32> = Vec::with_capacity(batch);
    let mut next_tokens: Vec<u32> = Vec::with_capacity(batch);
    let mut tokens = first_tokens.clone();
    let mut state = state;

    for step in 0..config.max_len {
        let (logits, next_state) = model.step(&tokens, &state)?;
        let (mut flat, vocab) = logits_rows(&logits, active.len())?;
        kept.clear();
        next_tokens.clear();
        for (pos, &row) in active.iter().enumerate() {
            let logits = &mut flat[pos * vocab..(pos + 1) * vocab];
            let token = picker.pick(logits, row, &mut rngs[row])?;
            match rows[row].push(row, token, config, &mut on_token) {
                Some(stop) => rows[row].stop = Some(stop),
                None => {
                    kept.push(pos as u32);
                    next_tokens.push(token);
                }
            }
        }
        if kept.is_empty() || step + 1 == config.max_len {
            break;
        }
        state = if kept.len() < active.len() {
            active = kept.iter().map(|&pos| active[pos as usize]).collect();
            model.select(&next_state, &Tensor::new(kept.as_slice(), &device)?)?
        } else {
            next_state
        };
        tokens = Tensor::new(next_tokens.as_slice(), &device)?;
    }

    Ok(rows
        .into_iter()
        .enumerate()
        .map(|(row, mut r)| {
            let stop = match r.stop {
                Some(stop) => stop,
                // Out of length: what was held back for a possible stop sequence is output after all.
                None => {
                    let held = r.pending.len();
                    if r.emit(row, held, &mut on_token) {
                        StopReason::Length
                    } else {
                        StopReason::Callback
                    }
                }
            };
            Generation {
                tokens: r.tokens,
                stop,
            }
        })
        .collect())
}

/// The bookkeeping of one row.
#[derive(Debug, Default)]
struct Row {
    /// Tokens reported so far.
    tokens: Vec<u32>,
    /// Tokens produced but held back because they could begin a stop sequence.
    pending: Vec<u32>,
    /// Why the row stopped, once it has.
    stop: Option<StopReason>,
}

impl Row {
    /// Takes the row's next token, reports what became final, and returns why the row stops, if it does.
    fn push<F>(
        &mut self,
        row: usize,
        token: u32,
        config: &GenerateConfig,
        on_token: &mut F,
    ) -> Option<StopReason>
    where
        F: FnMut(usize, u32) -> ControlFlow<()>,
    {
        if config.eos.contains(&token) {
            let reported = self.emit(row, self.pending.len(), on_token);
            return Some(if reported {
                StopReason::EndToken(token)
            } else {
                StopReason::Callback
            });
        }
        self.pending.push(token);
        let (release, matched) = match_stop_sequences(&self.pending, &config.stop_sequences);
        if !self.emit(row, release, on_token) {
            return Some(StopReason::Callback);
        }
        matched.map(StopReason::StopSequence)
    }

    /// Reports the first `n` pending tokens; false when the callback asked to stop.
    fn emit<F>(&mut self, row: usize, n: usize, on_token: &mut F) -> bool
    where
        F: FnMut(usize, u32) -> ControlFlow<()>,
    {
        for token in self.pending.drain(..n) {
            self.tokens.push(token);
            if on_token(row, token).is_break() {
                return false;
            }
        }
        true
    }
}

/// Given the held-back tokens with the newest last, returns how many of the leading ones are final and the
/// index of the stop sequence they end with, if any (the longest one when several do). Without a match, the
/// longest tail that is a proper prefix of some stop sequence stays held back.
fn match_stop_sequences(pending: &[u32], stop_sequences: &[Vec<u32>]) -> (usize, Option<usize>) {
    let mut matched: Option<usize> = None;
    for (index, stop) in stop_sequences.iter().enumerate() {
        if pending.ends_with(stop) && matched.is_none_or(|m| stop.len() > stop_sequences[m].len()) {
            matched = Some(index);
        }
    }
    if let Some(index) = matched {
        return (pending.len() - stop_sequences[index].len(), Some(index));
    }
    let held = (1..=pending.len())
        .rev()
        .find(|&n| {
            let tail = &pending[pending.len() - n..];
            stop_sequences
                .iter()
                .any(|stop| stop.len() > n && stop.starts_with(tail))
        })
        .unwrap_or(0);
    (pending.len() - held, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `tokens` through the stop-sequence matcher, returning what was reported and whether it stopped.
    fn run(tokens: &[u32], stops: &[Vec<u32>]) -> (Vec<u32>, Option<usize>) {
        let mut pending = Vec::new();
        let mut out = Vec::new();
        for &t in tokens {
            pending.push(t);
            let (release, matched) = match_stop_sequences(&pending, stops);
            out.extend(pending.drain(..release));
            if matched.is_some() {
                return (out, matched);
            }
        }
        out.extend(pending);
        (out, None)
    }

    #[test]
    fn stop_sequence_is_cut_from_the_output() {
        assert_eq!(run(&[1, 2, 3, 4, 5], &[vec![3, 4]]), (vec![1, 2], Some(0)));
        assert_eq!(run(&[3, 3, 4], &[vec![3, 4]]), (vec![3], Some(0)));
        assert_eq!(run(&[7], &[vec![7]]), (vec![], Some(0)));
    }

    #[test]
    fn a_false_start_is_released() {
        assert_eq!(run(&[1, 3, 5, 3], &[vec![3, 4]]), (vec![1, 3, 5, 3], None));
        // 1 2 1 2 3 with stop 1 2 3: the first "1 2" is released once "1" restarts the match.
        assert_eq!(
            run(&[1, 2, 1, 2, 3], &[vec![1, 2, 3]]),
            (vec![1, 2], Some(0))
        );
    }

    #[test]
    fn the_longest_of_simultaneous_matches_wins() {
        assert_eq!(run(&[9, 3, 5], &[vec![5], vec![3, 5]]), (vec![9], Some(1)));
    }

    #[test]
    fn tokens_are_held_back_only_while_they_could_start_a_stop_sequence() {
        let stops = [vec![3, 4, 5]];
        assert_eq!(match_stop_sequences(&[3], &stops), (0, None));
        assert_eq!(match_stop_sequences(&[3, 4], &stops), (0, None));
        assert_eq!(match_stop_sequences(&[3, 4, 3], &stops), (2, None));
        assert_eq!(match_stop_sequences(&[3, 4, 6], &stops), (3, None));
        assert_eq!(match_stop_sequences(&[8], &[]), (1, None));
    }
}
