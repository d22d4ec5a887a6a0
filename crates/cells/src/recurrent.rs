//! `Recurrent`: a stack of layers of one cell kind, optionally bidirectional, over whole sequences.

use candle_core::{bail, DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use crate::cell::DirectionWeights;
use crate::LayerDropout;
use crate::{RecurrentConfig, State};

/// A stack of recurrent layers with PyTorch's semantics and parameter names (`batch_first=True`).
///
/// Build it with [`Recurrent::new`] from a [`VarBuilder`]: a `VarBuilder` over a `VarMap` initialises fresh
/// weights, one over a PyTorch `state_dict` saved as safetensors loads them unchanged.
#[derive(Debug, Clone)]
pub struct Recurrent {
    config: RecurrentConfig,
    /// Layer-major: index `layer * directions + direction`, the order of the state's rows.
    weights: Vec<DirectionWeights>,
}

impl Recurrent {
    /// Creates the stack's parameters `weight_ih_l{k}[_reverse]`, `weight_hh_l{k}[_reverse]`,
    /// `bias_ih_l{k}[_reverse]`, `bias_hh_l{k}[_reverse]` in `vb`.
    pub fn new(config: &RecurrentConfig, vb: VarBuilder) -> Result<Self> {
        if config.num_layers == 0 || config.hidden_size == 0 || config.input_size == 0 {
            bail!(
                "a recurrent stack needs at least one layer, one unit and one input feature, got {} layers, \
                 hidden {}, input {}",
                config.num_layers,
                config.hidden_size,
                config.input_size
            );
        }
        if !(0.0..1.0).contains(&config.dropout) {
            bail!("dropout must be in [0, 1), got {}", config.dropout);
        }
        let mut weights = Vec::with_capacity(config.state_rows());
        for layer in 0..config.num_layers {
            for dir in 0..config.directions() {
                weights.push(DirectionWeights::new(
                    config.cell,
                    config.layer_input_size(layer),
                    config.hidden_size,
                    config.bias,
                    layer,
                    dir == 1,
                    &vb,
                )?);
            }
        }
        Ok(Self {
            config: config.clone(),
            weights,
        })
    }

    /// The configuration the stack was built from.
    pub fn config(&self) -> &RecurrentConfig {
        &self.config
    }

    /// A copy of the stack whose hidden-to-hidden weights are `f(index, weight_hh)`, `index` running
    /// layer-major over layers and directions as the state's rows do; the other parameters are shared.
    ///
    /// This is how DropConnect on the recurrent weights (AWD-LSTM's "weight drop") is built: pass a
    /// function that multiplies each `weight_hh` by a dropout mask, run the copy for one batch, and the
    /// gradients reach the original weights through the product, on every path (fused or composite).
    pub fn map_hidden_weights<F>(&self, mut f: F) -> Result<Self>
    where
        F: FnMut(usize, &Tensor) -> Result<Tensor>,
    {
        let weights = self
            .weights
            .iter()
            .enumerate()
            .map(|(index, w)| {
                let w_hh = f(index, &w.w_hh)?;
                if w_hh.dims() != w.w_hh.dims() {
                    bail!(
                        "a mapped weight_hh must keep its shape {:?}, got {:?}",
                        w.w_hh.dims(),
                        w_hh.dims()
                    );
                }
                Ok(DirectionWeights { w_hh, ..w.clone() })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config: self.config.clone(),
            weights,
        })
    }

    /// The parameters of `layer` in direction `direction` (0 forward, 1 backward).
    pub fn weights(&self, layer: usize, direction: usize) -> &DirectionWeights {
        &self.weights[layer * self.config.directions() + direction]
    }

    /// A zero state for `batch` rows, the default initial state.
    pub fn zero_state(&self, batch: usize, dtype: DType, device: &Device) -> Result<State> {
        let shape = (self.config.state_rows(), batch, self.config.hidden_size);
        let h = Tensor::zeros(shape, dtype, device)?;
        let c = if self.config.cell.has_cell_state() {
            Some(h.clone())
        } else {
            None
        };
        Ok(State { h, c })
    }

    /// Runs the whole stack over `xs`.
    ///
    /// - `xs`: (batch, seq, input_size).
    /// - `lengths`: optional valid length of each row, each in `1..=seq`. A row stops at its length exactly as
    ///   with PyTorch's packed sequences: outputs past it are zero, its final state is the state after its last
    ///   valid step, and the backward direction starts at that step.
    /// - `init`: optional initial state, (layers * directions, batch, hidden) each; zeros when `None`.
    /// - `train`: dropout between layers when the config asks for it: a [`LayerDropout`], or a bool (`true`:
    ///   candle's unseeded masks; `false`: none).
    ///
    /// Returns the last layer's outputs, (batch, seq, directions * hidden), and the final state.
    pub fn forward(
        &self,
        xs: &Tensor,
        lengths: Option<&[usize]>,
        init: Option<&State>,
        train: impl Into<LayerDropout>,
    ) -> Result<(Tensor, State)> {
        let train: LayerDropout = train.into();
        self.validate(xs, lengths, init)?;
        crate::fused::forward(
            self,
            xs,
            crate::fused::FirstInput::Dense,
            lengths,
            init,
            train,
        )
    }

    /// [`Recurrent::forward`] over one-hot inputs given as token ids (batch, seq) u32, each below
    /// `input_size`: what `forward` computes on `one_hot(ids)`, as the lesson's character model feeds its
    /// network. The fused path never builds the one-hot tensor: layer 0's input projection is a gather of
    /// W_ih's columns and its weight gradient a scatter-add, exactly the same numbers without the products
    /// with zeros (40% of a 64-unit character model's matrix work).
    pub fn forward_one_hot(
        &self,
        ids: &Tensor,
        lengths: Option<&[usize]>,
        init: Option<&State>,
        train: impl Into<LayerDropout>,
    ) -> Result<(Tensor, State)> {
        let train: LayerDropout = train.into();
        let (batch, seq_len) = token_ids_dims(ids)?;
        let vocab = self.config.input_size;
        if ids.device().is_cpu() {
            // Validated like a dense input of the same shape; the kernel checks each id.
            self.validate_dims(batch, seq_len, vocab, lengths, init)?;
            return crate::fused::forward(
                self,
                ids,
                crate::fused::FirstInput::OneHot,
                lengths,
                init,
                train,
            );
        }
        let flat: Vec<u32> = ids.flatten_all()?.to_vec1()?;
        if let Some(&bad) = flat.iter().find(|&&id| id as usize >= vocab) {
            bail!("token id {bad} is outside the one-hot input size {vocab}");
        }
        let xs = one_hot(&flat, batch, seq_len, vocab, ids.device())?;
        self.forward_composite(&xs, lengths, init, train)
    }

    /// [`Recurrent::forward`] over `embedding[ids]`: token ids (batch, seq) u32 looked up in an embedding
    /// table (vocab, input_size), as a language model or classifier feeds its network.
    ///
    /// When the vocabulary is smaller than half the tokens of the batch, the fused path folds the lookup
    /// into layer 0's input projection: it projects the vocabulary once (`embedding·W_ihᵀ + b_ih`, vocab × G·H)
    /// and reads one row per step, and the backward pass scatter-adds the rows' gradients into that table, so
    /// the three largest products of layer 0 shrink from batch·seq rows to vocab rows. The numbers are the
    /// same sums; gradients reach `embedding` as they would through an `index_select`.
    pub fn forward_embedded(
        &self,
        ids: &Tensor,
        embedding: &Tensor,
        lengths: Option<&[usize]>,
        init: Option<&State>,
        train: impl Into<LayerDropout>,
    ) -> Result<(Tensor, State)> {
        let train: LayerDropout = train.into();
        let (batch, seq_len) = token_ids_dims(ids)?;
        let (vocab, width) = embedding.dims2()?;
        if width != self.config.input_size {
            bail!(
                "expected an embedding of shape (vocab, {}), got {:?}",
                self.config.input_size,
                embedding.dims()
            );
        }
        let folded = ids.device().is_cpu()
            && embedding.dtype() == DType::F32
            && 2 * vocab <= batch * seq_len;
        if folded {
            self.validate_dims(batch, seq_len, width, lengths, init)?;
            return crate::fused::forward(
                self,
                ids,
                crate::fused::FirstInput::Embedded(embedding.clone()),
                lengths,
                init,
                train,
            );
        }
        let xs = embedding
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((batch, seq_len, width))?;
        self.forward(&xs, lengths, init, train)
    }

    /// The reference implementation of [`Recurrent::forward`]: a graph of ordinary candle ops per step, on any
    /// device. The fused kernels are tested against it.
    pub fn forward_composite(
        &self,
        xs: &Tensor,
        lengths: Option<&[usize]>,
        init: Option<&State>,
        train: impl Into<LayerDropout>,
    ) -> Result<(Tensor, State)> {
        let train: LayerDropout = train.into();
        self.validate(xs, lengths, init)?;
        let (batch, seq_len, _) = xs.dims3()?;
        let masks = match lengths {
            Some(lengths) => Some(step_masks(lengths, seq_len, xs.dtype(), xs.device())?),
            None => None,
        };
        self.run_layers(xs, init, train, |w, layer_in, h0, c0, reverse| {
            self.run_direction_composite(w, layer_in, masks.as_deref(), h0, c0, reverse)
        })
        .and_then(|(out, state)| {
            debug_assert_eq!(out.dims3()?.0, batch);
            Ok((out, state))
        })
    }

    /// Runs the layers and directions in order, `run` doing one direction of one layer; shared by the composite
    /// and the fused paths so that stacking, dropout and state layout are written once.
    pub(crate) fn run_layers<F>(
        &self,
        xs: &Tensor,
        init: Option<&State>,
        train: LayerDropout,
        mut run: F,
    ) -> Result<(Tensor, State)>
    where
        F: FnMut(
            &DirectionWeights,
            &Tensor,
            &Tensor,
            Option<&Tensor>,
            bool,
        ) -> Result<(Tensor, Tensor, Option<Tensor>)>,
    {
        let batch = xs.dim(0)?;
        let init = match init {
            Some(s) => s.clone(),
            None => self.zero_state(batch, self.weights[0].w_hh.dtype(), xs.device())?,
        };
        let dirs = self.config.directions();
        let mut hs = Vec::with_capacity(self.config.state_rows());
        let mut cs = Vec::with_capacity(self.config.state_rows());
        let mut layer_in = xs.clone();
        for layer in 0..self.config.num_layers {
            if layer > 0 {
                layer_in = train.apply(&layer_in, self.config.dropout, layer)?;
            }
            let mut outs = Vec::with_capacity(dirs);
            for dir in 0..dirs {
                let row = layer * dirs + dir;
                let h0 = init.h.get(row)?;
                let c0 = match &init.c {
                    Some(c) => Some(c.get(row)?),
                    None => None,
                };
                let (out, h, c) = run(&self.weights[row], &layer_in, &h0, c0.as_ref(), dir == 1)?;
                outs.push(out);
                hs.push(h);
                if let Some(c) = c {
                    cs.push(c);
                }
            }
            layer_in = if outs.len() == 1 {
                outs.remove(0)
            } else {
                Tensor::cat(&outs, 2)?
            };
        }
        let h = Tensor::stack(&hs, 0)?;
        let c = if cs.is_empty() {
            None
        } else {
            Some(Tensor::stack(&cs, 0)?)
        };
        Ok((layer_in, State { h, c }))
    }

    /// One direction of one layer as a graph of candle ops. `masks[t]` (batch, 1) is 1 where step t is valid.
    fn run_direction_composite(
        &self,
        w: &DirectionWeights,
        xs: &Tensor,
        masks: Option<&[Tensor]>,
        h0: &Tensor,
        c0: Option<&Tensor>,
        reverse: bool,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let (_, seq_len, _) = xs.dims3()?;
        let cell = self.config.cell;
        let xp = w.project_inputs_composite(xs)?;
        let w_hh_t = w.w_hh.t()?.contiguous()?;
        let mut h = h0.clone();
        let mut c = c0.cloned();
        let mut outs = Vec::with_capacity(seq_len);
        for step in 0..seq_len {
            let t = if reverse { seq_len - 1 - step } else { step };
            let xp_t = xp.narrow(1, t, 1)?.squeeze(1)?;
            let (h_new, c_new) = w.step(cell, &xp_t, &h, c.as_ref(), &w_hh_t)?;
            match masks {
                Some(masks) => {
                    // Rows past their length keep their state and output zeros.
                    let m = &masks[t];
                    outs.push(h_new.broadcast_mul(m)?);
                    h = (&h + (h_new - &h)?.broadcast_mul(m)?)?;
                    c = match (c, c_new) {
                        (Some(c_old), Some(c_new)) => {
                            Some((&c_old + (c_new - &c_old)?.broadcast_mul(m)?)?)
                        }
                        _ => None,
                    };
                }
                None => {
                    outs.push(h_new.clone());
                    h = h_new;
                    c = c_new;
                }
            }
        }
        if reverse {
            outs.reverse();
        }
        Ok((Tensor::stack(&outs, 1)?, h, c))
    }

    /// One time step of a one-directional stack, for decoding: `x` (batch, input_size) and the state →
    /// the last layer's output (batch, hidden) and the next state. No dropout.
    ///
    /// When nothing asks for gradients (no input, state or weight is a variable or depends on one, as in a
    /// model loaded from a file for generation), a fused CPU step runs on raw buffers; otherwise the step is
    /// a graph of candle ops with autograd, so decoders can also be trained step by step.
    pub fn step(&self, x: &Tensor, state: &State) -> Result<(Tensor, State)> {
        if self.config.bidirectional {
            bail!(
                "step runs one time step forward; a bidirectional stack needs the whole sequence"
            );
        }
        let (batch, width) = x.dims2()?;
        if width != self.config.input_size {
            bail!(
                "expected a step input of shape (batch, {}), got {:?}",
                self.config.input_size,
                x.dims()
            );
        }
        self.validate_state(state, batch)?;
        if crate::fused::step::applies(x, state, &self.weights) {
            return crate::fused::step::step(
                self.config.cell,
                self.config.hidden_size,
                &self.weights,
                x,
                state,
            );
        }
        let mut hs = Vec::with_capacity(self.config.num_layers);
        let mut cs = Vec::with_capacity(self.config.num_layers);
        let mut input = x.clone();
        for (layer, w) in self.weights.iter().enumerate() {
            let xp = w.project_inputs(&input.unsqueeze(1)?)?.squeeze(1)?;
            let h = state.h.get(layer)?;
            let c = match &state.c {
                Some(c) => Some(c.get(layer)?),
                None => None,
            };
            let (h, c) = w.step(self.config.cell, &xp, &h, c.as_ref(), &w.w_hh.t()?)?;
            input = h.clone();
            hs.push(h);
            if let Some(c) = c {
                cs.push(c);
            }
        }
        let h = Tensor::stack(&hs, 0)?;
        let c = if cs.is_empty() {
            None
        } else {
            Some(Tensor::stack(&cs, 0)?)
        };
        Ok((input, State { h, c }))
    }

    fn validate(&self, xs: &Tensor, lengths: Option<&[usize]>, init: Option<&State>) -> Result<()> {
        let (batch, seq_len, width) = match xs.dims() {
            [b, s, w] => (*b, *s, *w),
            other => bail!(
                "expected input of shape (batch, seq, {}), got {:?}",
                self.config.input_size,
                other
            ),
        };
        if width != self.config.input_size {
            bail!(
                "expected input of shape (batch, seq, {}), got {:?}",
                self.config.input_size,
                xs.dims()
            );
        }
        self.validate_dims(batch, seq_len, width, lengths, init)
    }

    fn validate_dims(
        &self,
        batch: usize,
        seq_len: usize,
        width: usize,
        lengths: Option<&[usize]>,
        init: Option<&State>,
    ) -> Result<()> {
        if batch == 0 || seq_len == 0 {
            bail!(
                "expected a non-empty input, got shape {:?}",
                [batch, seq_len, width]
            );
        }
        if let Some(lengths) = lengths {
            if lengths.len() != batch {
                bail!(
                    "expected {batch} lengths (one per row), got {}",
                    lengths.len()
                );
            }
            if let Some((row, &len)) = lengths
                .iter()
                .enumerate()
                .find(|(_, &l)| l == 0 || l > seq_len)
            {
                bail!("length {len} of row {row} is outside 1..={seq_len}");
            }
        }
        if let Some(state) = init {
            self.validate_state(state, batch)?;
        }
        Ok(())
    }

    fn validate_state(&self, state: &State, batch: usize) -> Result<()> {
        let expected = [self.config.state_rows(), batch, self.config.hidden_size];
        if state.h.dims() != expected {
            bail!(
                "expected a state h of shape {:?}, got {:?}",
                expected,
                state.h.dims()
            );
        }
        match (&state.c, self.config.cell.has_cell_state()) {
            (Some(c), true) if c.dims() != expected => bail!(
                "expected a state c of shape {:?}, got {:?}",
                expected,
                c.dims()
            ),
            (None, true) => bail!("an LSTM state needs a cell tensor c, got none"),
            (Some(_), false) => bail!(
                "a {} state has no cell tensor c, but one was given",
                self.config.cell
            ),
            _ => Ok(()),
        }
    }
}

/// (batch, seq) of a tensor of token ids, which must be u32 of rank 2.
fn token_ids_dims(ids: &Tensor) -> Result<(usize, usize)> {
    let dims = match ids.dims() {
        [b, s] => (*b, *s),
        other => bail!("expected token ids of shape (batch, seq), got {other:?}"),
    };
    if ids.dtype() != DType::U32 {
        bail!("expected u32 token ids, got {:?}", ids.dtype());
    }
    Ok(dims)
}

/// One-hot rows (batch, seq, vocab) of `ids`.
pub(crate) fn one_hot(
    ids: &[u32],
    batch: usize,
    seq_len: usize,
    vocab: usize,
    device: &Device,
) -> Result<Tensor> {
    let mut v = vec![0f32; ids.len() * vocab];
    for (i, &id) in ids.iter().enumerate() {
        v[i * vocab + id as usize] = 1.0;
    }
    Tensor::from_vec(v, (batch, seq_len, vocab), device)
}

/// Per-step masks from row lengths: `masks[t]` is (batch, 1), 1 where `t < lengths[row]`, else 0.
fn step_masks(
    lengths: &[usize],
    seq_len: usize,
    dtype: DType,
    device: &Device,
) -> Result<Vec<Tensor>> {
    (0..seq_len)
        .map(|t| {
            let m: Vec<f32> = lengths
                .iter()
                .map(|&l| if t < l { 1.0 } else { 0.0 })
                .collect();
            Tensor::from_vec(m, (lengths.len(), 1), device)?.to_dtype(dtype)
        })
        .collect()
}
