//! `Recurrent`: a stack of layers of one cell kind, optionally bidirectional, over whole sequences.

use std::sync::Arc;

use candle_core::{bail, DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use crate::cell::{Cell, CellSpec, LayerInput, MemorySlot};
use crate::{LayerDropout, RecurrentConfig, State};

/// A stack of recurrent layers with PyTorch's semantics and parameter names (`batch_first=True`).
///
/// Build it with [`Recurrent::new`] from a [`VarBuilder`]: a `VarBuilder` over a `VarMap` initialises fresh
/// weights, one over a PyTorch `state_dict` saved as safetensors loads them unchanged.
#[derive(Debug, Clone)]
pub struct Recurrent {
    config: RecurrentConfig,
    /// Layer-major: index `layer * directions + direction`, the order of the state's rows.
    cells: Vec<Arc<dyn Cell>>,
    /// Where the parameters live and their dtype (the `VarBuilder`'s): the default state's.
    device: Device,
    dtype: DType,
}

impl Recurrent {
    /// Creates the stack's parameters in `vb`, each layer and direction a cell of `config.cell` (the
    /// classic cells name theirs as PyTorch does: `weight_ih_l{k}[_reverse]`, `weight_hh_l{k}[_reverse]`,
    /// `bias_ih_l{k}[_reverse]`, `bias_hh_l{k}[_reverse]`).
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
        if let Err(e) = config.options.validate() {
            bail!("{e}");
        }
        if config.options.pattern.is_some() && config.cell != crate::CellKind::Xlstm {
            bail!(
                "a block pattern (--pattern) is for --cell xlstm, not {}",
                config.cell
            );
        }
        let mut cells = Vec::with_capacity(config.state_rows());
        for layer in 0..config.num_layers {
            for dir in 0..config.directions() {
                let spec = CellSpec {
                    input_size: config.layer_input_size(layer),
                    hidden_size: config.hidden_size,
                    bias: config.bias,
                    layer,
                    layers: config.num_layers,
                    reverse: dir == 1,
                    options: config.options.clone(),
                    nested: false,
                };
                cells.push(config.cell.build(&spec, &vb)?);
            }
        }
        Ok(Self {
            config: config.clone(),
            cells,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    /// A stack of cells built elsewhere (a cell of your own, outside the registry), layer-major as the
    /// state's rows: `config.state_rows()` cells, each reading `config.layer_input_size(layer)` features and
    /// writing `config.hidden_size`, all with the same memory slots. `config.cell` only names the stack in
    /// messages. `device` and `dtype` are those of the default (zero) state.
    pub fn with_cells(
        config: &RecurrentConfig,
        cells: Vec<Arc<dyn Cell>>,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        if cells.len() != config.state_rows() || cells.is_empty() {
            bail!(
                "a stack of {} layers and {} directions needs {} cells, got {}",
                config.num_layers,
                config.directions(),
                config.state_rows(),
                cells.len()
            );
        }
        let slots = cells[0].memory();
        for (row, cell) in cells.iter().enumerate() {
            let layer = row / config.directions();
            let (input, hidden) = (config.layer_input_size(layer), config.hidden_size);
            if cell.input_size() != input || cell.hidden_size() != hidden || cell.memory() != slots
            {
                bail!(
                    "cell {row} reads {} and writes {} features, expected {input} and {hidden} with the memory of cell 0",
                    cell.input_size(),
                    cell.hidden_size()
                );
            }
        }
        Ok(Self {
            config: config.clone(),
            cells,
            device: device.clone(),
            dtype,
        })
    }

    /// The configuration the stack was built from.
    pub fn config(&self) -> &RecurrentConfig {
        &self.config
    }

    /// The cell of `layer` in direction `direction` (0 forward, 1 backward).
    pub fn cell(&self, layer: usize, direction: usize) -> &dyn Cell {
        self.cells[layer * self.config.directions() + direction].as_ref()
    }

    /// The memory tensors of the state beside `h` (the same for every layer): an LSTM's `c`.
    pub fn memory(&self) -> Vec<MemorySlot> {
        self.cells[0].memory()
    }

    /// The device of the stack's parameters.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A copy of the stack whose hidden-to-hidden weights are `f(index, weight_hh)`, `index` running
    /// layer-major over layers and directions as the state's rows do; the other parameters are shared.
    ///
    /// This is how DropConnect on the recurrent weights (AWD-LSTM's "weight drop") is built: pass a
    /// function that multiplies each `weight_hh` by a dropout mask, run the copy for one batch, and the
    /// gradients reach the original weights through the product, on every path (fused or composite).
    /// A cell without hidden-to-hidden weights is an error naming the cell.
    pub fn map_hidden_weights<F>(&self, mut f: F) -> Result<Self>
    where
        F: FnMut(usize, &Tensor) -> Result<Tensor>,
    {
        let cells = self
            .cells
            .iter()
            .enumerate()
            .map(|(index, cell)| {
                let mut at = |w: &Tensor| f(index, w);
                match cell.map_recurrent_weights(&mut at)? {
                    Some(mapped) => Ok(mapped),
                    None => bail!(
                        "a {} cell has no hidden-to-hidden weights to drop",
                        self.config.cell
                    ),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cells,
            ..self.clone()
        })
    }

    /// A zero state for `batch` rows, the default initial state.
    pub fn zero_state(&self, batch: usize, dtype: DType, device: &Device) -> Result<State> {
        let rows = self.config.state_rows();
        let h = Tensor::zeros((rows, batch, self.config.hidden_size), dtype, device)?;
        let memory = self
            .memory()
            .iter()
            .map(|slot| Tensor::zeros((rows, batch, slot.width), dtype, device))
            .collect::<Result<_>>()?;
        Ok(State { h, memory })
    }

    /// Runs the whole stack over `xs`.
    ///
    /// - `xs`: (batch, seq, input_size).
    /// - `lengths`: optional valid length of each row, each in `1..=seq`. A row stops at its length exactly as
    ///   with PyTorch's packed sequences: outputs past it are zero, its final state is the state after its last
    ///   valid step, and the backward direction starts at that step.
    /// - `init`: optional initial state, (layers * directions, batch, ·) each; zeros when `None`.
    /// - `train`: dropout between layers when the config asks for it: a [`LayerDropout`], or a bool (`true`:
    ///   candle's unseeded masks; `false`: none).
    ///
    /// Returns the last layer's outputs, (batch, seq, directions * hidden), and the final state. Each layer
    /// runs on its cell's fused kernel where it has one for f32 CPU tensors, else as a graph of candle ops.
    pub fn forward(
        &self,
        xs: &Tensor,
        lengths: Option<&[usize]>,
        init: Option<&State>,
        train: impl Into<LayerDropout>,
    ) -> Result<(Tensor, State)> {
        self.validate(xs, lengths, init)?;
        let fused = xs.device().is_cpu() && xs.dtype() == DType::F32;
        self.run_layers(LayerInput::Dense(xs), lengths, init, train.into(), fused)
    }

    /// [`Recurrent::forward`] over one-hot inputs given as token ids (batch, seq) u32, each below
    /// `input_size`: what `forward` computes on `one_hot(ids)`, as the lesson's character model feeds its
    /// network. A cell's fused path never builds the one-hot tensor: the classic cells' layer 0 input
    /// projection is a gather of W_ih's columns and its weight gradient a scatter-add, exactly the same
    /// numbers without the products with zeros (40% of a 64-unit character model's matrix work).
    pub fn forward_one_hot(
        &self,
        ids: &Tensor,
        lengths: Option<&[usize]>,
        init: Option<&State>,
        train: impl Into<LayerDropout>,
    ) -> Result<(Tensor, State)> {
        let (batch, seq_len) = token_ids_dims(ids)?;
        // Validated like a dense input of the same shape; the kernels check each id.
        self.validate_dims(batch, seq_len, self.config.input_size, lengths, init)?;
        let fused = ids.device().is_cpu();
        self.run_layers(LayerInput::OneHot(ids), lengths, init, train.into(), fused)
    }

    /// [`Recurrent::forward`] over `embedding[ids]`: token ids (batch, seq) u32 looked up in an embedding
    /// table (vocab, input_size), as a language model or classifier feeds its network.
    ///
    /// When the vocabulary is smaller than half the tokens of the batch, the classic cells' fused path folds
    /// the lookup into layer 0's input projection: it projects the vocabulary once (`embedding·W_ihᵀ + b_ih`,
    /// vocab × G·H) and reads one row per step, and the backward pass scatter-adds the rows' gradients into
    /// that table, so the three largest products of layer 0 shrink from batch·seq rows to vocab rows. The
    /// numbers are the same sums; gradients reach `embedding` as they would through an `index_select`.
    pub fn forward_embedded(
        &self,
        ids: &Tensor,
        embedding: &Tensor,
        lengths: Option<&[usize]>,
        init: Option<&State>,
        train: impl Into<LayerDropout>,
    ) -> Result<(Tensor, State)> {
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
            let input = LayerInput::Embedded {
                ids,
                table: embedding,
            };
            return self.run_layers(input, lengths, init, train.into(), true);
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
        self.validate(xs, lengths, init)?;
        self.run_layers(LayerInput::Dense(xs), lengths, init, train.into(), false)
    }

    /// Runs the layers and directions in order: stacking, dropout and the state's layout, written once for
    /// every cell and path. With `fused`, each layer runs on its cell's fused kernel where it has one.
    fn run_layers(
        &self,
        first: LayerInput<'_>,
        lengths: Option<&[usize]>,
        init: Option<&State>,
        train: LayerDropout,
        fused: bool,
    ) -> Result<(Tensor, State)> {
        let batch = match first {
            LayerInput::Dense(xs) => xs.dim(0)?,
            LayerInput::OneHot(ids) | LayerInput::Embedded { ids, .. } => ids.dim(0)?,
        };
        let device = match first {
            LayerInput::Dense(xs) => xs.device().clone(),
            LayerInput::OneHot(ids) | LayerInput::Embedded { ids, .. } => ids.device().clone(),
        };
        let init = match init {
            Some(s) => s.clone(),
            None => self.zero_state(batch, self.dtype, &device)?,
        };
        let seq_len = match first {
            LayerInput::Dense(xs) => xs.dim(1)?,
            LayerInput::OneHot(ids) | LayerInput::Embedded { ids, .. } => ids.dim(1)?,
        };
        let lengths_arc: Option<Arc<[usize]>> = lengths.map(Arc::from);
        // The composite path's per-step masks, made once, the first time a layer needs them.
        let mut masks: Option<Vec<Tensor>> = None;
        let dirs = self.config.directions();
        let mut rows = Vec::with_capacity(self.config.state_rows());
        let mut layer_in: Option<Tensor> = None;
        for layer in 0..self.config.num_layers {
            let input = match &layer_in {
                None => first,
                Some(xs) => LayerInput::Dense(xs),
            };
            let dropped;
            let input = match input {
                LayerInput::Dense(xs) if layer > 0 => {
                    dropped = train.apply(xs, self.config.dropout, layer)?;
                    LayerInput::Dense(&dropped)
                }
                other => other,
            };
            let mut outs = Vec::with_capacity(dirs);
            for dir in 0..dirs {
                let row = layer * dirs + dir;
                let cell = &self.cells[row];
                let state0 = init.row(row)?;
                let reverse = dir == 1;
                let done = if fused {
                    cell.forward_fused(&input, lengths_arc.as_ref(), &state0, reverse)
                        .transpose()?
                } else {
                    None
                };
                let (out, state) = match done {
                    Some(done) => done,
                    None => {
                        let xs = input.dense(cell.input_size())?;
                        // A cell with a dense kernel only: token ids as the dense steps they stand for.
                        let dense = LayerInput::Dense(&xs);
                        let again = if fused && !matches!(input, LayerInput::Dense(_)) {
                            cell.forward_fused(&dense, lengths_arc.as_ref(), &state0, reverse)
                                .transpose()?
                        } else {
                            None
                        };
                        match again {
                            Some(done) => done,
                            None => {
                                if masks.is_none() {
                                    if let Some(lengths) = lengths {
                                        masks = Some(step_masks(
                                            lengths,
                                            seq_len,
                                            xs.dtype(),
                                            &device,
                                        )?);
                                    }
                                }
                                cell.forward_composite(&xs, masks.as_deref(), &state0, reverse)?
                            }
                        }
                    }
                };
                outs.push(out);
                rows.push(state);
            }
            layer_in = Some(if outs.len() == 1 {
                outs.remove(0)
            } else {
                Tensor::cat(&outs, 2)?
            });
        }
        let out = match layer_in {
            Some(out) => out,
            None => bail!("a recurrent stack needs at least one layer"),
        };
        Ok((out, State::from_rows(&rows)?))
    }

    /// One time step of a one-directional stack, for decoding: `x` (batch, input_size) and the state →
    /// the last layer's output (batch, hidden) and the next state. No dropout.
    ///
    /// When nothing asks for gradients (no input, state or weight is a variable or depends on one, as in a
    /// model loaded from a file for generation), each layer runs its cell's fused step on raw buffers where
    /// it has one; otherwise the step is a graph of candle ops with autograd, so decoders can also be trained
    /// step by step.
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
        let plain = |t: &Tensor| !t.track_op();
        let untracked = plain(x) && plain(&state.h) && state.memory.iter().all(plain);
        let mut rows = Vec::with_capacity(self.config.num_layers);
        let mut input = x.clone();
        for (layer, cell) in self.cells.iter().enumerate() {
            let state = state.row(layer)?;
            let fused = if untracked {
                cell.step_fused(&input, &state).transpose()?
            } else {
                None
            };
            let next = match fused {
                Some(next) => next,
                None => cell.step(&input, &state)?,
            };
            input = next.h.clone();
            rows.push(next);
        }
        Ok((input, State::from_rows(&rows)?))
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
        let rows = self.config.state_rows();
        let expected = [rows, batch, self.config.hidden_size];
        if state.h.dims() != expected {
            bail!(
                "expected a state h of shape {:?}, got {:?}",
                expected,
                state.h.dims()
            );
        }
        let slots = self.memory();
        let cell = self.config.cell;
        if state.memory.len() > slots.len() {
            match slots.len() {
                0 => bail!("a {cell} state has no memory beside h, but one was given"),
                n => bail!(
                    "a {cell} state has {n} memory tensor(s) beside h, but {} were given",
                    state.memory.len()
                ),
            }
        }
        for (k, slot) in slots.iter().enumerate() {
            let expected = [rows, batch, slot.width];
            match state.memory.get(k) {
                None => bail!(
                    "a {cell} state needs its {} {}, got none",
                    slot.what,
                    slot.name
                ),
                Some(m) if m.dims() != expected => bail!(
                    "expected a state {} of shape {:?}, got {:?}",
                    slot.name,
                    expected,
                    m.dims()
                ),
                Some(_) => {}
            }
        }
        Ok(())
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
