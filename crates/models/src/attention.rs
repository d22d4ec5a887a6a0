//! Global attention over the encoder's outputs, as in Luong, Pham and Manning (2015), with three score
//! functions: `dot`, `general` (Luong) and `additive` (Bahdanau's score, `concat` in Luong's paper).

use std::str::FromStr;

use candle_core::{bail, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

/// How a decoder step scores the encoder's outputs `s_j` against its own output `h_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AttentionKind {
    /// No attention: the decoder sees the source only through its initial state (the bridge).
    None,
    /// `score = h_t · s_j` (Luong). Needs encoder outputs as wide as the decoder: a one-directional
    /// encoder.
    Dot,
    /// `score = h_t · W s_j` (Luong's `general`); `attention.key.weight` is W, (hidden, encoder width).
    #[default]
    General,
    /// `score = v · tanh(W_q h_t + W_k s_j + b)` (Bahdanau's score, Luong's `concat`), with `hidden` units.
    Additive,
}

impl AttentionKind {
    /// The name used on the command line and in `config.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            AttentionKind::None => "none",
            AttentionKind::Dot => "dot",
            AttentionKind::General => "general",
            AttentionKind::Additive => "additive",
        }
    }
}

impl std::fmt::Display for AttentionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AttentionKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "none" => Ok(AttentionKind::None),
            "dot" => Ok(AttentionKind::Dot),
            "general" => Ok(AttentionKind::General),
            "additive" | "bahdanau" | "concat" => Ok(AttentionKind::Additive),
            other => Err(format!(
                "unknown attention '{other}': expected one of none, dot, general, additive"
            )),
        }
    }
}

/// The encoder's outputs prepared for attention once per source batch.
#[derive(Debug, Clone)]
pub struct Memory {
    /// The encoder's outputs, (batch, src_len, encoder width).
    pub values: Tensor,
    /// What scores are computed against: `values` (dot), `values·Wᵀ` (general) or `values·W_kᵀ + b`
    /// (additive); (batch, src_len, hidden).
    pub keys: Tensor,
    /// 0 at valid source positions, -1e9 at padding; (batch, 1, src_len).
    pub mask: Tensor,
}

impl Memory {
    /// Keeps the batch rows `indices` (u32, (n,)) of every tensor.
    pub fn select_rows(&self, indices: &Tensor) -> Result<Memory> {
        Ok(Memory {
            values: self.values.contiguous()?.index_select(indices, 0)?,
            keys: self.keys.contiguous()?.index_select(indices, 0)?,
            mask: self.mask.contiguous()?.index_select(indices, 0)?,
        })
    }
}

/// Luong's attention layer: scores, a softmax over the valid source positions, the context vector, and the
/// attentional output `h̃_t = tanh(W_c [c_t; h_t])`. Parameters (under `decoder.attention`):
///
/// ```text
/// key.weight      (hidden, enc)  general, additive      key.bias  (hidden,)  additive
/// query.weight    (hidden, hidden)  additive            v.weight  (1, hidden)  additive
/// combine.weight  (hidden, enc + hidden)  every kind but none (no bias, as in Luong)
/// ```
#[derive(Debug, Clone)]
pub struct Attention {
    kind: AttentionKind,
    key_w: Option<Tensor>,
    key_b: Option<Tensor>,
    query_w: Option<Tensor>,
    v: Option<Tensor>,
    combine_w: Tensor,
}

fn uniform(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

impl Attention {
    /// Builds the layer for decoder outputs of width `hidden` over encoder outputs of width `enc`.
    pub fn new(kind: AttentionKind, hidden: usize, enc: usize, vb: VarBuilder) -> Result<Self> {
        if kind == AttentionKind::None {
            bail!("Attention::new needs a score function; `none` has no attention layer");
        }
        if kind == AttentionKind::Dot && enc != hidden {
            bail!(
                "dot attention needs encoder outputs as wide as the decoder ({hidden}), got {enc}: use a \
                 one-directional encoder, or general or additive attention"
            );
        }
        let (mut key_w, mut key_b, mut query_w, mut v) = (None, None, None, None);
        if matches!(kind, AttentionKind::General | AttentionKind::Additive) {
            key_w = Some(
                vb.pp("key")
                    .get_with_hints((hidden, enc), "weight", uniform(enc))?,
            );
        }
        if kind == AttentionKind::Additive {
            key_b = Some(vb.pp("key").get_with_hints(hidden, "bias", uniform(enc))?);
            query_w = Some(vb.pp("query").get_with_hints(
                (hidden, hidden),
                "weight",
                uniform(hidden),
            )?);
            v = Some(
                vb.pp("v")
                    .get_with_hints((1, hidden), "weight", uniform(hidden))?,
            );
        }
        let combine_w = vb.pp("combine").get_with_hints(
            (hidden, enc + hidden),
            "weight",
            uniform(enc + hidden),
        )?;
        Ok(Self {
            kind,
            key_w,
            key_b,
            query_w,
            v,
            combine_w,
        })
    }

    /// The score function.
    pub fn kind(&self) -> AttentionKind {
        self.kind
    }

    /// Prepares the encoder outputs `values` (batch, src_len, enc) with their `lengths` for attention.
    pub fn memory(&self, values: &Tensor, lengths: &[usize]) -> Result<Memory> {
        let (batch, src_len, _) = values.dims3()?;
        if lengths.len() != batch {
            bail!("expected {batch} source lengths, got {}", lengths.len());
        }
        let keys = match &self.key_w {
            Some(w) => seqlab_cells::linear(values, w, self.key_b.as_ref())?,
            None => values.clone(),
        };
        let mask: Vec<f32> = lengths
            .iter()
            .flat_map(|&len| (0..src_len).map(move |j| if j < len { 0.0 } else { -1e9 }))
            .collect();
        let mask = Tensor::from_vec(mask, (batch, 1, src_len), values.device())?;
        Ok(Memory {
            values: values.clone(),
            keys,
            mask,
        })
    }

    /// Attends from the decoder outputs `query` (batch, tgt_len, hidden) over `memory`.
    ///
    /// Returns the attentional outputs `h̃` (batch, tgt_len, hidden) and the attention weights
    /// (batch, tgt_len, src_len), each row a distribution over the valid source positions.
    pub fn forward(&self, query: &Tensor, memory: &Memory) -> Result<(Tensor, Tensor)> {
        let scores = match (&self.query_w, &self.v) {
            (Some(query_w), Some(v)) => {
                // (batch, tgt, 1, hidden) + (batch, 1, src, hidden) → (batch, tgt, src, hidden) → · v
                let q = seqlab_cells::linear(query, query_w, None)?.unsqueeze(2)?;
                let k = memory.keys.unsqueeze(1)?;
                let energy = q.broadcast_add(&k)?.tanh()?;
                seqlab_cells::linear(&energy, v, None)?.squeeze(D::Minus1)?
            }
            _ => query
                .contiguous()?
                .matmul(&memory.keys.transpose(1, 2)?.contiguous()?)?,
        };
        // `candle_nn::ops::softmax`, not `softmax_last_dim`: the latter is a custom op without a backward
        // pass (`apply_op1_no_bwd`), so autograd would treat the weights as constants and the scores (keys,
        // queries, the additive energy) would never learn.
        let weights = candle_nn::ops::softmax(&scores.broadcast_add(&memory.mask)?, D::Minus1)?;
        let context = weights.matmul(&memory.values.contiguous()?)?;
        let combined = Tensor::cat(&[&context, query], D::Minus1)?;
        let out = seqlab_cells::linear(&combined, &self.combine_w, None)?.tanh()?;
        Ok((out, weights))
    }
}
