//! The translator: encoder (embedding → recurrent stack) → bridge → decoder (embedding → recurrent stack →
//! attention → linear head).

use candle_core::{bail, DType, Device, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use seqlab_cells::{CellKind, Recurrent, RecurrentConfig, State};
use seqlab_decode::StepModel;
use serde::{Deserialize, Serialize};

use crate::attention::{Attention, AttentionKind, Memory};
use crate::lm::dropout;
use crate::Mode;

/// The shape of a [`Seq2Seq`]: plain data, saved as `"model"` in a translator's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Seq2SeqConfig {
    /// Tokens of the source vocabulary, specials included.
    pub source_vocab: usize,
    /// Tokens of the target vocabulary, specials included: outputs of the head.
    pub target_vocab: usize,
    /// Width of both embeddings.
    pub embed: usize,
    /// Units of each recurrent layer, encoder (per direction) and decoder alike.
    pub hidden: usize,
    /// Recurrent layers of the encoder and of the decoder (the bridge maps layer k to layer k).
    pub layers: usize,
    /// The recurrent cell of both stacks.
    pub cell: CellKind,
    /// Read the source in both directions; the bridge and attention see both directions concatenated.
    pub bidirectional: bool,
    /// Attention of the decoder over the encoder's outputs.
    pub attention: AttentionKind,
    /// Luong's input feeding: the previous attentional output `h̃_{t-1}` is fed to the decoder beside the
    /// embedding of the previous token. The decoder then runs step by step in training (slower).
    pub input_feeding: bool,
    /// Dropout on the embeddings' recurrent outputs between layers and before the head, in training only.
    pub dropout: f32,
}

impl Default for Seq2SeqConfig {
    /// A translator that trains on tens of thousands of sentence pairs in minutes on two cores: embeddings
    /// of 128, one LSTM layer of 256 units (a bidirectional encoder costs twice the encoder time for a small
    /// gain at this size), `general` attention (one product per step, as good as additive here), dropout 0.2.
    fn default() -> Self {
        Self {
            source_vocab: 100,
            target_vocab: 100,
            embed: 128,
            hidden: 256,
            layers: 1,
            cell: CellKind::Lstm,
            bidirectional: false,
            attention: AttentionKind::General,
            input_feeding: false,
            dropout: 0.2,
        }
    }
}

impl Seq2SeqConfig {
    /// The encoder's recurrent stack.
    pub fn encoder_rnn(&self) -> RecurrentConfig {
        RecurrentConfig {
            num_layers: self.layers,
            bidirectional: self.bidirectional,
            dropout: self.dropout,
            ..RecurrentConfig::new(self.cell, self.embed, self.hidden)
        }
    }

    /// Width of the encoder's outputs: `hidden`, twice that when bidirectional.
    pub fn encoder_width(&self) -> usize {
        self.encoder_rnn().output_size()
    }

    /// Whether the decoder reads the previous attentional output (input feeding with an attention).
    pub fn feeds_input(&self) -> bool {
        self.input_feeding && self.attention != AttentionKind::None
    }

    /// The decoder's recurrent stack: its input is the embedding, plus `hidden` with input feeding.
    pub fn decoder_rnn(&self) -> RecurrentConfig {
        let input = self.embed + if self.feeds_input() { self.hidden } else { 0 };
        RecurrentConfig {
            num_layers: self.layers,
            dropout: self.dropout,
            ..RecurrentConfig::new(self.cell, input, self.hidden)
        }
    }

    /// Checks the sizes and the combination of options.
    pub fn validate(&self) -> Result<()> {
        if self.source_vocab == 0 || self.target_vocab == 0 || self.embed == 0 || self.hidden == 0 {
            bail!(
                "a translator needs non-empty vocabularies and positive embedding and hidden sizes"
            );
        }
        if self.layers == 0 {
            bail!("a translator needs at least one recurrent layer");
        }
        if self.input_feeding && self.attention == AttentionKind::None {
            bail!("input feeding feeds the attention's output back; it needs an attention other than none");
        }
        if self.attention == AttentionKind::Dot && self.bidirectional {
            bail!("dot attention needs a one-directional encoder (its outputs must be as wide as the decoder); use general or additive");
        }
        Ok(())
    }
}

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

/// The output of [`Seq2Seq::forward`].
#[derive(Debug, Clone)]
pub struct Seq2SeqOutput {
    /// Next-token logits at every target position, (batch, tgt_len, target_vocab).
    pub logits: Tensor,
    /// Attention weights, (batch, tgt_len, src_len); `None` without attention.
    pub attention: Option<Tensor>,
}

/// The encoder: `encoder.embedding.weight` (source_vocab, embed) and `encoder.rnn.*`.
#[derive(Debug, Clone)]
struct Encoder {
    embedding: Tensor,
    rnn: Recurrent,
}

/// The bridge: `bridge.h.{weight,bias}` (hidden, encoder width) and, for an LSTM, `bridge.c.*`, mapping each
/// encoder layer's final state (directions concatenated) to the decoder layer's initial state:
/// `h0 = tanh(W_h h_n + b_h)`, `c0 = W_c c_n + b_c`.
#[derive(Debug, Clone)]
struct Bridge {
    h: (Tensor, Tensor),
    c: Option<(Tensor, Tensor)>,
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

/// An encoder-decoder translator with PyTorch's parameter names:
///
/// ```text
/// encoder.embedding.weight (source_vocab, embed)   encoder.rnn.*   (nn.LSTM/GRU/RNN, batch_first)
/// bridge.h.weight (hidden, enc), bridge.h.bias      bridge.c.*      (LSTM only)
/// decoder.embedding.weight (target_vocab, embed)   decoder.rnn.*
/// decoder.attention.{key,query,v,combine}.*        (see [`Attention`])
/// decoder.head.weight (target_vocab, hidden), decoder.head.bias
/// ```
#[derive(Debug, Clone)]
pub struct Seq2Seq {
    config: Seq2SeqConfig,
    encoder: Encoder,
    bridge: Bridge,
    decoder: Decoder,
}

fn uniform(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

fn linear_params(vb: &VarBuilder, out: usize, inp: usize) -> Result<(Tensor, Tensor)> {
    Ok((
        vb.get_with_hints((out, inp), "weight", uniform(inp))?,
        vb.get_with_hints(out, "bias", uniform(inp))?,
    ))
}

fn embedding(vb: &VarBuilder, vocab: usize, embed: usize) -> Result<Tensor> {
    vb.get_with_hints(
        (vocab, embed),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
    )
}

impl Seq2Seq {
    /// Builds the model from `vb` (fresh weights from a `VarMap`, or a checkpoint).
    pub fn new(config: &Seq2SeqConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let enc_vb = vb.pp("encoder");
        let encoder = Encoder {
            embedding: embedding(&enc_vb.pp("embedding"), config.source_vocab, config.embed)?,
            rnn: Recurrent::new(&config.encoder_rnn(), enc_vb.pp("rnn"))?,
        };
        let enc = config.encoder_width();
        let bridge_vb = vb.pp("bridge");
        let bridge = Bridge {
            h: linear_params(&bridge_vb.pp("h"), config.hidden, enc)?,
            c: if config.cell.has_cell_state() {
                Some(linear_params(&bridge_vb.pp("c"), config.hidden, enc)?)
            } else {
                None
            },
        };
        let decoder = Decoder::new(
            &DecoderConfig {
                vocab: config.target_vocab,
                embed: config.embed,
                rnn: config.decoder_rnn(),
                attention: config.attention,
                memory_width: enc,
                dropout: config.dropout,
            },
            vb.pp("decoder"),
        )?;
        Ok(Self {
            config: config.clone(),
            encoder,
            bridge,
            decoder,
        })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &Seq2SeqConfig {
        &self.config
    }

    /// The decoder, a [`StepModel`] for `seqlab_decode::{generate, beam_search}`.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// Encodes `src` (batch, src_len) u32 with the valid `lengths` of its rows (each in 1..=src_len) and
    /// returns the decoder's state before its first step.
    pub fn encode(&self, src: &Tensor, lengths: &[usize], mode: Mode) -> Result<DecoderState> {
        let train = matches!(mode, Mode::Train { .. });
        let (batch, _) = src.dims2()?;
        let (outputs, state) = self.encoder.rnn.forward_embedded(
            src,
            &self.encoder.embedding,
            Some(lengths),
            None,
            train,
        )?;
        let dirs = self.config.encoder_rnn().directions();
        let (layers, hidden) = (self.config.layers, self.config.hidden);
        // (layers * dirs, batch, hidden) → (layers, batch, dirs * hidden), directions side by side.
        let join = |t: &Tensor| -> Result<Tensor> {
            t.reshape((layers, dirs, batch, hidden))?
                .permute((0, 2, 1, 3))?
                .reshape((layers, batch, dirs * hidden))
        };
        let h = seqlab_cells::linear(&join(&state.h)?, &self.bridge.h.0, Some(&self.bridge.h.1))?
            .tanh()?;
        let c = match (&state.c, &self.bridge.c) {
            (Some(c), Some((w, b))) => Some(seqlab_cells::linear(&join(c)?, w, Some(b))?),
            _ => None,
        };
        let memory = match &self.decoder.attention {
            Some(attention) => Some(attention.memory(&outputs, lengths)?),
            None => None,
        };
        let feed = if self.config.feeds_input() {
            Some(Tensor::zeros((batch, hidden), DType::F32, src.device())?)
        } else {
            None
        };
        Ok(DecoderState {
            rnn: State { h, c },
            feed,
            memory,
            attention: None,
        })
    }

    /// Runs the whole model over a batch: the source `src` (batch, src_len) with its `lengths`, and the
    /// decoder inputs `tgt_in` (batch, tgt_len) u32 (`<bos>` then the target shifted right).
    ///
    /// With full teacher forcing and no input feeding the decoder runs as one whole-sequence pass; otherwise
    /// step by step. Positions past a target's end compute values that a loss should ignore (their targets
    /// are `<pad>`).
    pub fn forward(
        &self,
        src: &Tensor,
        lengths: &[usize],
        tgt_in: &Tensor,
        mode: Mode,
        forcing: TeacherForcing,
    ) -> Result<Seq2SeqOutput> {
        let state = self.encode(src, lengths, mode)?;
        if forcing.ratio >= 1.0 && state.feed.is_none() {
            return self.decoder.forward_teacher(tgt_in, None, &state, mode);
        }
        self.decoder.forward_steps(tgt_in, state, mode, forcing)
    }
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
        let train = matches!(mode, Mode::Train { .. });
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
        let logits = self.head(&out, mode)?;
        Ok(Seq2SeqOutput { logits, attention })
    }

    /// Step by step, with input feeding and scheduled sampling (teacher forcing below 1).
    fn forward_steps(
        &self,
        tgt_in: &Tensor,
        mut state: DecoderState,
        mode: Mode,
        forcing: TeacherForcing,
    ) -> Result<Seq2SeqOutput> {
        let (batch, tgt_len) = tgt_in.dims2()?;
        let gold: Vec<u32> = tgt_in.flatten_all()?.to_vec1()?;
        let mut rng = forcing.seed ^ 0x7465_6163_6865_7266;
        let mut logits = Vec::with_capacity(tgt_len);
        let mut weights = Vec::with_capacity(tgt_len);
        let mut previous: Option<Vec<u32>> = None;
        for t in 0..tgt_len {
            let mut tokens: Vec<u32> = (0..batch).map(|b| gold[b * tgt_len + t]).collect();
            if let Some(predicted) = &previous {
                for (token, &p) in tokens.iter_mut().zip(predicted) {
                    if next_uniform(&mut rng) >= forcing.ratio {
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
        let out = match mode {
            Mode::Train { seed } if self.dropout > 0.0 => dropout(out, self.dropout, seed)?,
            _ => out.clone(),
        };
        seqlab_cells::linear(&out, &self.head_w, Some(&self.head_b))
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

/// A uniform draw in [0, 1) from a SplitMix64 stream.
fn next_uniform(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
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
