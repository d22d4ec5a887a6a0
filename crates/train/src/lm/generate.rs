//! Generating text from a loaded language model, streamed as it is produced.

use std::ops::ControlFlow;

use candle_core::Tensor;
use seqlab_cells::State;
use seqlab_decode::{beam_search, generate, BeamConfig, Decoding, GenerateConfig};
use seqlab_models::Mode;
use seqlab_tokenize::Tokenizer;

use super::dir::LoadedLm;
use crate::error::{Error, Result};

/// What [`LoadedLm::generate`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The continuation of the prompt, as text.
    pub text: String,
    /// The generated token ids.
    pub tokens: Vec<u32>,
    /// Tokens of the prompt that are outside the vocabulary and were read as `<unk>`.
    pub unknown_in_prompt: usize,
}

impl LoadedLm {
    /// Continues `prompt` with at most `length` tokens, stopping early at `<eos>`, and hands each new piece
    /// of text to `on_text` as soon as it is known.
    ///
    /// The model reads `<bos>` and the prompt's tokens (an empty prompt starts from `<bos>` alone; characters
    /// or words outside the vocabulary are read as `<unk>`), then decoding takes over from the last token
    /// and state. `<pad>`, `<bos>` and `<unk>` are never produced. Text is streamed by decoding the whole
    /// sequence so far and passing on what is new, so a word tokenizer's spacing comes out right.
    pub fn generate(
        &self,
        prompt: &str,
        length: usize,
        decoding: &Decoding,
        mut on_text: impl FnMut(&str),
    ) -> Result<Generated> {
        let device = self.model.rnn().device().clone();
        let specials = self.tokenizer.specials();
        let prompt_ids = self.tokenizer.encode(prompt)?;
        let unknown_in_prompt = specials
            .unk
            .map_or(0, |unk| prompt_ids.iter().filter(|&&id| id == unk).count());
        let (first, state) = self.prime(&prompt_ids)?;
        let first = Tensor::new(&[first], &device)?;
        let (banned, eos) = (self.banned(), self.eos());
        let mut stream = TextStream::new(&self.tokenizer, prompt_ids)?;
        let mut failure = None;
        match *decoding {
            Decoding::Beam { width, alpha } => {
                let config = BeamConfig {
                    width,
                    alpha,
                    max_len: length,
                    eos,
                    banned,
                    ..BeamConfig::default()
                };
                config.validate()?;
                let best = beam_search(&self.model, &first, state, &config)?;
                for &token in best.first().map_or(&[][..], |h| &h.tokens) {
                    on_text(&stream.push(token)?);
                }
            }
            Decoding::Sample { sampling, seed } => {
                sampling.validate()?;
                let config = GenerateConfig {
                    sampling,
                    seed,
                    max_len: length,
                    eos,
                    banned,
                    ..GenerateConfig::default()
                };
                generate(
                    &self.model,
                    &first,
                    state,
                    &config,
                    |_, token| match stream.push(token) {
                        Ok(text) => {
                            on_text(&text);
                            ControlFlow::Continue(())
                        }
                        Err(e) => {
                            failure = Some(e);
                            ControlFlow::Break(())
                        }
                    },
                )?;
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(Generated {
            text: stream.continuation(),
            tokens: stream.ids[stream.prompt_len..].to_vec(),
            unknown_in_prompt,
        })
    }
}

impl LoadedLm {
    /// Brings the model to where decoding starts after `prompt_ids` (the prompt's tokens, without
    /// `<bos>`): it reads `<bos>` and every prompt token but the last, and returns the last (`<bos>` for an
    /// empty prompt), which decoding feeds first, with the state (batch 1) it is fed in.
    pub fn prime(&self, prompt_ids: &[u32]) -> Result<(u32, State)> {
        let device = self.model.rnn().device().clone();
        let mut context: Vec<u32> = self.tokenizer.specials().bos.into_iter().collect();
        context.extend_from_slice(prompt_ids);
        let Some((&first, before)) = context.split_last() else {
            return Err(Error::InvalidSetting(
                "the model's tokenizer has no <bos> token, so generation needs a non-empty prompt"
                    .to_string(),
            ));
        };
        let state = if before.is_empty() {
            self.model.zero_state(1, &device)?
        } else {
            let ids = Tensor::from_slice(before, (1, before.len()), &device)?;
            self.model.forward(&ids, None, Mode::Eval)?.1.detach()
        };
        Ok((first, state))
    }

    /// The tokens generation never produces: `<pad>`, `<bos>` and `<unk>`.
    pub fn banned(&self) -> Vec<u32> {
        let specials = self.tokenizer.specials();
        [specials.pad, specials.bos, specials.unk]
            .into_iter()
            .flatten()
            .collect()
    }

    /// The tokens that end generation: `<eos>`, where the tokenizer has one.
    pub fn eos(&self) -> Vec<u32> {
        self.tokenizer.specials().eos.into_iter().collect()
    }
}

/// Turns tokens into text incrementally: the whole sequence is decoded each time and the new end returned.
#[derive(Debug)]
pub struct TextStream<'a> {
    tokenizer: &'a Tokenizer,
    ids: Vec<u32>,
    prompt_len: usize,
    prompt_text: String,
    shown: String,
}

impl<'a> TextStream<'a> {
    /// A stream after the tokens `prompt`, which it does not return.
    pub fn new(tokenizer: &'a Tokenizer, prompt: Vec<u32>) -> Result<Self> {
        let text = tokenizer.decode(&prompt)?;
        Ok(Self {
            tokenizer,
            prompt_len: prompt.len(),
            ids: prompt,
            prompt_text: text.clone(),
            shown: text,
        })
    }

    /// Adds a token and returns the text it adds. Where decoding changes text already returned (rare:
    /// a word tokenizer re-spacing a quote), the text from the first difference on is returned again.
    pub fn push(&mut self, token: u32) -> Result<String> {
        self.ids.push(token);
        let text = self.tokenizer.decode(&self.ids)?;
        let common = common_prefix(&self.shown, &text);
        let new = text[common..].to_string();
        self.shown = text;
        Ok(new)
    }

    /// The text after the prompt.
    pub fn continuation(&self) -> String {
        let common = common_prefix(&self.prompt_text, &self.shown);
        self.shown[common..].to_string()
    }
}

/// Length in bytes of the longest common prefix of `a` and `b`, at a character boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((i, _), _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefixes_stop_at_the_first_different_character() {
        assert_eq!(common_prefix("said", "said,"), 4);
        assert_eq!(common_prefix("said,", "said"), 4);
        assert_eq!(common_prefix("café", "cafe"), 3);
        assert_eq!(common_prefix("", "x"), 0);
    }
}
