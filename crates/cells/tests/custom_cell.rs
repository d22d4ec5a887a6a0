//! A cell written outside the crate, with nothing but `step`: the stack runs it everywhere (layers, both
//! directions, lengths, an initial state, decoding steps) on the composite path, with gradients — the promise
//! of `docs/extending.md`.

use std::sync::Arc;

use candle_core::{DType, Device, Result, Tensor, Var};
use seqlab_cells::{Cell, CellKind, CellState, MemorySlot, Recurrent, RecurrentConfig};

/// h' = tanh(W x + u ⊙ h + m), m' = 0.5·m + h': a toy cell with one memory slot.
#[derive(Debug)]
struct Toy {
    w: Var,
    u: Var,
}

impl Cell for Toy {
    fn input_size(&self) -> usize {
        self.w.dims()[1]
    }
    fn hidden_size(&self) -> usize {
        self.w.dims()[0]
    }
    fn memory(&self) -> Vec<MemorySlot> {
        vec![MemorySlot {
            name: "m",
            what: "running sum",
            width: self.hidden_size(),
            learned_init: false,
        }]
    }
    fn step(&self, x: &Tensor, state: &CellState) -> Result<CellState> {
        let m = &state.memory[0];
        let h = ((x.matmul(&self.w.t()?)? + state.h.broadcast_mul(&self.u)?)? + m)?.tanh()?;
        let m = ((m * 0.5)? + &h)?;
        Ok(CellState { h, memory: vec![m] })
    }
}

fn toy(input: usize, hidden: usize, salt: f64) -> Arc<dyn Cell> {
    let w = Tensor::arange(0f32, (hidden * input) as f32, &Device::Cpu)
        .unwrap()
        .reshape((hidden, input))
        .unwrap();
    let w = ((w + salt).unwrap().cos().unwrap() * 0.4).unwrap();
    let u = (Tensor::arange(0f32, hidden as f32, &Device::Cpu).unwrap() + salt)
        .unwrap()
        .sin()
        .unwrap();
    Arc::new(Toy {
        w: Var::from_tensor(&w).unwrap(),
        u: Var::from_tensor(&u).unwrap(),
    })
}

fn stack(layers: usize, bidirectional: bool) -> (RecurrentConfig, Recurrent) {
    let config = RecurrentConfig {
        num_layers: layers,
        bidirectional,
        ..RecurrentConfig::new(CellKind::Rnn, 3, 4)
    };
    let cells = (0..config.state_rows())
        .map(|row| {
            let layer = row / config.directions();
            toy(config.layer_input_size(layer), 4, row as f64)
        })
        .collect();
    let rnn = Recurrent::with_cells(&config, cells, &Device::Cpu, DType::F32).unwrap();
    (config, rnn)
}

fn xs(batch: usize, seq: usize) -> Tensor {
    Tensor::arange(0f32, (batch * seq * 3) as f32, &Device::Cpu)
        .unwrap()
        .reshape((batch, seq, 3))
        .unwrap()
        .affine(0.1, -0.5)
        .unwrap()
        .sin()
        .unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn a_cell_with_only_a_step_runs_whole_sequences_as_its_steps() {
    let (_, rnn) = stack(2, false);
    let xs = xs(2, 5);
    let (out, state) = rnn.forward(&xs, None, None, false).unwrap();
    assert_eq!(out.dims(), &[2, 5, 4]);
    assert_eq!(state.h.dims(), &[2, 2, 4]);
    assert_eq!(state.memory.len(), 1);
    assert_eq!(state.memory[0].dims(), &[2, 2, 4]);
    // Step by step from the zero state gives the same outputs and final state.
    let mut s = rnn.zero_state(2, DType::F32, &Device::Cpu).unwrap();
    for t in 0..5 {
        let x = xs.narrow(1, t, 1).unwrap().squeeze(1).unwrap();
        let (y, next) = rnn.step(&x, &s).unwrap();
        let want = out.narrow(1, t, 1).unwrap().squeeze(1).unwrap();
        assert!(max_diff(&y, &want) < 1e-6, "step {t}");
        s = next;
    }
    assert!(max_diff(&s.h, &state.h) < 1e-6);
    assert!(max_diff(&s.memory[0], &state.memory[0]) < 1e-6);
}

#[test]
fn lengths_and_both_directions_hold_for_a_custom_cell() {
    let (_, rnn) = stack(2, true);
    let xs = xs(3, 6);
    let (out, state) = rnn.forward(&xs, Some(&[6, 2, 4]), None, false).unwrap();
    assert_eq!(out.dims(), &[3, 6, 8]);
    // A padded row equals the row alone at its length.
    let alone = xs.narrow(0, 1, 1).unwrap().narrow(1, 0, 2).unwrap();
    let (out1, state1) = rnn.forward(&alone, None, None, false).unwrap();
    let row = out.narrow(0, 1, 1).unwrap().narrow(1, 0, 2).unwrap();
    assert!(max_diff(&row, &out1) < 1e-6);
    let rest = out.narrow(0, 1, 1).unwrap().narrow(1, 2, 4).unwrap();
    assert_eq!(max_diff(&rest, &rest.zeros_like().unwrap()), 0.0);
    let m = state.memory[0].narrow(1, 1, 1).unwrap();
    assert!(max_diff(&m, &state1.memory[0]) < 1e-6);
}

#[test]
fn gradients_reach_a_custom_cells_parameters_and_input() {
    let (_, rnn) = stack(1, true);
    let xs = Var::from_tensor(&xs(2, 4)).unwrap();
    let (out, state) = rnn.forward(xs.as_tensor(), None, None, false).unwrap();
    let loss = (out.sum_all().unwrap() + state.memory[0].sum_all().unwrap()).unwrap();
    let grads = loss.backward().unwrap();
    let g = grads.get(xs.as_tensor()).expect("the input has a gradient");
    assert!(
        g.abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            > 0.0
    );
}

#[test]
fn a_stack_of_the_wrong_cells_is_refused() {
    let config = RecurrentConfig::new(CellKind::Rnn, 3, 4);
    let e = Recurrent::with_cells(&config, vec![toy(5, 4, 0.0)], &Device::Cpu, DType::F32)
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected 3"), "{e}");
    let e = Recurrent::with_cells(&config, vec![], &Device::Cpu, DType::F32)
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs 1 cells"), "{e}");
}
