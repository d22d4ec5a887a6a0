//! The language model: (embedding | one-hot) → recurrent stack → dropout → linear head.

use candle_core::{bail, DType, Device, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use seqlab_cells::{dropout, CellKind, CellOptions, Recurrent, RecurrentConfig, State};
use seqlab_decode::StepModel;
use serde::{Deserialize, Serialize};

use crate::Mode;

/// The shape of a [`LanguageModel`]: plain data, saved as `"model"` in a model directory's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LanguageModelConfig {
    /// Tokens in the vocabulary, special tokens included: rows of the embedding and outputs of the head.
    pub vocab_size: usize,
    /// Width of the token embedding. 0 feeds one-hot vectors of width `vocab_size` instead and has no
    /// `embedding.weight`, as the lesson's first character model does.
    pub embed: usize,
    /// The recurrent cell of every layer.
    pub cell: CellKind,
    /// Units of each recurrent layer.
    pub hidden: usize,
    /// Stacked recurrent layers.
    pub layers: usize,
    /// Dropout probability between the recurrent layers and on the last layer's outputs before the head,
    /// in training only. 0 disables it.
    pub dropout: f32,
    /// How the recurrent layers are arranged (plain, or residual blocks) and cell options (IndRNN's
    /// bound); the defaults are left out of `config.json`.
    #[serde(default, skip_serializing_if = "CellOptions::is_default")]
    pub cell_options: CellOptions,
    /// DropConnect on the hidden-to-hidden weights (AWD-LSTM's weight drop): in training, each batch runs
    /// with every `weight_hh` multiplied by a fresh dropout mask of this probability (drawn from the step's
    /// seed), so the recurrence itself is regularised, the same way at every time step. 0 (the default,
    /// also for a `config.json` written before this field existed) disables it.
    pub weight_drop: f32,
}

impl Default for LanguageModelConfig {
    /// A character model that learns a book in minutes on two cores: an embedding of 64 (a one-hot input
    /// of ~90 characters costs more and learns no better), one LSTM layer of 512 units (the size at which
    /// the PyTorch reference reaches ~1.43 nats/char on *Alice* in about 90 s), and dropout 0.2 (a book is
    /// small, a 512-unit model overfits it within minutes).
    fn default() -> Self {
        Self {
            vocab_size: 100,
            embed: 64,
            cell: CellKind::Lstm,
            hidden: 512,
            layers: 1,
            dropout: 0.2,
            cell_options: CellOptions::default(),
            weight_drop: 0.0,
        }
    }
}

impl LanguageModelConfig {
    /// Width of the recurrent stack's input: `embed`, or `vocab_size` for one-hot input.
    pub fn input_size(&self) -> usize {
        if self.embed == 0 {
            self.vocab_size
        } else {
            self.embed
        }
    }

    /// The recurrent stack's configuration (PyTorch's `nn.LSTM(input, hidden, layers, dropout=...)`).
    pub fn recurrent(&self) -> RecurrentConfig {
        RecurrentConfig {
            num_layers: self.layers,
            dropout: self.dropout,
            options: self.cell_options.clone(),
            ..RecurrentConfig::new(self.cell, self.input_size(), self.hidden)
        }
    }
}

/// A recurrent language model with PyTorch's parameter names:
///
/// ```text
/// embedding.weight                       (vocab_size, embed)         absent when embed = 0 (one-hot input)
/// rnn.weight_ih_l{k}, rnn.weight_hh_l{k}, rnn.bias_ih_l{k}, rnn.bias_hh_l{k}     as nn.LSTM / nn.GRU / nn.RNN
/// head.weight                            (vocab_size, hidden)
/// head.bias                              (vocab_size,)
/// ```
///
/// so a PyTorch module with attributes `embedding = nn.Embedding(...)`, `rnn = nn.LSTM(..., batch_first=True)`
/// and `head = nn.Linear(...)` loads from its `state_dict` saved with safetensors, unchanged.
#[derive(Debug, Clone)]
pub struct LanguageModel {
    config: LanguageModelConfig,
    embedding: Option<Tensor>,
    rnn: Recurrent,
    head_w: Tensor,
    head_b: Tensor,
}

impl LanguageModel {
    /// Builds the model from `vb`: a `VarBuilder` over a `VarMap` initialises fresh weights with PyTorch's
    /// defaults (embedding N(0, 1), recurrent and head weights U(-1/√hidden, 1/√hidden)); one over a
    /// safetensors file loads them.
    pub fn new(config: &LanguageModelConfig, vb: VarBuilder) -> Result<Self> {
        if config.vocab_size == 0 {
            bail!("a language model needs a vocabulary of at least one token");
        }
        if !(0.0..1.0).contains(&config.weight_drop) {
            bail!("weight drop must be in [0, 1), got {}", config.weight_drop);
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
        let bound = 1.0 / (config.hidden as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let head = vb.pp("head");
        let head_w = head.get_with_hints((config.vocab_size, config.hidden), "weight", init)?;
        let head_b = head.get_with_hints(config.vocab_size, "bias", init)?;
        Ok(Self {
            config: config.clone(),
            embedding,
            rnn,
            head_w,
            head_b,
        })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &LanguageModelConfig {
        &self.config
    }

    /// The recurrent stack.
    pub fn rnn(&self) -> &Recurrent {
        &self.rnn
    }

    /// The zero state for `batch` rows: the state before `<bos>`.
    pub fn zero_state(&self, batch: usize, device: &Device) -> Result<State> {
        self.rnn.zero_state(batch, DType::F32, device)
    }

    /// Runs the model over `ids` (batch, seq) u32 from `state` (zeros when `None`).
    ///
    /// Returns the logits of the next token at every position, (batch, seq, vocab_size), and the state
    /// after the last position, (layers, batch, hidden) each.
    pub fn forward(
        &self,
        ids: &Tensor,
        state: Option<&State>,
        mode: Mode,
    ) -> Result<(Tensor, State)> {
        let (features, state) = self.features(ids, state, mode)?;
        let logits = seqlab_cells::linear(&features, &self.head_w, Some(&self.head_b))?;
        Ok((logits, state))
    }

    /// The mean cross-entropy of [`Self::forward`]'s logits against `targets` (batch, seq) u32, and the
    /// state after the last position: the training loss, with the head and the loss as one op
    /// ([`seqlab_cells::linear_cross_entropy`]), so that the (tokens × vocabulary) logits and their gradient
    /// stay out of the autograd graph.
    pub fn loss(
        &self,
        ids: &Tensor,
        state: Option<&State>,
        targets: &Tensor,
        mode: Mode,
    ) -> Result<(Tensor, State)> {
        let (features, state) = self.features(ids, state, mode)?;
        let loss = seqlab_cells::linear_cross_entropy(
            &features,
            &self.head_w,
            &self.head_b,
            &targets.flatten_all()?,
            None,
        )?;
        Ok((loss, state))
    }

    /// [`Self::forward`] up to the head: what the head reads (batch, seq, hidden), dropout applied.
    fn features(&self, ids: &Tensor, state: Option<&State>, mode: Mode) -> Result<(Tensor, State)> {
        let train = mode.layers(0);
        let dropped;
        let rnn = match mode {
            Mode::Train { seed } if self.config.weight_drop > 0.0 => {
                let p = self.config.weight_drop;
                dropped = self.rnn.map_hidden_weights(|index, w_hh| {
                    // A stream of its own per weight, apart from the output dropout's (`seed`).
                    let stream = WEIGHT_DROP_STREAM.wrapping_mul(index as u64 + 1);
                    dropout(w_hh, p, seed ^ stream)
                })?;
                &dropped
            }
            _ => &self.rnn,
        };
        let (out, state) = match &self.embedding {
            // The lookup is folded into layer 0's input projection when the vocabulary is small.
            Some(embedding) => rnn.forward_embedded(ids, embedding, None, state, train)?,
            // One-hot input without building it: layer 0's input projection gathers columns of W_ih.
            None => rnn.forward_one_hot(ids, None, state, train)?,
        };
        let out = match mode {
            Mode::Train { seed } if self.config.dropout > 0.0 => {
                dropout(&out, self.config.dropout, seed)?
            }
            _ => out,
        };
        Ok((out, state))
    }
}

/// One-hot rows (batch, vocab) of `tokens` (batch,) u32; an id outside the vocabulary is an error.
fn one_hot_rows(tokens: &Tensor, vocab: usize) -> Result<Tensor> {
    let ids: Vec<u32> = tokens.to_vec1()?;
    let mut rows = vec![0f32; ids.len() * vocab];
    for (row, &id) in ids.iter().enumerate() {
        if id as usize >= vocab {
            bail!("token id {id} is outside the vocabulary of {vocab}");
        }
        rows[row * vocab + id as usize] = 1.0;
    }
    Tensor::from_vec(rows, (ids.len(), vocab), tokens.device())
}

/// Mixed into the step's seed for the weight-drop masks, so they never repeat the output dropout's mask.
const WEIGHT_DROP_STREAM: u64 = 0xD1B5_4A32_D192_ED03;

impl StepModel for LanguageModel {
    type State = State;

    /// One step: `tokens` (batch,) → logits (batch, vocab_size) and the next state, detached from any
    /// autograd graph (a model being trained can generate without its graph growing).
    ///
    /// It runs the stack's `step` (for a model loaded from a file, the fused step on raw buffers: no copy or
    /// transpose of the weights per token, which a one-step `forward` would make), then the head: what
    /// `forward` computes for a sequence of one token, up to rounding.
    fn step(&self, tokens: &Tensor, state: &State) -> Result<(Tensor, State)> {
        let x = match &self.embedding {
            Some(embedding) => embedding.index_select(tokens, 0)?,
            None => one_hot_rows(tokens, self.config.vocab_size)?,
        };
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

    /// A one-layer LSTM model over a random batch, its weights from a fixed seed.
    fn weight_drop_case(weight_drop: f32) -> (candle_nn::VarMap, LanguageModel, Tensor) {
        let config = LanguageModelConfig {
            vocab_size: 13,
            embed: 6,
            hidden: 16,
            dropout: 0.0,
            weight_drop,
            ..Default::default()
        };
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = LanguageModel::new(&config, vb).unwrap();
        let ids: Vec<u32> = (0..4 * 9).map(|i| (i * 7 % 13) as u32).collect();
        let ids = Tensor::from_vec(ids, (4, 9), &Device::Cpu).unwrap();
        (varmap, model, ids)
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// Decoding's `step`, token after token, gives what `forward` gives over the whole sequence, on weights
    /// loaded as plain tensors (the fused step) and on variables (the composite step).
    #[test]
    fn steps_equal_the_forward_pass() {
        for (cell, embed, layers) in [
            (CellKind::Lstm, 6, 2),
            (CellKind::Gru, 0, 1),
            (CellKind::MinGru, 6, 2),
        ] {
            let config = LanguageModelConfig {
                vocab_size: 13,
                embed,
                cell,
                hidden: 16,
                layers,
                dropout: 0.0,
                ..Default::default()
            };
            let varmap = candle_nn::VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            let trainable = LanguageModel::new(&config, vb).unwrap();
            let tensors: std::collections::HashMap<String, Tensor> = varmap
                .data()
                .lock()
                .unwrap()
                .iter()
                .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
                .collect();
            let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
            let loaded = LanguageModel::new(&config, vb).unwrap();
            let ids: Vec<u32> = (0..3 * 7).map(|i| (i * 5 % 13) as u32).collect();
            let ids = Tensor::from_vec(ids, (3, 7), &Device::Cpu).unwrap();
            for model in [&trainable, &loaded] {
                let (whole, _) = model.forward(&ids, None, Mode::Eval).unwrap();
                let mut state = model.zero_state(3, &Device::Cpu).unwrap();
                for t in 0..7 {
                    let tokens = ids
                        .narrow(1, t, 1)
                        .unwrap()
                        .squeeze(1)
                        .unwrap()
                        .contiguous()
                        .unwrap();
                    let (logits, next) = model.step(&tokens, &state).unwrap();
                    state = next;
                    let expected = whole.narrow(1, t, 1).unwrap().squeeze(1).unwrap();
                    let diff = (logits - expected)
                        .unwrap()
                        .abs()
                        .unwrap()
                        .max_all()
                        .unwrap();
                    let diff: f32 = diff.to_scalar().unwrap();
                    assert!(diff < 1e-5, "{cell:?} embed {embed} step {t}: {diff}");
                }
            }
        }
    }

    #[test]
    fn weight_drop_acts_in_training_only_and_follows_the_seed() {
        let (varmap, model, ids) = weight_drop_case(0.5);
        // The same weights without weight drop.
        let plain = LanguageModel {
            config: LanguageModelConfig {
                weight_drop: 0.0,
                ..model.config.clone()
            },
            ..model.clone()
        };
        let run = |m: &LanguageModel, mode| values(&m.forward(&ids, None, mode).unwrap().0);
        assert_eq!(run(&model, Mode::Eval), run(&plain, Mode::Eval));
        assert_eq!(
            run(&plain, Mode::Train { seed: 3 }),
            run(&plain, Mode::Eval)
        );
        let a = run(&model, Mode::Train { seed: 3 });
        assert_eq!(a, run(&model, Mode::Train { seed: 3 }));
        assert_ne!(a, run(&model, Mode::Train { seed: 4 }));
        assert_ne!(a, run(&model, Mode::Eval));
        drop(varmap);
    }

    #[test]
    fn weight_drop_gradients_reach_only_the_kept_recurrent_weights() {
        for (p, lo, hi) in [(0.0, 0.0, 0.01), (0.4, 0.3, 0.5)] {
            let (varmap, model, ids) = weight_drop_case(p);
            let (logits, _) = model.forward(&ids, None, Mode::Train { seed: 11 }).unwrap();
            let grads = logits.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let data = varmap.data().lock().unwrap();
            let w_hh = data.get("rnn.weight_hh_l0").unwrap();
            let grad = values(grads.get(w_hh).expect("weight_hh gets a gradient"));
            let zeros = grad.iter().filter(|&&g| g == 0.0).count() as f64 / grad.len() as f64;
            assert!(
                (lo..=hi).contains(&zeros),
                "weight drop {p}: {zeros} of weight_hh's gradient is exactly zero"
            );
            // The input weights are not dropped.
            let w_ih = data.get("rnn.weight_ih_l0").unwrap();
            let grad = values(grads.get(w_ih).expect("weight_ih gets a gradient"));
            assert!(grad.iter().filter(|&&g| g == 0.0).count() < grad.len() / 100);
        }
    }

    /// The training loss (head and loss fused) is the cross-entropy of `forward`'s logits, with dropout and
    /// weight drop, gradients included, and both return the same state.
    #[test]
    fn the_fused_loss_is_the_cross_entropy_of_the_logits() {
        let (varmap, model, ids) = weight_drop_case(0.3);
        let model = LanguageModel {
            config: LanguageModelConfig {
                dropout: 0.25,
                ..model.config.clone()
            },
            ..model
        };
        let next: Vec<u32> = (0..4 * 9).map(|i| (i * 5 % 13) as u32).collect();
        let targets = Tensor::from_vec(next, (4, 9), &Device::Cpu).unwrap();
        let mode = Mode::Train { seed: 5 };
        let (fused, state) = model.loss(&ids, None, &targets, mode).unwrap();
        let (logits, state2) = model.forward(&ids, None, mode).unwrap();
        let plain = seqlab_cells::cross_entropy(
            &logits.reshape((36, 13)).unwrap(),
            &targets.flatten_all().unwrap(),
            None,
        )
        .unwrap();
        assert_eq!(values(&fused), values(&plain));
        assert_eq!(values(&state.h), values(&state2.h));
        let (ga, gb) = (fused.backward().unwrap(), plain.backward().unwrap());
        for (name, var) in varmap.data().lock().unwrap().iter() {
            let (a, b) = (ga.get(var).unwrap(), gb.get(var).unwrap());
            let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
            let d = d.to_scalar::<f32>().unwrap();
            assert!(d < 1e-6, "{name}: gradients differ by {d}");
        }
    }

    #[test]
    fn weight_drop_out_of_range_is_an_error() {
        let config = LanguageModelConfig {
            vocab_size: 5,
            weight_drop: 1.0,
            ..Default::default()
        };
        let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
        let err = LanguageModel::new(&config, vb).unwrap_err().to_string();
        assert!(err.contains("weight drop"), "{err}");
    }
}
