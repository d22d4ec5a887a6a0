//! The translator: encoder (embedding → recurrent stack) → bridge → decoder (embedding → recurrent stack →
//! attention → linear head).

use candle_core::{bail, DType, Result, Tensor};
use candle_nn::VarBuilder;
use seqlab_cells::{CellKind, CellOptions, Recurrent, RecurrentConfig, State};
use serde::{Deserialize, Serialize};

use crate::attention::AttentionKind;
use crate::decoder::{
    embedding, linear_params, Decoder, DecoderConfig, DecoderState, Seq2SeqOutput, TeacherForcing,
};
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
    /// How the recurrent layers are arranged (plain, or residual blocks) and cell options (IndRNN's
    /// bound); the defaults are left out of `config.json`.
    #[serde(default, skip_serializing_if = "CellOptions::is_default")]
    pub cell_options: CellOptions,
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
            cell_options: CellOptions::default(),
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
            options: self.cell_options.clone(),
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
            options: self.cell_options.clone(),
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

/// The encoder: `encoder.embedding.weight` (source_vocab, embed) and `encoder.rnn.*`.
#[derive(Debug, Clone)]
struct Encoder {
    embedding: Tensor,
    rnn: Recurrent,
}

/// The bridge: `bridge.h.{weight,bias}` (hidden, encoder width) and one map per memory slot of the cell that
/// a learned map may set (an LSTM's `bridge.c.*`), mapping each encoder layer's final state (directions
/// concatenated) to the decoder layer's initial state: `h0 = tanh(W_h h_n + b_h)`, `c0 = W_c c_n + b_c`. Other
/// memory slots (normalisers, stabilisers) start at zero.
#[derive(Debug, Clone)]
struct Bridge {
    h: (Tensor, Tensor),
    /// Per memory slot, in the cell's order: its map, or `None` for a slot that starts at zero.
    memory: Vec<Option<(Tensor, Tensor)>>,
}

/// An encoder-decoder translator with PyTorch's parameter names:
///
/// ```text
/// encoder.embedding.weight (source_vocab, embed)   encoder.rnn.*   (nn.LSTM/GRU/RNN, batch_first)
/// bridge.h.weight (hidden, enc), bridge.h.bias      bridge.c.*      (LSTM only)
/// decoder.embedding.weight (target_vocab, embed)   decoder.rnn.*
/// decoder.attention.{key,query,v,combine}.*        (see [`crate::Attention`])
/// decoder.head.weight (target_vocab, hidden), decoder.head.bias
/// ```
#[derive(Debug, Clone)]
pub struct Seq2Seq {
    config: Seq2SeqConfig,
    encoder: Encoder,
    bridge: Bridge,
    decoder: Decoder,
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
        let dirs = config.encoder_rnn().directions();
        let bridge = Bridge {
            h: linear_params(&bridge_vb.pp("h"), config.hidden, enc)?,
            memory: encoder
                .rnn
                .memory()
                .iter()
                .map(|slot| {
                    slot.learned_init
                        .then(|| {
                            linear_params(&bridge_vb.pp(slot.name), slot.width, dirs * slot.width)
                        })
                        .transpose()
                })
                .collect::<Result<_>>()?,
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

    /// The decoder, a [`seqlab_decode::StepModel`] for `seqlab_decode::{generate, beam_search}`.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// Encodes `src` (batch, src_len) u32 with the valid `lengths` of its rows (each in 1..=src_len) and
    /// returns the decoder's state before its first step.
    pub fn encode(&self, src: &Tensor, lengths: &[usize], mode: Mode) -> Result<DecoderState> {
        // The decoder's stack draws its masks from the seed itself.
        let train = mode.layers(0x656E_636F_6465_7221);
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
            let width = t.dim(2)?;
            t.reshape((layers, dirs, batch, width))?
                .permute((0, 2, 1, 3))?
                .reshape((layers, batch, dirs * width))
        };
        let h = seqlab_cells::linear(&join(&state.h)?, &self.bridge.h.0, Some(&self.bridge.h.1))?
            .tanh()?;
        let rnn_memory = state
            .memory
            .iter()
            .zip(&self.bridge.memory)
            .map(|(m, map)| match map {
                Some((w, b)) => seqlab_cells::linear(&join(m)?, w, Some(b)),
                None => Tensor::zeros((layers, batch, m.dim(2)?), DType::F32, src.device()),
            })
            .collect::<Result<_>>()?;
        let memory = match self.decoder.attention() {
            Some(attention) => Some(attention.memory(&outputs, lengths)?),
            None => None,
        };
        let feed = if self.config.feeds_input() {
            Some(Tensor::zeros((batch, hidden), DType::F32, src.device())?)
        } else {
            None
        };
        Ok(DecoderState {
            rnn: State {
                h,
                memory: rnn_memory,
            },
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

    /// The mean cross-entropy of [`Self::forward`]'s logits against `tgt_out` (batch, tgt_len) u32, positions
    /// whose target is `ignore` (`<pad>`) left out: the training loss. With the whole-sequence pass the
    /// head and the loss run as one op, which keeps the (tokens × target vocabulary) logits and their gradient
    /// out of the autograd graph.
    #[allow(clippy::too_many_arguments)] // forward's six, and the targets with the id they leave out
    pub fn loss(
        &self,
        src: &Tensor,
        lengths: &[usize],
        tgt_in: &Tensor,
        tgt_out: &Tensor,
        mode: Mode,
        forcing: TeacherForcing,
        ignore: u32,
    ) -> Result<Tensor> {
        let state = self.encode(src, lengths, mode)?;
        if forcing.ratio >= 1.0 && state.feed.is_none() {
            return self
                .decoder
                .teacher_loss(tgt_in, None, &state, mode, tgt_out, ignore);
        }
        let logits = self
            .decoder
            .forward_steps(tgt_in, state, mode, forcing)?
            .logits;
        let (batch, tgt_len, vocab) = logits.dims3()?;
        seqlab_cells::cross_entropy(
            &logits.reshape((batch * tgt_len, vocab))?,
            &tgt_out.flatten_all()?,
            Some(ignore),
        )
    }
}
