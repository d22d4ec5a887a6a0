//! The classifier: (embedding | one-hot) → recurrent stack over padded rows with lengths → pooling over
//! the valid steps → dropout → linear head.

use candle_core::{bail, DType, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use seqlab_cells::{dropout, CellKind, CellOptions, Recurrent, RecurrentConfig};
use serde::{Deserialize, Serialize};

use crate::Mode;

/// How a [`Classifier`] turns the recurrent outputs of a row into one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The last layer's final state: the forward direction at each row's last valid step, and for a
    /// bidirectional stack the backward direction at step 0 (where it ends), concatenated — PyTorch's
    /// `torch.cat([h_n[-2], h_n[-1]], 1)` over a packed sequence.
    Last,
    /// The mean of the outputs over the valid steps.
    Mean,
    /// The element-wise maximum of the outputs over the valid steps.
    #[default]
    Max,
}

impl Pooling {
    /// The name used on the command line and in `config.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Last => "last",
            Pooling::Mean => "mean",
            Pooling::Max => "max",
        }
    }
}

impl std::fmt::Display for Pooling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Pooling {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "last" => Ok(Pooling::Last),
            "mean" => Ok(Pooling::Mean),
            "max" => Ok(Pooling::Max),
            other => Err(format!(
                "unknown pooling '{other}': expected last, mean or max"
            )),
        }
    }
}

/// The shape of a [`Classifier`]: plain data, saved as `"model"` in a model directory's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierConfig {
    /// Tokens in the vocabulary, special tokens included.
    pub vocab_size: usize,
    /// Classes: outputs of the head.
    pub num_classes: usize,
    /// Width of the token embedding; 0 feeds one-hot vectors of width `vocab_size` (no `embedding.weight`).
    pub embed: usize,
    /// The recurrent cell of every layer.
    pub cell: CellKind,
    /// Units of each direction of each recurrent layer.
    pub hidden: usize,
    /// Stacked recurrent layers.
    pub layers: usize,
    /// Read each row backwards too and concatenate the two directions (the head sees `2 * hidden` features).
    pub bidirectional: bool,
    /// How the outputs over a row's valid steps become one vector.
    pub pool: Pooling,
    /// Dropout probability between the recurrent layers and on the pooled vector before the head, in
    /// training only. 0 disables it.
    pub dropout: f32,
    /// How the recurrent layers are arranged (plain, or residual blocks) and cell options (IndRNN's
    /// bound); the defaults are left out of `config.json`.
    #[serde(default, skip_serializing_if = "CellOptions::is_default")]
    pub cell_options: CellOptions,
    /// Dropout probability on the embedded tokens before the recurrent stack, in training only
    /// (`nn.Dropout` on `embedding(ids)`). 0 (the default) disables it.
    pub embed_dropout: f32,
}

impl Default for ClassifierConfig {
    /// The topic classifier measured on the BBC news set (docs/classification.md): word embeddings of 128,
    /// one bidirectional GRU layer of 128 units per direction (as good as an LSTM there, at three quarters
    /// of the cost), max pooling (each feature fires wherever its topic word is, however long the text;
    /// mean and last pooling did worse), and dropout 0.5 (a few thousand short texts overfit within a few
    /// epochs; 0.3 did worse).
    fn default() -> Self {
        Self {
            vocab_size: 100,
            num_classes: 2,
            embed: 128,
            cell: CellKind::Gru,
            hidden: 128,
            layers: 1,
            bidirectional: true,
            pool: Pooling::Max,
            dropout: 0.5,
            cell_options: CellOptions::default(),
            embed_dropout: 0.0,
        }
    }
}

impl ClassifierConfig {
    /// Width of the recurrent stack's input: `embed`, or `vocab_size` for one-hot input.
    pub fn input_size(&self) -> usize {
        if self.embed == 0 {
            self.vocab_size
        } else {
            self.embed
        }
    }

    /// Width of the pooled vector the head reads: `directions * hidden`.
    pub fn features(&self) -> usize {
        self.recurrent().output_size()
    }

    /// The recurrent stack's configuration (PyTorch's `nn.GRU(input, hidden, layers, dropout=...,
    /// bidirectional=...)`).
    pub fn recurrent(&self) -> RecurrentConfig {
        RecurrentConfig {
            num_layers: self.layers,
            dropout: self.dropout,
            bidirectional: self.bidirectional,
            options: self.cell_options.clone(),
            ..RecurrentConfig::new(self.cell, self.input_size(), self.hidden)
        }
    }
}

/// A recurrent text classifier with PyTorch's parameter names:
///
/// ```text
/// embedding.weight                          (vocab_size, embed)        absent when embed = 0 (one-hot input)
/// rnn.weight_ih_l{k}[_reverse], rnn.weight_hh_l{k}[_reverse], rnn.bias_ih_l{k}[_reverse], rnn.bias_hh_l{k}[_reverse]
/// head.weight                               (num_classes, directions * hidden)
/// head.bias                                 (num_classes,)
/// ```
///
/// so a PyTorch module with attributes `embedding = nn.Embedding(...)`, `rnn = nn.GRU(..., batch_first=True,
/// bidirectional=...)` and `head = nn.Linear(...)` loads from its `state_dict` saved with safetensors.
/// Padding never changes a prediction: the recurrence stops at each row's length (PyTorch's packed
/// sequences) and pooling reads valid steps only.
#[derive(Debug, Clone)]
pub struct Classifier {
    config: ClassifierConfig,
    embedding: Option<Tensor>,
    rnn: Recurrent,
    head_w: Tensor,
    head_b: Tensor,
}

impl Classifier {
    /// Builds the classifier from `vb`: a `VarBuilder` over a `VarMap` initialises fresh weights with
    /// PyTorch's defaults (embedding N(0, 1), recurrent weights U(-1/√hidden, 1/√hidden), head
    /// U(-1/√features, 1/√features) as `nn.Linear`); one over a safetensors file loads them.
    pub fn new(config: &ClassifierConfig, vb: VarBuilder) -> Result<Self> {
        if config.vocab_size == 0 || config.num_classes == 0 {
            bail!(
                "a classifier needs a vocabulary and at least one class, got vocabulary {} and {} classes",
                config.vocab_size,
                config.num_classes
            );
        }
        for (name, p) in [
            ("dropout", config.dropout),
            ("embed_dropout", config.embed_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                bail!("{name} must be in [0, 1), got {p}");
            }
        }
        let embedding = if config.embed == 0 {
            None
        } else {
            Some(vb.pp("embedding").get_with_hints(
                (config.vocab_size, config.embed),
                "weight",
                Init::Randn {
                    mean: 0.0,
                    stdev: 1.0,
                },
            )?)
        };
        let rnn = Recurrent::new(&config.recurrent(), vb.pp("rnn"))?;
        let features = config.features();
        let bound = 1.0 / (features as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let head = vb.pp("head");
        let head_w = head.get_with_hints((config.num_classes, features), "weight", init)?;
        let head_b = head.get_with_hints(config.num_classes, "bias", init)?;
        Ok(Self {
            config: config.clone(),
            embedding,
            rnn,
            head_w,
            head_b,
        })
    }

    /// The configuration the classifier was built from.
    pub fn config(&self) -> &ClassifierConfig {
        &self.config
    }

    /// The recurrent stack.
    pub fn rnn(&self) -> &Recurrent {
        &self.rnn
    }

    /// The pooled vector of each row, before dropout and the head: (batch, directions * hidden).
    ///
    /// `ids` (batch, seq) u32, padded after each row's `lengths[row]` tokens (each in `1..=seq`; `None`: every
    /// row is full). Padding ids are never read.
    pub fn features(&self, ids: &Tensor, lengths: Option<&[usize]>, mode: Mode) -> Result<Tensor> {
        let train = mode.layers(0);
        let (batch, seq_len) = ids.dims2()?;
        let (out, state) = match (&self.embedding, mode) {
            (Some(embedding), Mode::Train { seed }) if self.config.embed_dropout > 0.0 => {
                let xs = embedding.index_select(&ids.flatten_all()?, 0)?.reshape((
                    batch,
                    seq_len,
                    self.config.embed,
                ))?;
                // Masks apart from those of the head's dropout, which uses `seed` itself.
                let xs = dropout(&xs, self.config.embed_dropout, seed ^ 0x5EED_E4BE_D000_0001)?;
                self.rnn.forward(&xs, lengths, None, train)?
            }
            (Some(embedding), _) => self
                .rnn
                .forward_embedded(ids, embedding, lengths, None, train)?,
            (None, _) => self.rnn.forward_one_hot(ids, lengths, None, train)?,
        };
        let config = self.rnn.config();
        let dirs = config.directions();
        match self.config.pool {
            Pooling::Last => {
                // The last layer's rows of h_n: (dirs, batch, hidden) → (batch, dirs * hidden).
                let start = (config.num_layers - 1) * dirs;
                state
                    .h
                    .narrow(0, start, dirs)?
                    .transpose(0, 1)?
                    .contiguous()?
                    .reshape((batch, dirs * config.hidden_size))
            }
            Pooling::Mean => {
                // Outputs past a row's length are zero, so the sum over all steps is the sum over valid ones.
                let counts: Vec<f32> = match lengths {
                    Some(lengths) => lengths.iter().map(|&l| l as f32).collect(),
                    None => vec![seq_len as f32; batch],
                };
                let counts = Tensor::from_vec(counts, (batch, 1), ids.device())?;
                out.sum(1)?.broadcast_div(&counts)
            }
            Pooling::Max => {
                let out = match lengths {
                    Some(lengths) => {
                        let penalty: Vec<f32> = lengths
                            .iter()
                            .flat_map(|&l| {
                                (0..seq_len)
                                    .map(move |t| if t < l { 0.0 } else { f32::NEG_INFINITY })
                            })
                            .collect();
                        let penalty = Tensor::from_vec(penalty, (batch, seq_len, 1), ids.device())?
                            .to_dtype(out.dtype())?;
                        out.broadcast_add(&penalty)?
                    }
                    None => out,
                };
                out.max(1)
            }
        }
    }

    /// The logits of each row's classes, (batch, num_classes); see [`Classifier::features`] for `ids` and
    /// `lengths`. `Mode::Train` applies dropout (its masks drawn from the mode's seed).
    pub fn forward(&self, ids: &Tensor, lengths: Option<&[usize]>, mode: Mode) -> Result<Tensor> {
        let pooled = self.features(ids, lengths, mode)?;
        let pooled = match mode {
            Mode::Train { seed } if self.config.dropout > 0.0 => {
                dropout(&pooled, self.config.dropout, seed)?
            }
            _ => pooled,
        };
        seqlab_cells::linear(&pooled, &self.head_w, Some(&self.head_b))
    }

    /// Class probabilities of each row, (batch, num_classes): the softmax of [`Classifier::forward`] without
    /// dropout.
    pub fn probabilities(&self, ids: &Tensor, lengths: Option<&[usize]>) -> Result<Tensor> {
        let logits = self.forward(ids, lengths, Mode::Eval)?;
        candle_nn::ops::softmax(&logits.to_dtype(DType::F32)?, D::Minus1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::VarMap;

    fn build(config: &ClassifierConfig) -> (VarMap, Classifier) {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = Classifier::new(config, vb).unwrap();
        (varmap, model)
    }

    #[test]
    fn every_pooling_gives_one_row_of_logits_per_input_row() {
        for pool in [Pooling::Last, Pooling::Mean, Pooling::Max] {
            let config = ClassifierConfig {
                vocab_size: 10,
                num_classes: 4,
                embed: 6,
                hidden: 5,
                layers: 2,
                pool,
                ..Default::default()
            };
            let (_, model) = build(&config);
            let ids =
                Tensor::new(&[[4u32, 5, 6, 7], [8, 9, 0, 0], [4, 0, 0, 0]], &Device::Cpu).unwrap();
            let logits = model.forward(&ids, Some(&[4, 2, 1]), Mode::Eval).unwrap();
            assert_eq!(logits.dims(), [3, 4]);
            let features = model.features(&ids, Some(&[4, 2, 1]), Mode::Eval).unwrap();
            assert_eq!(features.dims(), [3, 10]);
            let p = model.probabilities(&ids, Some(&[4, 2, 1])).unwrap();
            let sums: Vec<f32> = p.sum(1).unwrap().to_vec1().unwrap();
            assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
        }
    }

    #[test]
    fn the_training_mode_drops_features_reproducibly() {
        let config = ClassifierConfig {
            vocab_size: 10,
            num_classes: 3,
            embed: 4,
            hidden: 8,
            dropout: 0.5,
            ..Default::default()
        };
        let (_, model) = build(&config);
        let ids = Tensor::new(&[[4u32, 5, 6], [7, 8, 9]], &Device::Cpu).unwrap();
        let run = |mode| {
            model
                .forward(&ids, None, mode)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let eval = run(Mode::Eval);
        let a = run(Mode::Train { seed: 1 });
        assert_eq!(a, run(Mode::Train { seed: 1 }));
        assert_ne!(a, run(Mode::Train { seed: 2 }));
        assert_ne!(a, eval);
    }

    #[test]
    fn pooling_names_round_trip() {
        for pool in [Pooling::Last, Pooling::Mean, Pooling::Max] {
            assert_eq!(pool.as_str().parse::<Pooling>(), Ok(pool));
        }
        assert!("sum".parse::<Pooling>().is_err());
    }
}
