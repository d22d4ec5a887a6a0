//! The decoder shared by the translator and the captioner: embedding → recurrent stack → attention over a
//! memory (the source's encoded words, or an image's feature-map cells) → dropout → linear head. It
//! implements `StepModel`, so both pipelines decode through `seqlab-decode` the same way.

use candle_core::{Device, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use seqlab_base::SplitMix64;
use seqlab_cells::{dropout, Recurrent, RecurrentConfig, State};
use seqlab_decode::StepModel;

use crate::attention::{Attention, AttentionKind, Memory};
use crate::Mode;

/// How the decoder is fed in training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TeacherForcing {
    /// Probability that a step reads the reference token rather than the model's own previous prediction
    /// (greedy); 1 is full teacher forcing, the fast path. Drawn per row and step.
    pub ratio: f64,
    /// Seed of those draws.
    pub seed: u64,
}

impl Default for TeacherForcing {
    fn default() -> Self {
        Self {
            ratio: 1.0,
            seed: 0,
        }
    }
}

/// The decoder's state between steps: the recurrent state, the previous attentional output (input feeding),
/// the encoder's memory, and the last step's attention weights.
#[derive(Debug, Clone)]
pub struct DecoderState {
    /// The decoder stack's state, (layers, batch, hidden) each.
    pub rnn: State,
    /// The previous attentional output `h̃_{t-1}` (batch, hidden), zeros before the first step; with input
    /// feeding only.
    pub feed: Option<Tensor>,
    /// The encoder's outputs prepared for attention; `None` without attention.
    pub memory: Option<Memory>,
    /// The attention weights of the last step, (batch, src_len); `None` before the first step or without
    /// attention.
    pub attention: Option<Tensor>,
}

/// The output of [`crate::Seq2Seq::forward`] and of the decoder's whole-sequence passes.
#[derive(Debug, Clone)]
pub struct Seq2SeqOutput {
    /// Next-token logits at every target position, (batch, tgt_len, target_vocab).
    pub logits: Tensor,
    /// Attention weights, (batch, tgt_len, src_len); `None` without attention.
    pub attention: Option<Tensor>,
}

/// The decoder: `decoder.embedding.weight`, `decoder.rnn.*`, `decoder.attention.*` and `decoder.head.*`. It
/// implements [`StepModel`], so greedy decoding, sampling and beam search come from `seqlab-decode`.
#[derive(Debug, Clone)]
pub struct Decoder {
    embedding: Tensor,
    rnn: Recurrent,
    attention: Option<Attention>,
    head_w: Tensor,
    head_b: Tensor,
    hidden: usize,
    dropout: f32,
}

pub(crate) fn uniform(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

pub(crate) fn linear_params(vb: &VarBuilder, out: usize, inp: usize) -> Result<(Tensor, Tensor)> {
    Ok((
        vb.get_with_hints((out, inp), "weight", uniform(inp))?,
        vb.get_with_hints(out, "bias", uniform(inp))?,
    ))
}

pub(crate) fn embedding(vb: &VarBuilder, vocab: usize, embed: usize) -> Result<Tensor> {
    vb.get_with_hints(
        (vocab, embed),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
    )
}

/// The shape of a [`Decoder`], derived from the model's configuration (the translator's and the
/// captioner's decoders are the same module).
#[derive(Debug, Clone)]
pub(crate) struct DecoderConfig {
    /// Output tokens, specials included.
    pub vocab: usize,
    /// Width of the token embedding.
    pub embed: usize,
    /// The recurrent stack (its input is `embed`, plus its hidden size with input feeding).
    pub rnn: RecurrentConfig,
    /// The attention over the memory, or none.
    pub attention: AttentionKind,
    /// Width of the memory's values: the encoder's outputs, or the image's feature-map cells.
    pub memory_width: usize,
    /// Dropout before the head, in training.
    pub dropout: f32,
}

impl Decoder {
    /// Creates or loads `embedding.weight`, `rnn.*`, `attention.*` and `head.*` under `vb`.
    pub(crate) fn new(config: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        let hidden = config.rnn.hidden_size;
        let attention = match config.attention {
            AttentionKind::None => None,
            kind => Some(Attention::new(
                kind,
                hidden,
                config.memory_width,
                vb.pp("attention"),
            )?),
        };
        let (head_w, head_b) = linear_params(&vb.pp("head"), config.vocab, hidden)?;
        Ok(Self {
            embedding: embedding(&vb.pp("embedding"), config.vocab, config.embed)?,
            rnn: Recurrent::new(&config.rnn, vb.pp("rnn"))?,
            attention,
            head_w,
            head_b,
            hidden,
            dropout: config.dropout,
        })
    }

    /// The attention layer, if the decoder has one.
    pub fn attention(&self) -> Option<&Attention> {
        self.attention.as_ref()
    }

    /// The recurrent stack.
    pub(crate) fn rnn(&self) -> &Recurrent {
        &self.rnn
    }

    /// The whole target at once: one recurrent pass, attention for every position as batched products.
    /// With `lengths`, each row's recurrence stops at its length (PyTorch's packed sequences: outputs past
    /// it are zeros); positions past a row's end are meaningless either way.
    pub(crate) fn forward_teacher(
        &self,
        tgt_in: &Tensor,
        lengths: Option<&[usize]>,
        state: &DecoderState,
        mode: Mode,
    ) -> Result<Seq2SeqOutput> {
        let (features, attention) = self.teacher_features(tgt_in, lengths, state, mode)?;
        let logits = seqlab_cells::linear(&features, &self.head_w, Some(&self.head_b))?;
        Ok(Seq2SeqOutput { logits, attention })
    }

    /// [`Self::forward_teacher`] up to the head: the features the head reads (batch, tgt_len, hidden), dropout
    /// applied, and the attention weights.
    fn teacher_features(
        &self,
        tgt_in: &Tensor,
        lengths: Option<&[usize]>,
        state: &DecoderState,
        mode: Mode,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let train = mode.layers(0);
        let (outs, _) =
            self.rnn
                .forward_embedded(tgt_in, &self.embedding, lengths, Some(&state.rnn), train)?;
        let (out, attention) = match (&self.attention, &state.memory) {
            (Some(attention), Some(memory)) => {
                let (out, weights) = attention.forward(&outs, memory)?;
                (out, Some(weights))
            }
            _ => (outs, None),
        };
        Ok((self.head_dropout(&out, mode)?, attention))
    }

    /// The mean cross-entropy of the whole target at once (as [`Self::forward_teacher`]) against
    /// `targets` (batch, tgt_len), positions whose target is `ignore` left out: the head and the loss as one
    /// op ([`seqlab_cells::linear_cross_entropy`]), so that the logits never enter the autograd graph.
    pub(crate) fn teacher_loss(
        &self,
        tgt_in: &Tensor,
        lengths: Option<&[usize]>,
        state: &DecoderState,
        mode: Mode,
        targets: &Tensor,
        ignore: u32,
    ) -> Result<Tensor> {
        let (features, _) = self.teacher_features(tgt_in, lengths, state, mode)?;
        seqlab_cells::linear_cross_entropy(
            &features,
            &self.head_w,
            &self.head_b,
            &targets.flatten_all()?,
            Some(ignore),
        )
    }

    /// Step by step, with input feeding and scheduled sampling (teacher forcing below 1).
    pub(crate) fn forward_steps(
        &self,
        tgt_in: &Tensor,
        mut state: DecoderState,
        mode: Mode,
        forcing: TeacherForcing,
    ) -> Result<Seq2SeqOutput> {
        let (batch, tgt_len) = tgt_in.dims2()?;
        let gold: Vec<u32> = tgt_in.flatten_all()?.to_vec1()?;
        let mut rng = SplitMix64::new(forcing.seed ^ 0x7465_6163_6865_7266);
        let mut logits = Vec::with_capacity(tgt_len);
        let mut weights = Vec::with_capacity(tgt_len);
        let mut previous: Option<Vec<u32>> = None;
        for t in 0..tgt_len {
            let mut tokens: Vec<u32> = (0..batch).map(|b| gold[b * tgt_len + t]).collect();
            if let Some(predicted) = &previous {
                for (token, &p) in tokens.iter_mut().zip(predicted) {
                    if rng.unit() >= forcing.ratio {
                        *token = p;
                    }
                }
            }
            let tokens = Tensor::new(tokens.as_slice(), tgt_in.device())?;
            let step_mode = match mode {
                Mode::Train { seed } => Mode::Train {
                    seed: seed.wrapping_add((t as u64).wrapping_mul(0x9E37_79B9)),
                },
                Mode::Eval => Mode::Eval,
            };
            let (step_logits, next) = self.step_with_graph(&tokens, &state, step_mode)?;
            if forcing.ratio < 1.0 {
                previous = Some(step_logits.detach().argmax(D::Minus1)?.to_vec1()?);
            }
            logits.push(step_logits);
            if let Some(w) = &next.attention {
                weights.push(w.clone());
            }
            state = next;
        }
        let logits = Tensor::stack(&logits, 1)?;
        let attention = if weights.is_empty() {
            None
        } else {
            Some(Tensor::stack(&weights, 1)?)
        };
        Ok(Seq2SeqOutput { logits, attention })
    }

    /// One step, attached to the autograd graph: `tokens` (batch,) → logits (batch, target_vocab).
    fn step_with_graph(
        &self,
        tokens: &Tensor,
        state: &DecoderState,
        mode: Mode,
    ) -> Result<(Tensor, DecoderState)> {
        let mut x = self.embedding.index_select(tokens, 0)?;
        if let Some(feed) = &state.feed {
            x = Tensor::cat(&[&x, feed], 1)?;
        }
        let (y, rnn) = self.rnn.step(&x, &state.rnn)?;
        let (out, attention) = match (&self.attention, &state.memory) {
            (Some(attention), Some(memory)) => {
                let (out, weights) = attention.forward(&y.unsqueeze(1)?, memory)?;
                (out.squeeze(1)?, Some(weights.squeeze(1)?))
            }
            _ => (y, None),
        };
        let feed = state.feed.as_ref().map(|_| out.clone());
        let logits = self.head(&out, mode)?;
        Ok((
            logits,
            DecoderState {
                rnn,
                feed,
                memory: state.memory.clone(),
                attention,
            },
        ))
    }

    /// Dropout (training) and the linear head: (…, hidden) → (…, target_vocab).
    fn head(&self, out: &Tensor, mode: Mode) -> Result<Tensor> {
        seqlab_cells::linear(
            &self.head_dropout(out, mode)?,
            &self.head_w,
            Some(&self.head_b),
        )
    }

    /// The dropout before the head, in training only.
    fn head_dropout(&self, out: &Tensor, mode: Mode) -> Result<Tensor> {
        match mode {
            Mode::Train { seed } if self.dropout > 0.0 => dropout(out, self.dropout, seed),
            _ => Ok(out.clone()),
        }
    }

    /// Width of the decoder's outputs.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// The device of the parameters.
    pub fn device(&self) -> &Device {
        self.embedding.device()
    }
}

impl StepModel for Decoder {
    type State = DecoderState;

    /// One decoding step: `tokens` (batch,) → logits (batch, target_vocab) and the next state, detached from
    /// any autograd graph. The state's `attention` holds this step's weights, for plotting.
    fn step(&self, tokens: &Tensor, state: &DecoderState) -> Result<(Tensor, DecoderState)> {
        let (logits, next) = self.step_with_graph(tokens, state, Mode::Eval)?;
        Ok((
            logits.detach(),
            DecoderState {
                rnn: next.rnn.detach(),
                feed: next.feed.as_ref().map(Tensor::detach),
                memory: next.memory,
                attention: next.attention.as_ref().map(Tensor::detach),
            },
        ))
    }

    fn select(&self, state: &DecoderState, indices: &Tensor) -> Result<DecoderState> {
        let rows = |t: &Tensor| t.contiguous()?.index_select(indices, 0);
        Ok(DecoderState {
            rnn: state.rnn.select_rows(indices)?,
            feed: state.feed.as_ref().map(rows).transpose()?,
            memory: state
                .memory
                .as_ref()
                .map(|m| m.select_rows(indices))
                .transpose()?,
            attention: state.attention.as_ref().map(rows).transpose()?,
        })
    }
}
