//! The captioner (one-to-many): a CNN encoder turns an image into a vector, a projection maps it into the
//! decoder, and a recurrent decoder writes the caption word by word.

use candle_core::{bail, DType, Device, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use seqlab_cells::{dropout, Block, CellKind, CellOptions, RecurrentConfig, State};
use seqlab_decode::StepModel;
use serde::{Deserialize, Serialize};

use crate::attention::AttentionKind;
use crate::cnn::{CnnConfig, CnnEncoder};
use crate::decoder::{Decoder, DecoderConfig, DecoderState};
use crate::Mode;

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
    /// Attention of the decoder over the cells of the encoder's last feature map ("Show, Attend and Tell",
    /// with the translator's Luong attention): at every word, the decoder's output scores each of the
    /// map's `side²` cells (`channels` features each) and reads their weighted sum. `general` by default;
    /// `none` (also what a `config.json` written before attention existed means) leaves the image only
    /// `inject`'s single vector.
    #[serde(default = "no_attention")]
    pub attention: AttentionKind,
    /// Append each map cell's coordinates (row, column, each from -1 to 1 as `torch.linspace`) to its
    /// features before attention, so that what the decoder reads tells *where* as well as *what*
    /// (CoordConv's idea): on the shapes set, the relation words of unseen combinations need it.
    #[serde(default)]
    pub coordinates: bool,
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
    /// How the recurrent layers are arranged (plain, or residual blocks) and cell options (IndRNN's
    /// bound); the defaults are left out of `config.json`.
    #[serde(default, skip_serializing_if = "CellOptions::is_default")]
    pub cell_options: CellOptions,
}

fn no_attention() -> AttentionKind {
    AttentionKind::None
}

impl Default for CaptionerConfig {
    fn default() -> Self {
        Self {
            encoder: CnnConfig::default(),
            inject: Inject::Init,
            attention: AttentionKind::General,
            coordinates: true,
            vocab_size: 100,
            embed: 64,
            cell: CellKind::Lstm,
            hidden: 256,
            layers: 1,
            dropout: 0.2,
            cell_options: CellOptions::default(),
        }
    }
}

impl CaptionerConfig {
    /// The decoder's recurrent stack.
    pub fn recurrent(&self) -> RecurrentConfig {
        RecurrentConfig {
            num_layers: self.layers,
            dropout: self.dropout,
            options: self.cell_options.clone(),
            ..RecurrentConfig::new(self.cell, self.embed, self.hidden)
        }
    }

    /// Width of an attended map cell: the last block's channels, and 2 with [`Self::coordinates`].
    pub fn memory_width(&self) -> usize {
        self.encoder.channels.last().copied().unwrap_or(0) + if self.coordinates { 2 } else { 0 }
    }

    /// Outputs of `project`: `embed` ([`Inject::First`]) or `layers * hidden` ([`Inject::Init`]).
    pub fn project_size(&self) -> usize {
        match self.inject {
            Inject::Init => self.layers * self.hidden,
            Inject::First => self.embed,
        }
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
/// decoder.attention.*                   the translator's attention over the map's cells (see `Attention`)
/// decoder.head.weight, decoder.head.bias
/// ```
///
/// The decoder is the translator's [`Decoder`] (embedding → recurrent stack → attention → head); its memory
/// is the last feature map, one value per cell. It implements [`StepModel`]: [`Captioner::initial_state`]
/// encodes the images, and greedy or beam decoding from `<bos>` comes from `seqlab_decode`.
#[derive(Debug, Clone)]
pub struct Captioner {
    config: CaptionerConfig,
    encoder: CnnEncoder,
    project_w: Tensor,
    project_b: Tensor,
    decoder: Decoder,
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
        if config.inject == Inject::Init && config.cell_options.block == Block::Residual {
            bail!(
                "--inject init sets the decoder's h from the image, which a residual block does not read                  back (its cell's state is inside it): use --inject first, or a plain block"
            );
        }
        if config.attention == AttentionKind::Dot && config.memory_width() != config.hidden {
            bail!(
                "dot attention needs map cells as wide as the decoder ({} units), got {} (the last block's \
                 channels{}): use general or additive attention",
                config.hidden,
                config.memory_width(),
                if config.coordinates { " + 2 coordinates" } else { "" }
            );
        }
        let encoder = CnnEncoder::new(&config.encoder, vb.pp("encoder"))?;
        let features = config.encoder.feature_size();
        let init = fan_in_uniform(features);
        let project = vb.pp("project");
        let project_w =
            project.get_with_hints((config.project_size(), features), "weight", init)?;
        let project_b = project.get_with_hints(config.project_size(), "bias", init)?;
        let decoder = Decoder::new(
            &DecoderConfig {
                vocab: config.vocab_size,
                embed: config.embed,
                rnn: config.recurrent(),
                attention: config.attention,
                memory_width: config.memory_width(),
                dropout: config.dropout,
            },
            vb.pp("decoder"),
        )?;
        Ok(Self {
            config: config.clone(),
            encoder,
            project_w,
            project_b,
            decoder,
        })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &CaptionerConfig {
        &self.config
    }

    /// `images` (batch, 3, size, size) → the last feature map (batch, channels, side, side), with dropout
    /// in training.
    fn feature_map(&self, images: &Tensor, mode: Mode) -> Result<Tensor> {
        let map = self.encoder.feature_map(images, mode)?;
        match mode {
            Mode::Train { seed } if self.config.dropout > 0.0 => {
                dropout(&map, self.config.dropout, seed ^ 0x1A6E)
            }
            _ => Ok(map),
        }
    }

    /// `images` (batch, 3, size, size) → the projected image feature (batch, project_size).
    pub fn encode(&self, images: &Tensor, mode: Mode) -> Result<Tensor> {
        let map = self.feature_map(images, mode)?;
        self.project(&map)
    }

    fn project(&self, map: &Tensor) -> Result<Tensor> {
        let features = map.flatten_from(1)?;
        seqlab_cells::linear(&features, &self.project_w, Some(&self.project_b))
    }

    /// The decoder's state before `<bos>` for `images` (batch, 3, size, size): the recurrent state
    /// ((layers, batch, hidden) each) and, with attention, the feature map as memory (batch, side², channels).
    pub fn initial_state(&self, images: &Tensor, mode: Mode) -> Result<DecoderState> {
        let map = self.feature_map(images, mode)?;
        let projected = self.project(&map)?;
        let batch = projected.dim(0)?;
        let (layers, hidden) = (self.config.layers, self.config.hidden);
        let rnn = match self.config.inject {
            Inject::Init => {
                let h = projected
                    .reshape((batch, layers, hidden))?
                    .transpose(0, 1)?
                    .contiguous()?;
                // The memory beside h (an LSTM's c) starts at zero.
                let memory = self
                    .decoder
                    .rnn()
                    .memory()
                    .iter()
                    .map(|slot| Tensor::zeros((layers, batch, slot.width), DType::F32, h.device()))
                    .collect::<Result<_>>()?;
                State { h, memory }
            }
            Inject::First => {
                // Masks apart from those of the decoder's teacher-forced pass, which uses the seed itself.
                let train = mode.layers(0x696D_6167_6521);
                let (_, state) =
                    self.decoder
                        .rnn()
                        .forward(&projected.unsqueeze(1)?, None, None, train)?;
                state
            }
        };
        let memory = match self.decoder.attention() {
            Some(attention) => {
                let (_, channels, height, width) = map.dims4()?;
                let mut cells = map
                    .reshape((batch, channels, height * width))?
                    .transpose(1, 2)?
                    .contiguous()?;
                if self.config.coordinates {
                    let grid = cell_coordinates(height, width, map.device())?
                        .unsqueeze(0)?
                        .broadcast_as((batch, height * width, 2))?;
                    cells = Tensor::cat(&[&cells, &grid], 2)?;
                }
                Some(attention.memory(&cells, &vec![height * width; batch])?)
            }
            None => None,
        };
        Ok(DecoderState {
            rnn,
            feed: None,
            memory,
            attention: None,
        })
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
        Ok(self.forward_with_attention(images, ids, lengths, mode)?.0)
    }

    /// [`Captioner::forward`] and, with attention, the attention weights over the map's cells
    /// (batch, seq, side²), row-major cells.
    pub fn forward_with_attention(
        &self,
        images: &Tensor,
        ids: &Tensor,
        lengths: Option<&[usize]>,
        mode: Mode,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let state = self.initial_state(images, mode)?;
        let out = self.decoder.forward_teacher(ids, lengths, &state, mode)?;
        Ok((out.logits, out.attention))
    }

    /// The mean cross-entropy of [`Captioner::forward`]'s logits against `targets` (batch·seq,) u32, padding
    /// (`ignore`) left out: the training loss, the head and the loss as one op
    /// ([`seqlab_cells::linear_cross_entropy`]).
    pub fn loss(
        &self,
        images: &Tensor,
        ids: &Tensor,
        lengths: Option<&[usize]>,
        targets: &Tensor,
        mode: Mode,
        ignore: u32,
    ) -> Result<Tensor> {
        let state = self.initial_state(images, mode)?;
        self.decoder
            .teacher_loss(ids, lengths, &state, mode, targets, ignore)
    }

    /// A zero decoder state for `batch` rows.
    pub fn zero_state(&self, batch: usize, device: &Device) -> Result<State> {
        self.decoder.rnn().zero_state(batch, DType::F32, device)
    }
}

/// (height·width, 2): each cell's (row, column), row-major, each spaced evenly from -1 to 1 (-1 alone for a
/// side of one), as `torch.linspace(-1, 1, side)`.
fn cell_coordinates(height: usize, width: usize, device: &Device) -> Result<Tensor> {
    let line = |n: usize, i: usize| {
        if n <= 1 {
            -1.0
        } else {
            -1.0 + 2.0 * i as f32 / (n - 1) as f32
        }
    };
    let values: Vec<f32> = (0..height)
        .flat_map(|r| (0..width).flat_map(move |c| [line(height, r), line(width, c)]))
        .collect();
    Tensor::from_vec(values, (height * width, 2), device)
}

impl StepModel for Captioner {
    type State = DecoderState;

    /// One decoder step: `tokens` (batch,) → logits (batch, vocab_size) and the next state, detached (its
    /// `attention` holds this step's weights over the map's cells).
    fn step(&self, tokens: &Tensor, state: &DecoderState) -> Result<(Tensor, DecoderState)> {
        self.decoder.step(tokens, state)
    }

    fn select(&self, state: &DecoderState, indices: &Tensor) -> Result<DecoderState> {
        self.decoder.select(state, indices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_attention_over_cells_of_another_width_is_a_clear_error() {
        let config = CaptionerConfig {
            encoder: CnnConfig {
                image_size: 8,
                channels: vec![4],
                ..CnnConfig::default()
            },
            attention: AttentionKind::Dot,
            hidden: 5,
            ..CaptionerConfig::default()
        };
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let err = Captioner::new(&config, vb).unwrap_err().to_string();
        assert!(
            err.contains("got 6 (the last block's channels + 2 coordinates)"),
            "{err}"
        );
        // As wide as the decoder, it builds.
        let config = CaptionerConfig {
            hidden: 6,
            ..config
        };
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        assert!(Captioner::new(&config, vb).is_ok());
    }

    /// The training loss (head and loss fused) is the cross-entropy of `forward`'s logits, gradients
    /// included, with dropout and padding.
    #[test]
    fn the_fused_loss_is_the_cross_entropy_of_the_logits() -> Result<()> {
        let config = CaptionerConfig {
            encoder: CnnConfig {
                image_size: 8,
                channels: vec![4],
                ..CnnConfig::default()
            },
            vocab_size: 11,
            embed: 6,
            hidden: 8,
            dropout: 0.3,
            ..CaptionerConfig::default()
        };
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = Captioner::new(&config, vb)?;
        let dev = Device::Cpu;
        let images = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &dev)?;
        let ids = Tensor::new(&[[2u32, 5, 6, 7], [2, 8, 9, 0]], &dev)?;
        let targets = Tensor::new(&[5u32, 6, 7, 3, 8, 9, 3, 0], &dev)?;
        let lengths = [4, 3];
        let mode = Mode::Train { seed: 9 };
        let fused = model.loss(&images, &ids, Some(&lengths), &targets, mode, 0)?;
        let logits = model.forward(&images, &ids, Some(&lengths), mode)?;
        let plain = seqlab_cells::cross_entropy(&logits.reshape((8, 11))?, &targets, Some(0))?;
        let (a, b) = (fused.to_scalar::<f32>()?, plain.to_scalar::<f32>()?);
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        let (ga, gb) = (fused.backward()?, plain.backward()?);
        for (name, var) in varmap.data().lock().unwrap().iter() {
            match (ga.get(var.as_tensor()), gb.get(var.as_tensor())) {
                (Some(x), Some(y)) => {
                    let d = (x - y)?.abs()?.max_all()?.to_scalar::<f32>()?;
                    assert!(d < 1e-6, "{name}: gradients differ by {d}");
                }
                (None, None) => {}
                _ => panic!("{name}: a gradient on one side only"),
            }
        }
        Ok(())
    }

    #[test]
    fn a_config_saved_before_attention_existed_loads_without_attention() {
        let old = r#"{"encoder": {"image_size": 32, "channels": [16, 32, 32]}, "inject": "init",
            "vocab_size": 19, "embed": 32, "cell": "lstm", "hidden": 128, "layers": 1, "dropout": 0.2}"#;
        let config: CaptionerConfig = serde_json::from_str(old).unwrap();
        assert_eq!(config.attention, AttentionKind::None);
        assert!(!config.coordinates);
        // A new configuration says both, and reads back the same.
        let new = CaptionerConfig::default();
        assert_eq!(
            (new.attention, new.coordinates),
            (AttentionKind::General, true)
        );
        let json = serde_json::to_string(&new).unwrap();
        assert_eq!(serde_json::from_str::<CaptionerConfig>(&json).unwrap(), new);
    }
}

#[cfg(test)]
mod gradient_tests {
    use super::*;

    #[test]
    fn the_loss_reaches_the_encoder_the_projection_and_the_attention() {
        for (inject, attention) in [
            (Inject::Init, AttentionKind::None),
            (Inject::First, AttentionKind::None),
            (Inject::Init, AttentionKind::General),
            (Inject::First, AttentionKind::Additive),
        ] {
            let config = CaptionerConfig {
                encoder: CnnConfig {
                    image_size: 8,
                    channels: vec![3],
                    ..CnnConfig::default()
                },
                inject,
                attention,
                coordinates: attention == AttentionKind::General,
                vocab_size: 7,
                embed: 4,
                cell: CellKind::Lstm,
                hidden: 5,
                layers: 1,
                dropout: 0.0,
                ..CaptionerConfig::default()
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
            let mut names = vec![
                "project.weight",
                "encoder.blocks.0.conv.weight",
                "decoder.embedding.weight",
            ];
            if attention != AttentionKind::None {
                names.extend([
                    "decoder.attention.key.weight",
                    "decoder.attention.combine.weight",
                ]);
            }
            for name in names {
                let grad = grads
                    .get(data[name].as_tensor())
                    .unwrap_or_else(|| panic!("{inject:?} {attention}: no gradient for {name}"));
                let norm = grad
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(
                    norm > 0.0,
                    "{inject:?} {attention}: {name} has a zero gradient"
                );
            }
        }
    }
}

#[cfg(test)]
mod finite_differences {
    use super::*;

    #[test]
    fn the_gradient_through_the_image_matches_finite_differences() {
        for (inject, attention) in [
            (Inject::Init, AttentionKind::None),
            (Inject::First, AttentionKind::None),
            (Inject::Init, AttentionKind::General),
        ] {
            let config = CaptionerConfig {
                encoder: CnnConfig {
                    image_size: 8,
                    channels: vec![3],
                    ..CnnConfig::default()
                },
                inject,
                attention,
                coordinates: attention == AttentionKind::General,
                vocab_size: 7,
                embed: 4,
                cell: CellKind::Lstm,
                hidden: 5,
                layers: 1,
                dropout: 0.0,
                ..CaptionerConfig::default()
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
                    "{inject:?} {attention} {i}: {fd} vs {}",
                    g[i]
                );
            }
        }
    }
}
