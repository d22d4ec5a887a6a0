//! Shapes, invariants and errors of the public API (batch > 1, seq > 1 on every path).

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use seqlab_cells::{CellKind, Recurrent, RecurrentConfig, State};

const CELLS: [CellKind; 4] = [
    CellKind::Rnn,
    CellKind::RnnRelu,
    CellKind::Lstm,
    CellKind::Gru,
];

fn build(config: &RecurrentConfig) -> (VarMap, Recurrent) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let rnn = Recurrent::new(config, vb).unwrap();
    (varmap, rnn)
}

fn input(batch: usize, seq: usize, width: usize) -> Tensor {
    // Deterministic, varied values (the candle tests' habit): cos of a ramp.
    Tensor::arange(0f32, (batch * seq * width) as f32, &Device::Cpu)
        .unwrap()
        .affine(0.37, 0.1)
        .unwrap()
        .cos()
        .unwrap()
        .reshape((batch, seq, width))
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
fn forward_shapes_for_every_cell_layers_and_direction() {
    for cell in CELLS {
        for layers in [1, 3] {
            for bidirectional in [false, true] {
                let config = RecurrentConfig {
                    num_layers: layers,
                    bidirectional,
                    ..RecurrentConfig::new(cell, 4, 7)
                };
                let (_vm, rnn) = build(&config);
                let dirs = if bidirectional { 2 } else { 1 };
                for lengths in [None, Some(&[6usize, 1, 3][..])] {
                    let (out, state) = rnn.forward(&input(3, 6, 4), lengths, None, false).unwrap();
                    assert_eq!(
                        out.dims(),
                        &[3, 6, dirs * 7],
                        "{cell} {layers} {bidirectional}"
                    );
                    assert_eq!(state.h.dims(), &[layers * dirs, 3, 7]);
                    assert_eq!(!state.memory.is_empty(), cell == CellKind::Lstm);
                    if let Some(c) = state.memory.first() {
                        assert_eq!(c.dims(), &[layers * dirs, 3, 7]);
                    }
                }
            }
        }
    }
}

#[test]
fn steps_compose_to_the_whole_sequence() {
    for cell in CELLS {
        let config = RecurrentConfig {
            num_layers: 2,
            ..RecurrentConfig::new(cell, 4, 5)
        };
        let (_vm, rnn) = build(&config);
        let xs = input(3, 6, 4);
        let (out, final_state) = rnn.forward(&xs, None, None, false).unwrap();
        let mut state = rnn.zero_state(3, DType::F32, &Device::Cpu).unwrap();
        for t in 0..6 {
            let x = xs.narrow(1, t, 1).unwrap().squeeze(1).unwrap();
            let (y, next) = rnn.step(&x, &state).unwrap();
            assert_eq!(y.dims(), &[3, 5]);
            let want = out.narrow(1, t, 1).unwrap().squeeze(1).unwrap();
            assert!(max_diff(&y, &want) < 1e-6, "{cell} step {t}");
            state = next;
        }
        assert!(max_diff(&state.h, &final_state.h) < 1e-6);
    }
}

#[test]
fn padding_does_not_change_a_row() {
    // The same row alone, and padded with garbage inside a batch with a longer row, gives the same outputs
    // over its valid steps and the same final state, in both directions.
    for cell in CELLS {
        let config = RecurrentConfig {
            num_layers: 2,
            bidirectional: true,
            ..RecurrentConfig::new(cell, 4, 5)
        };
        let (_vm, rnn) = build(&config);
        let batch = input(2, 7, 4);
        let short = batch.narrow(0, 1, 1).unwrap().narrow(1, 0, 4).unwrap();
        let (alone, alone_state) = rnn.forward(&short, None, None, false).unwrap();
        let (padded, padded_state) = rnn.forward(&batch, Some(&[7, 4]), None, false).unwrap();
        let row = padded.narrow(0, 1, 1).unwrap();
        assert!(
            max_diff(&row.narrow(1, 0, 4).unwrap(), &alone) < 1e-6,
            "{cell}"
        );
        let past = row
            .narrow(1, 4, 3)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap();
        assert_eq!(
            past.to_scalar::<f32>().unwrap(),
            0.0,
            "{cell}: outputs past the length"
        );
        let h_row = padded_state.h.narrow(1, 1, 1).unwrap();
        assert!(
            max_diff(&h_row, &alone_state.h) < 1e-6,
            "{cell}: final state"
        );
    }
}

#[test]
fn dropout_only_in_training() {
    let config = RecurrentConfig {
        num_layers: 2,
        dropout: 0.5,
        ..RecurrentConfig::new(CellKind::Lstm, 4, 16)
    };
    let (_vm, rnn) = build(&config);
    let xs = input(3, 5, 4);
    let (eval_a, _) = rnn.forward(&xs, None, None, false).unwrap();
    let (eval_b, _) = rnn.forward(&xs, None, None, false).unwrap();
    assert_eq!(max_diff(&eval_a, &eval_b), 0.0);
    let (train, _) = rnn.forward(&xs, None, None, true).unwrap();
    assert!(
        max_diff(&train, &eval_a) > 1e-3,
        "dropout had no effect in training"
    );

    let no_dropout = RecurrentConfig {
        dropout: 0.0,
        ..config
    };
    let (_vm, rnn) = build(&no_dropout);
    let (train, _) = rnn.forward(&xs, None, None, true).unwrap();
    let (eval, _) = rnn.forward(&xs, None, None, false).unwrap();
    assert_eq!(max_diff(&train, &eval), 0.0);
}

fn error_of(result: candle_core::Result<(Tensor, State)>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_inputs_name_expected_and_actual() {
    let config = RecurrentConfig {
        num_layers: 2,
        ..RecurrentConfig::new(CellKind::Lstm, 4, 5)
    };
    let (_vm, rnn) = build(&config);
    let e = error_of(rnn.forward(&input(3, 5, 6), None, None, false));
    assert!(
        e.contains("(batch, seq, 4)") && e.contains("[3, 5, 6]"),
        "{e}"
    );

    let e = error_of(rnn.forward(&input(3, 5, 4), Some(&[5, 5]), None, false));
    assert!(
        e.contains("expected 3 lengths") && e.contains("got 2"),
        "{e}"
    );

    let e = error_of(rnn.forward(&input(3, 5, 4), Some(&[5, 0, 2]), None, false));
    assert!(
        e.contains("length 0 of row 1") && e.contains("1..=5"),
        "{e}"
    );

    let e = error_of(rnn.forward(&input(3, 5, 4), Some(&[5, 6, 2]), None, false));
    assert!(e.contains("length 6 of row 1"), "{e}");

    let wrong = State {
        h: Tensor::zeros((1, 3, 5), DType::F32, &Device::Cpu).unwrap(),
        memory: vec![Tensor::zeros((2, 3, 5), DType::F32, &Device::Cpu).unwrap()],
    };
    let e = error_of(rnn.forward(&input(3, 5, 4), None, Some(&wrong), false));
    assert!(e.contains("[2, 3, 5]") && e.contains("[1, 3, 5]"), "{e}");

    let no_cell = State {
        h: Tensor::zeros((2, 3, 5), DType::F32, &Device::Cpu).unwrap(),
        memory: Vec::new(),
    };
    let e = error_of(rnn.forward(&input(3, 5, 4), None, Some(&no_cell), false));
    assert!(e.contains("cell tensor c"), "{e}");

    let e = error_of(rnn.forward(
        &Tensor::zeros((3, 4), DType::F32, &Device::Cpu).unwrap(),
        None,
        None,
        false,
    ));
    assert!(e.contains("[3, 4]"), "{e}");

    let bi = RecurrentConfig {
        bidirectional: true,
        ..RecurrentConfig::new(CellKind::Gru, 4, 5)
    };
    let (_vm, rnn) = build(&bi);
    let state = rnn.zero_state(3, DType::F32, &Device::Cpu).unwrap();
    let x = Tensor::zeros((3, 4), DType::F32, &Device::Cpu).unwrap();
    let e = error_of(rnn.step(&x, &state));
    assert!(e.contains("bidirectional"), "{e}");
}

#[test]
fn parameters_are_named_and_initialised_as_pytorch() {
    let config = RecurrentConfig {
        num_layers: 2,
        bidirectional: true,
        ..RecurrentConfig::new(CellKind::Gru, 4, 16)
    };
    let (varmap, _rnn) = build(&config);
    let data = varmap.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    assert_eq!(names.len(), 16);
    let shape = |n: &str| data[n].as_tensor().dims().to_vec();
    assert_eq!(shape("weight_ih_l0"), vec![48, 4]);
    assert_eq!(shape("weight_ih_l1_reverse"), vec![48, 32]);
    assert_eq!(shape("weight_hh_l1"), vec![48, 16]);
    assert_eq!(shape("bias_hh_l0_reverse"), vec![48]);
    let bound = 1.0 / 4.0; // 1/sqrt(16)
    for (name, var) in data.iter() {
        let v: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            v.iter().all(|x| x.abs() <= bound),
            "{name} outside U(-1/sqrt(H), 1/sqrt(H))"
        );
        assert!(
            v.iter().any(|x| x.abs() > bound / 2.0),
            "{name} looks unset"
        );
    }
}

#[test]
fn states_from_forward_select_rows_for_beams() {
    // A regression: the state `forward` returns is a view of the fused op's output, which index_select
    // refused until select_rows made it contiguous.
    for cell in CELLS {
        let (_vm, rnn) = build(&RecurrentConfig::new(cell, 4, 5));
        let (_, state) = rnn.forward(&input(3, 4, 4), None, None, false).unwrap();
        let rows = Tensor::new(&[2u32, 2, 0], &Device::Cpu).unwrap();
        let picked = state.select_rows(&rows).unwrap();
        assert_eq!(picked.h.dims(), &[1, 3, 5]);
        let want = state.h.get(0).unwrap().get(2).unwrap();
        assert_eq!(
            max_diff(&picked.h.get(0).unwrap().get(1).unwrap(), &want),
            0.0
        );
    }
}
