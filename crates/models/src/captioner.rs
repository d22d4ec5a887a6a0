//! The captioner (one-to-many): a CNN encoder turns an image into a vector, a projection maps it into the
//! decoder, and a recurrent decoder writes the caption word by word.

use candle_core::{bail, DType, Device, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use seqlab_cells::{CellKind, Recurrent, RecurrentConfig, State};
use seqlab_decode::StepModel;
use serde::{Deserialize, Serialize};

use crate::cnn::{CnnConfig, CnnEncoder};
use crate::lm::{dropout, Mode};

/// How the image reaches the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Inject {
    /// The projected image feature is the decoder's initial hidden state `h0` (every layer its own slice; an
    /// LSTM's `c0` is zero). The decoder then reads `<bos>` and the caption. There is no tanh: the
    /// projection learns a large constant state first (the captions' language model) and a saturated tanh
    /// then passes no gradient back to the image, which the decoder ends up ignoring.
    #[default]
    Init,
    /// The projected image feature is the decoder's first input, before `<bos>` (Show and Tell): the
    /// decoder starts from the zero state, reads the image, then `<bos>` and the caption.
    First,
}

impl std::str::FromStr for Inject {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "init" => Ok(Inject::Init),
            "first" => Ok(Inject::First),
            other => Err(format!(
                "unknown image injection '{other}': expected init or first"
            )),
        }
    }
}

/// The shape of a [`Captioner`]: plain data, saved as `"model"` in a model directory's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptionerConfig {
    /// The image encoder.
    pub encoder: CnnConfig,
    /// How the image feature reaches the decoder.
    pub inject: Inject,
    /// Words in the vocabulary, special tokens included.
    pub vocab_size: usize,
    /// Width of the word embedding (and of the projected image with [`Inject::First`]). 64: captions use a
    /// few hundred to a few thousand words.
    pub embed: usize,
    /// The decoder's recurrent cell.
    pub cell: CellKind,
    /// Units of each decoder layer. 256: enough for short captions, fast on two cores.
    pub hidden: usize,
    /// Stacked decoder layers.
    pub layers: usize,
    /// Dropout on the image feature, between decoder layers and on the decoder's outputs, in training only.
    /// 0.2: small caption sets overfit quickly.
    pub dropout: f32,
}

impl Default for CaptionerConfig {
    fn default() -> Self {
        Self {
            encoder: CnnConfig::default(),
            inject: Inject::Init,
            vocab_size: 100,
            embed: 64,
            cell: CellKind::Lstm,
            hidden: 256,
            layers: 1,
            dropout: 0.2,
        }
    }
}

impl CaptionerConfig {
    /// The decoder's recurrent stack.
    pub fn recurrent(&self) -> RecurrentConfig {
        RecurrentConfig {
            num_layers: self.layers,
            dropout: self.dropout,
            ..RecurrentConfig::new(self.cell, self.embed, self.hidden)
        }
    }

    /// Outputs of `project`: `embed` ([`Inject::First`]) or `layers * hidden` ([`Inject::Init`]).
    pub fn project_size(&self) -> usize {
        match self.inject {
            Inject::Init => self.layers * self.hidden,
            Inject::First => self.embed,
        }
    }

    /// Number of trainable parameters (batch norm's running statistics not counted).
    pub fn num_parameters(&self) -> usize {
        let gates = self.cell.gates() * self.hidden;
        let rnn: usize = (0..self.layers)
            .map(|layer| {
                let input = if layer == 0 { self.embed } else { self.hidden };
                gates * (input + self.hidden + 2)
            })
            .sum();
        self.encoder.num_parameters()
            + (self.encoder.feature_size() + 1) * self.project_size()
            + self.vocab_size * self.embed
            + rnn
            + self.vocab_size * (self.hidden + 1)
    }
}

/// A CNN encoder and a recurrent decoder, with PyTorch's parameter names:
///
/// ```text
/// encoder.blocks.{i}.conv.weight        (out, in, 3, 3)
/// encoder.blocks.{i}.bn.{weight,bias,running_mean,running_var}    (out,)
/// project.weight, project.bias          (project_size, feature_size), (project_size,)
/// decoder.embedding.weight              (vocab_size, embed)
/// decoder.rnn.weight_ih_l{k}, ...       as nn.LSTM / nn.GRU / nn.RNN (batch_first=True)
/// decoder.head.weight, decoder.head.bias
/// ```
///
/// The decoder implements [`StepModel`]: [`Captioner::initial_state`] encodes the images, and greedy or beam
/// decoding from `<bos>` comes from `seqlab_decode`.
#[derive(Debug, Clone)]
pub struct Captioner {
    config: CaptionerConfig,
    encoder: CnnEncoder,
    project_w: Tensor,
    project_b: Tensor,
    embedding: Tensor,
    rnn: Recurrent,
    head_w: Tensor,
    head_b: Tensor,
}

/// `U(±1/√fan_in)`, PyTorch's default for linear layers.
fn fan_in_uniform(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

impl Captioner {
    /// Builds or loads the model from `vb` (see [`crate::LanguageModel::new`] for the initialisation).
    pub fn new(config: &CaptionerConfig, vb: VarBuilder) -> Result<Self> {
        if config.vocab_size == 0 || config.embed == 0 {
            bail!("a captioner needs a vocabulary and an embedding of at least one");
        }
        let encoder = CnnEncoder::new(&config.encoder, vb.pp("encoder"))?;
        let features = config.encoder.feature_size();
        let init = fan_in_uniform(features);
        let project = vb.pp("project");
        let project_w =
            project.get_with_hints((config.project_size(), features), "weight", init)?;
        let project_b = project.get_with_hints(config.project_size(), "bias", init)?;
        let decoder = vb.pp("decoder");
        let embedding = decoder.pp("embedding").get_with_hints(
            (config.vocab_size, config.embed),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        )?;
        let rnn = Recurrent::new(&config.recurrent(), decoder.pp("rnn"))?;
        let init = fan_in_uniform(config.hidden);
        let head = decoder.pp("head");
        let head_w = head.get_with_hints((config.vocab_size, config.hidden), "weight", init)?;
        let head_b = head.get_with_hints(config.vocab_size, "bias", init)?;
        Ok(Self {
            config: config.clone(),
            encoder,
            project_w,
            project_b,
            embedding,
            rnn,
            head_w,
            head_b,
        })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &CaptionerConfig {
        &self.config
    }

    /// `images` (batch, 3, size, size) → the projected image feature (batch, project_size).
    pub fn encode(&self, images: &Tensor, mode: Mode) -> Result<Tensor> {
        let features = self.encoder.forward(images, mode)?;
        let features = match mode {
            Mode::Train { seed } if self.config.dropout > 0.0 => {
                dropout(&features, self.config.dropout, seed ^ 0x1A6E)?
            }
            _ => features,
        };
        seqlab_cells::linear(&features, &self.project_w, Some(&self.project_b))
    }

    /// The decoder's state before `<bos>` for `images` (batch, 3, size, size): (layers, batch, hidden) each.
    pub fn initial_state(&self, images: &Tensor, mode: Mode) -> Result<State> {
        let projected = self.encode(images, mode)?;
        let batch = projected.dim(0)?;
        let (layers, hidden) = (self.config.layers, self.config.hidden);
        match self.config.inject {
            Inject::Init => {
                let h = projected
                    .reshape((batch, layers, hidden))?
                    .transpose(0, 1)?
                    .contiguous()?;
                let c = if self.config.cell.has_cell_state() {
                    Some(h.zeros_like()?)
                } else {
                    None
                };
                Ok(State { h, c })
            }
            Inject::First => {
                let train = matches!(mode, Mode::Train { .. });
                let (_, state) = self
                    .rnn
                    .forward(&projected.unsqueeze(1)?, None, None, train)?;
                Ok(state)
            }
        }
    }

    /// Teacher-forced logits: `images` (batch, 3, size, size) and `ids` (batch, seq) u32, each row `<bos>`
    /// then the caption (padded past `lengths[row]`, the row's valid steps). Returns the logits of the next
    /// word at every position, (batch, seq, vocab_size); positions past a row's length are meaningless.
    pub fn forward(
        &self,
        images: &Tensor,
        ids: &Tensor,
        lengths: Option<&[usize]>,
        mode: Mode,
    ) -> Result<Tensor> {
        let train = matches!(mode, Mode::Train { .. });
        let state = self.initial_state(images, mode)?;
        let (out, _) =
            self.rnn
                .forward_embedded(ids, &self.embedding, lengths, Some(&state), train)?;
        let out = match mode {
            Mode::Train { seed } if self.config.dropout > 0.0 => {
                dropout(&out, self.config.dropout, seed)?
            }
            _ => out,
        };
        seqlab_cells::linear(&out, &self.head_w, Some(&self.head_b))
    }

    /// A zero decoder state for `batch` rows.
    pub fn zero_state(&self, batch: usize, device: &Device) -> Result<State> {
        self.rnn.zero_state(batch, DType::F32, device)
    }
}

impl StepModel for Captioner {
    type State = State;

    /// One decoder step: `tokens` (batch,) → logits (batch, vocab_size) and the next state, detached.
    fn step(&self, tokens: &Tensor, state: &State) -> Result<(Tensor, State)> {
        let x = self.embedding.index_select(tokens, 0)?;
        let (y, state) = self.rnn.step(&x, state)?;
        let logits = seqlab_cells::linear(&y, &self.head_w, Some(&self.head_b))?;
        Ok((logits.detach(), state.detach()))
    }

    fn select(&self, state: &State, indices: &Tensor) -> Result<State> {
        state.select_rows(indices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_count_matches_the_tensors() {
        for (inject, cell, layers) in [
            (Inject::Init, CellKind::Lstm, 2),
            (Inject::First, CellKind::Gru, 1),
        ] {
            let config = CaptionerConfig {
                encoder: CnnConfig {
                    image_size: 16,
                    channels: vec![4, 8],
                    ..CnnConfig::default()
                },
                inject,
                vocab_size: 11,
                embed: 6,
                cell,
                hidden: 5,
                layers,
                dropout: 0.0,
            };
            let varmap = candle_nn::VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            Captioner::new(&config, vb).unwrap();
            let data = varmap.data().lock().unwrap();
            let count: usize = data
                .iter()
                .filter(|(name, _)| !name.contains("running"))
                .map(|(_, v)| v.elem_count())
                .sum();
            assert_eq!(config.num_parameters(), count);
        }
    }
}

#[cfg(test)]
mod gradient_tests {
    use super::*;

    #[test]
    fn the_loss_reaches_the_encoder_and_the_projection() {
        for inject in [Inject::Init, Inject::First] {
            let config = CaptionerConfig {
                encoder: CnnConfig {
                    image_size: 8,
                    channels: vec![3],
                    ..CnnConfig::default()
                },
                inject,
                vocab_size: 7,
                embed: 4,
                cell: CellKind::Lstm,
                hidden: 5,
                layers: 1,
                dropout: 0.0,
            };
            let varmap = candle_nn::VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            let model = Captioner::new(&config, vb).unwrap();
            let images = Tensor::arange(0f32, 2.0 * 192.0, &Device::Cpu)
                .unwrap()
                .reshape((2, 3, 8, 8))
                .unwrap()
                .sin()
                .unwrap();
            let ids = Tensor::new(&[[2u32, 4, 5, 6], [2, 5, 6, 4]], &Device::Cpu).unwrap();
            let logits = model
                .forward(&images, &ids, Some(&[4, 3]), Mode::Train { seed: 1 })
                .unwrap();
            let loss = logits.sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let data = varmap.data().lock().unwrap();
            for name in [
                "project.weight",
                "encoder.blocks.0.conv.weight",
                "decoder.embedding.weight",
            ] {
                let grad = grads
                    .get(data[name].as_tensor())
                    .unwrap_or_else(|| panic!("{inject:?}: no gradient for {name}"));
                let norm = grad
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(norm > 0.0, "{inject:?}: {name} has a zero gradient");
            }
        }
    }
}

#[cfg(test)]
mod finite_differences {
    use super::*;

    #[test]
    fn the_gradient_through_the_image_matches_finite_differences() {
        for inject in [Inject::Init, Inject::First] {
            let config = CaptionerConfig {
                encoder: CnnConfig {
                    image_size: 8,
                    channels: vec![3],
                    ..CnnConfig::default()
                },
                inject,
                vocab_size: 7,
                embed: 4,
                cell: CellKind::Lstm,
                hidden: 5,
                layers: 1,
                dropout: 0.0,
            };
            let varmap = candle_nn::VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            let model = Captioner::new(&config, vb).unwrap();
            let images = Tensor::arange(0f32, 2.0 * 192.0, &Device::Cpu)
                .unwrap()
                .reshape((2, 3, 8, 8))
                .unwrap()
                .sin()
                .unwrap();
            // 2 rows of 8 steps over 7 words: the fused path folds the embedding into the input projection.
            let ids = Tensor::new(
                &[[2u32, 4, 5, 6, 1, 3, 4, 5], [2, 5, 6, 4, 4, 4, 3, 0]],
                &Device::Cpu,
            )
            .unwrap();
            let loss = |m: &Captioner| {
                m.forward(&images, &ids, Some(&[8, 6]), Mode::Eval)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
            };
            let l = loss(&model);
            let grads = l.backward().unwrap();
            let var = varmap.data().lock().unwrap()["project.bias"].clone();
            let g = grads
                .get(var.as_tensor())
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let base = var.as_tensor().to_vec1::<f32>().unwrap();
            for i in 0..base.len() {
                let mut plus = base.clone();
                plus[i] += 1e-2;
                var.set(&Tensor::new(plus.as_slice(), &Device::Cpu).unwrap())
                    .unwrap();
                let lp = loss(&model).to_scalar::<f32>().unwrap();
                let mut minus = base.clone();
                minus[i] -= 1e-2;
                var.set(&Tensor::new(minus.as_slice(), &Device::Cpu).unwrap())
                    .unwrap();
                let lm = loss(&model).to_scalar::<f32>().unwrap();
                var.set(&Tensor::new(base.as_slice(), &Device::Cpu).unwrap())
                    .unwrap();
                let fd = (lp - lm) / 2e-2;
                assert!(
                    (fd - g[i]).abs() < 1e-3 + 0.02 * g[i].abs(),
                    "{inject:?} {i}: {fd} vs {}",
                    g[i]
                );
            }
        }
    }
}
