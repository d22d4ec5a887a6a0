//! The sequential image classifier: an image read as a sequence (row by row, pixel by pixel, or pixel by
//! pixel in a fixed random order) by a recurrent stack, pooled over the steps, then a linear head — the
//! many-to-one benchmarks of recurrent-network research (sequential and permuted MNIST).

use candle_core::{bail, DType, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use seqlab_cells::{dropout, CellKind, CellOptions, Recurrent, RecurrentConfig};
use serde::{Deserialize, Serialize};

use crate::{Mode, Pooling};

/// How an image of H×W pixels becomes a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PixelOrder {
    /// H steps of W features: row `i` is step `i`.
    #[default]
    Rows,
    /// H·W steps of one feature, row-major: the long-sequence test (784 steps for MNIST).
    Pixels,
    /// H·W steps of one feature in a fixed random order drawn from the model's `permutation_seed`: no
    /// step's neighbour is its neighbour in the image, so only long-range memory solves it.
    Permuted,
}

impl PixelOrder {
    /// The name used on the command line and in `config.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            PixelOrder::Rows => "rows",
            PixelOrder::Pixels => "pixels",
            PixelOrder::Permuted => "permuted",
        }
    }
}

impl std::fmt::Display for PixelOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PixelOrder {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "rows" => Ok(PixelOrder::Rows),
            "pixels" => Ok(PixelOrder::Pixels),
            "permuted" => Ok(PixelOrder::Permuted),
            other => Err(format!(
                "unknown order '{other}': expected rows, pixels or permuted"
            )),
        }
    }
}

/// The shape of an [`ImageClassifier`]: plain data, saved as `"model"` in a model directory's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageClassifierConfig {
    /// Rows of every image.
    pub height: usize,
    /// Columns of every image.
    pub width: usize,
    /// How an image becomes a sequence.
    pub order: PixelOrder,
    /// The seed of the pixel order of [`PixelOrder::Permuted`] (unused by the other orders).
    pub permutation_seed: u64,
    /// Classes: outputs of the head.
    pub num_classes: usize,
    /// The recurrent cell of every layer.
    pub cell: CellKind,
    /// Units of each direction of each recurrent layer.
    pub hidden: usize,
    /// Stacked recurrent layers.
    pub layers: usize,
    /// Read each sequence backwards too and concatenate the two directions.
    pub bidirectional: bool,
    /// How the outputs over the steps become one vector.
    pub pool: Pooling,
    /// Dropout probability between the recurrent layers and on the pooled vector before the head, in
    /// training only. 0 disables it.
    pub dropout: f32,
    /// How the recurrent layers are arranged (plain, or residual blocks) and cell options (IndRNN's
    /// bound); the defaults are left out of `config.json`.
    #[serde(default, skip_serializing_if = "CellOptions::is_default")]
    pub cell_options: CellOptions,
}

impl Default for ImageClassifierConfig {
    /// Row-by-row MNIST-format images (28×28, ten classes) read by one LSTM layer of 128 units, its last
    /// state classified: the recurrent-network papers' baseline.
    fn default() -> Self {
        Self {
            height: 28,
            width: 28,
            order: PixelOrder::Rows,
            permutation_seed: 0,
            num_classes: 10,
            cell: CellKind::Lstm,
            hidden: 128,
            layers: 1,
            bidirectional: false,
            pool: Pooling::Last,
            dropout: 0.0,
            cell_options: CellOptions::default(),
        }
    }
}

impl ImageClassifierConfig {
    /// Pixels per step: `width` row by row, else 1.
    pub fn input_size(&self) -> usize {
        match self.order {
            PixelOrder::Rows => self.width,
            PixelOrder::Pixels | PixelOrder::Permuted => 1,
        }
    }

    /// Steps per image: `height` row by row, else `height · width`.
    pub fn steps(&self) -> usize {
        self.height * self.width / self.input_size().max(1)
    }

    /// The recurrent stack's configuration.
    pub fn recurrent(&self) -> RecurrentConfig {
        RecurrentConfig {
            num_layers: self.layers,
            dropout: self.dropout,
            bidirectional: self.bidirectional,
            options: self.cell_options.clone(),
            ..RecurrentConfig::new(self.cell, self.input_size(), self.hidden)
        }
    }

    /// The pixel order of [`PixelOrder::Permuted`]: step `t` reads pixel `permutation()[t]` (row-major
    /// index). A Fisher–Yates shuffle driven by SplitMix64 from `permutation_seed`, written out here so
    /// that a saved model's order never depends on a random-number crate's version.
    pub fn permutation(&self) -> Vec<u32> {
        let n = self.height * self.width;
        let mut order: Vec<u32> = (0..n as u32).collect();
        let mut state = self.permutation_seed;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        for i in (1..n).rev() {
            let j = (next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        order
    }
}

/// A recurrent classifier of images read as sequences, with PyTorch's parameter names:
///
/// ```text
/// rnn.weight_ih_l{k}[_reverse], rnn.weight_hh_l{k}[_reverse], rnn.bias_ih_l{k}[_reverse], rnn.bias_hh_l{k}[_reverse]
/// head.weight                               (num_classes, directions * hidden)
/// head.bias                                 (num_classes,)
/// ```
///
/// so a PyTorch module with `rnn = nn.LSTM(input, hidden, batch_first=True)` and `head = nn.Linear(...)`
/// loads from its `state_dict`.
#[derive(Debug, Clone)]
pub struct ImageClassifier {
    config: ImageClassifierConfig,
    /// The pixel order of a permuted model, as indices into a flattened image.
    permutation: Option<Tensor>,
    rnn: Recurrent,
    head_w: Tensor,
    head_b: Tensor,
}

impl ImageClassifier {
    /// Builds the classifier from `vb`: a `VarBuilder` over a `VarMap` initialises fresh weights with
    /// PyTorch's defaults (recurrent weights U(-1/√hidden, 1/√hidden), head as `nn.Linear`); one over a
    /// safetensors file loads them.
    pub fn new(config: &ImageClassifierConfig, vb: VarBuilder) -> Result<Self> {
        if config.height == 0 || config.width == 0 || config.num_classes == 0 {
            bail!(
                "an image classifier needs images of at least 1×1 pixels and a class, got {}×{} and {} classes",
                config.height,
                config.width,
                config.num_classes
            );
        }
        if !(0.0..1.0).contains(&config.dropout) {
            bail!("dropout must be in [0, 1), got {}", config.dropout);
        }
        let permutation = match config.order {
            PixelOrder::Permuted => Some(Tensor::new(config.permutation(), vb.device())?),
            PixelOrder::Rows | PixelOrder::Pixels => None,
        };
        let rnn = Recurrent::new(&config.recurrent(), vb.pp("rnn"))?;
        let features = config.recurrent().output_size();
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
            permutation,
            rnn,
            head_w,
            head_b,
        })
    }

    /// The configuration the classifier was built from.
    pub fn config(&self) -> &ImageClassifierConfig {
        &self.config
    }

    /// The recurrent stack.
    pub fn rnn(&self) -> &Recurrent {
        &self.rnn
    }

    /// Images (batch, height · width), row-major, as the sequences the stack reads: (batch, steps,
    /// pixels per step).
    pub fn sequences(&self, images: &Tensor) -> Result<Tensor> {
        let (batch, pixels) = images.dims2()?;
        let c = &self.config;
        if pixels != c.height * c.width {
            bail!(
                "expected images of {}×{} = {} pixels, got {pixels}",
                c.height,
                c.width,
                c.height * c.width
            );
        }
        let images = match &self.permutation {
            Some(order) => images.index_select(order, 1)?,
            None => images.clone(),
        };
        images.reshape((batch, c.steps(), c.input_size()))
    }

    /// The pooled vector of each image, before dropout and the head: (batch, directions · hidden).
    pub fn features(&self, images: &Tensor, mode: Mode) -> Result<Tensor> {
        let xs = self.sequences(images)?;
        let batch = xs.dim(0)?;
        let (out, state) = self.rnn.forward(&xs, None, None, mode.layers(0))?;
        let config = self.rnn.config();
        match self.config.pool {
            Pooling::Last => {
                // The last layer's rows of h_n: (dirs, batch, hidden) → (batch, dirs · hidden).
                let dirs = config.directions();
                let start = (config.num_layers - 1) * dirs;
                state
                    .h
                    .narrow(0, start, dirs)?
                    .transpose(0, 1)?
                    .contiguous()?
                    .reshape((batch, dirs * config.hidden_size))
            }
            Pooling::Mean => out.mean(1),
            Pooling::Max => out.max(1),
        }
    }

    /// The logits of each image's classes, (batch, num_classes), from images (batch, height · width) f32.
    /// `Mode::Train` applies dropout (its masks drawn from the mode's seed).
    pub fn forward(&self, images: &Tensor, mode: Mode) -> Result<Tensor> {
        let pooled = self.features(images, mode)?;
        let pooled = match mode {
            Mode::Train { seed } if self.config.dropout > 0.0 => {
                dropout(&pooled, self.config.dropout, seed)?
            }
            _ => pooled,
        };
        seqlab_cells::linear(&pooled, &self.head_w, Some(&self.head_b))
    }

    /// Class probabilities of each image, (batch, num_classes): the softmax of [`ImageClassifier::forward`]
    /// without dropout.
    pub fn probabilities(&self, images: &Tensor) -> Result<Tensor> {
        let logits = self.forward(images, Mode::Eval)?;
        candle_nn::ops::softmax(&logits.to_dtype(DType::F32)?, D::Minus1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::VarMap;

    fn build(config: &ImageClassifierConfig) -> ImageClassifier {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        ImageClassifier::new(config, vb).unwrap()
    }

    fn config(order: PixelOrder) -> ImageClassifierConfig {
        ImageClassifierConfig {
            height: 3,
            width: 4,
            order,
            permutation_seed: 5,
            num_classes: 3,
            hidden: 6,
            ..Default::default()
        }
    }

    #[test]
    fn each_order_reads_the_pixels_it_names() {
        let images = Tensor::arange(0f32, 24., &Device::Cpu)
            .unwrap()
            .reshape((2, 12))
            .unwrap();
        let rows = build(&config(PixelOrder::Rows)).sequences(&images).unwrap();
        assert_eq!(rows.dims(), [2, 3, 4]);
        let row: Vec<f32> = rows.get(1).unwrap().get(2).unwrap().to_vec1().unwrap();
        assert_eq!(row, [20., 21., 22., 23.]);
        let pixels = build(&config(PixelOrder::Pixels))
            .sequences(&images)
            .unwrap();
        assert_eq!(pixels.dims(), [2, 12, 1]);
        assert_eq!(pixels.flatten_all().unwrap().to_vec1::<f32>().unwrap(), {
            (0..24).map(|v| v as f32).collect::<Vec<_>>()
        });
        let permuted_config = config(PixelOrder::Permuted);
        let order = permuted_config.permutation();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..12).collect::<Vec<u32>>(), "a permutation");
        assert_ne!(order, sorted, "not the identity");
        assert_eq!(order, permuted_config.permutation(), "fixed by the seed");
        let other = ImageClassifierConfig {
            permutation_seed: 6,
            ..permuted_config.clone()
        };
        assert_ne!(other.permutation(), order);
        let permuted = build(&permuted_config).sequences(&images).unwrap();
        let second: Vec<f32> = permuted
            .get(1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let want: Vec<f32> = order.iter().map(|&i| 12. + i as f32).collect();
        assert_eq!(second, want);
    }

    #[test]
    fn every_pooling_gives_one_row_of_logits_per_image() {
        for pool in [Pooling::Last, Pooling::Mean, Pooling::Max] {
            for bidirectional in [false, true] {
                let model = build(&ImageClassifierConfig {
                    pool,
                    bidirectional,
                    layers: 2,
                    ..config(PixelOrder::Rows)
                });
                let images = Tensor::rand(0f32, 1., (5, 12), &Device::Cpu).unwrap();
                assert_eq!(model.forward(&images, Mode::Eval).unwrap().dims(), [5, 3]);
                let p = model.probabilities(&images).unwrap();
                let sums: Vec<f32> = p.sum(1).unwrap().to_vec1().unwrap();
                assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
            }
        }
    }

    #[test]
    fn images_of_another_size_are_refused() {
        let model = build(&config(PixelOrder::Rows));
        let images = Tensor::zeros((2, 10), DType::F32, &Device::Cpu).unwrap();
        let err = model.forward(&images, Mode::Eval).unwrap_err().to_string();
        assert!(err.contains("3×4 = 12 pixels, got 10"), "{err}");
    }

    #[test]
    fn order_names_round_trip() {
        for order in [PixelOrder::Rows, PixelOrder::Pixels, PixelOrder::Permuted] {
            assert_eq!(order.as_str().parse::<PixelOrder>(), Ok(order));
        }
        assert!("columns".parse::<PixelOrder>().is_err());
    }
}
