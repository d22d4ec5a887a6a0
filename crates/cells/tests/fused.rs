//! The fused CPU kernels against the composite reference on random shapes, lengths and states: values and
//! the gradients of every input, state and weight.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use seqlab_cells::{CellKind, Recurrent, RecurrentConfig, State};

/// SplitMix64: the same cases on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
    fn tensor(&mut self, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
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
fn fused_matches_composite_on_random_shapes_with_lengths() {
    let mut rng = Rng(2026);
    let cells = [
        CellKind::Rnn,
        CellKind::RnnRelu,
        CellKind::Lstm,
        CellKind::Gru,
    ];
    let mut worst = 0f32;
    for case in 0..48 {
        let cell = cells[case % 4];
        let config = RecurrentConfig {
            cell,
            input_size: rng.range(1, 9),
            hidden_size: rng.range(1, 24),
            num_layers: rng.range(1, 3),
            bidirectional: rng.next().is_multiple_of(2),
            dropout: 0.0,
            bias: !rng.next().is_multiple_of(4),
            ..RecurrentConfig::default()
        };
        let (batch, seq) = (rng.range(1, 7), rng.range(1, 9));
        let with_lengths = !rng.next().is_multiple_of(3);
        let lengths: Option<Vec<usize>> =
            with_lengths.then(|| (0..batch).map(|_| rng.range(1, seq)).collect());
        let with_init = rng.next().is_multiple_of(2);

        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let rnn = Recurrent::new(&config, vb).unwrap();
        let xs = Var::from_tensor(&rng.tensor(&[batch, seq, config.input_size])).unwrap();
        let rows = config.state_rows();
        let h0 = Var::from_tensor(&rng.tensor(&[rows, batch, config.hidden_size])).unwrap();
        let c0 = Var::from_tensor(&rng.tensor(&[rows, batch, config.hidden_size])).unwrap();
        let init = with_init.then(|| State {
            h: h0.as_tensor().clone(),
            memory: (cell == CellKind::Lstm)
                .then(|| c0.as_tensor().clone())
                .into_iter()
                .collect(),
        });
        let r_out = rng.tensor(&[batch, seq, config.output_size()]);
        let r_state = rng.tensor(&[rows, batch, config.hidden_size]);

        let run = |fused: bool| {
            let (out, state) = if fused {
                rnn.forward(xs.as_tensor(), lengths.as_deref(), init.as_ref(), true)
            } else {
                rnn.forward_composite(xs.as_tensor(), lengths.as_deref(), init.as_ref(), true)
            }
            .unwrap();
            let mut loss = ((&out * &r_out).unwrap().sum_all().unwrap()
                + (&state.h * &r_state).unwrap().sum_all().unwrap())
            .unwrap();
            if let Some(c) = state.memory.first() {
                let l = (c * &r_state).unwrap().sum_all().unwrap();
                loss = (loss + l).unwrap();
            }
            let grads = loss.backward().unwrap();
            let mut tensors: HashMap<String, Tensor> = HashMap::new();
            tensors.insert("output".into(), out);
            tensors.insert("h_n".into(), state.h);
            if let Some(c) = state.memory.into_iter().next() {
                tensors.insert("c_n".into(), c);
            }
            tensors.insert(
                "grad input".into(),
                grads.get(xs.as_tensor()).unwrap().clone(),
            );
            if with_init {
                tensors.insert("grad h0".into(), grads.get(h0.as_tensor()).unwrap().clone());
                if cell == CellKind::Lstm {
                    tensors.insert("grad c0".into(), grads.get(c0.as_tensor()).unwrap().clone());
                }
            }
            for (name, var) in varmap.data().lock().unwrap().iter() {
                let g = grads.get(var.as_tensor()).unwrap().clone();
                tensors.insert(format!("grad {name}"), g);
            }
            tensors
        };
        let fused = run(true);
        let composite = run(false);
        assert_eq!(fused.len(), composite.len());
        for (name, want) in &composite {
            let d = max_diff(&fused[name], want);
            assert!(
                d <= 1e-5,
                "case {case} {config:?} batch {batch} seq {seq} lengths {lengths:?}: {name} differs by {d:e}"
            );
            worst = worst.max(d);
        }
    }
    eprintln!("worst |fused - composite| over 48 random cases: {worst:.2e}");
}

#[test]
fn fused_linear_matches_candle_ops_and_skips_constant_inputs() {
    let mut rng = Rng(99);
    for (rows, k, m) in [(1, 1, 1), (7, 5, 3), (64, 96, 256), (33, 17, 9)] {
        let x = Var::from_tensor(&rng.tensor(&[rows, k])).unwrap();
        let w = Var::from_tensor(&rng.tensor(&[m, k])).unwrap();
        let b = Var::from_tensor(&rng.tensor(&[m])).unwrap();
        let r = rng.tensor(&[rows, m]);
        let fused =
            seqlab_cells::linear(x.as_tensor(), w.as_tensor(), Some(b.as_tensor())).unwrap();
        let plain = x
            .as_tensor()
            .matmul(&w.as_tensor().t().unwrap())
            .unwrap()
            .broadcast_add(b.as_tensor())
            .unwrap();
        assert!(max_diff(&fused, &plain) < 1e-5);
        let gf = (&fused * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gp = (&plain * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for v in [&x, &w, &b] {
            let d = max_diff(
                gf.get(v.as_tensor()).unwrap(),
                gp.get(v.as_tensor()).unwrap(),
            );
            assert!(d < 1e-4, "({rows}, {k}, {m}): gradient differs by {d:e}");
        }
        // A constant input (a one-hot, say) gets no gradient and costs no product.
        let constant = rng.tensor(&[rows, k]);
        let y = seqlab_cells::linear(&constant, w.as_tensor(), Some(b.as_tensor())).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        assert!(g.get(&constant).is_none());
        assert!(g.get(w.as_tensor()).is_some());
    }
    // Leading dimensions are kept.
    let x = rng.tensor(&[2, 3, 4]);
    let w = rng.tensor(&[5, 4]);
    let b = rng.tensor(&[5]);
    assert_eq!(
        seqlab_cells::linear(&x, &w, Some(&b)).unwrap().dims(),
        &[2, 3, 5]
    );
    let e = seqlab_cells::linear(&rng.tensor(&[2, 3]), &w, Some(&b)).unwrap_err();
    assert!(e.to_string().contains("(…, 4)"), "{e}");
}

#[test]
fn fused_step_matches_the_composite_step() {
    let mut rng = Rng(7);
    for cell in [
        CellKind::Rnn,
        CellKind::RnnRelu,
        CellKind::Lstm,
        CellKind::Gru,
    ] {
        // Hidden 70 runs on one thread; hidden 300 (weights past the threshold) splits rows across two.
        for (layers, batch, bias, hidden) in [
            (1, 1, true, 70),
            (2, 3, true, 70),
            (3, 2, false, 70),
            (2, 2, true, 300),
        ] {
            let config = RecurrentConfig {
                num_layers: layers,
                bias,
                ..RecurrentConfig::new(cell, 5, hidden)
            };
            // Plain tensors: nothing tracks gradients, so `step` takes the fused path.
            let varmap = VarMap::new();
            Recurrent::new(
                &config,
                VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
            )
            .unwrap();
            let plain: HashMap<String, Tensor> = varmap
                .data()
                .lock()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
                .collect();
            let fused = Recurrent::new(
                &config,
                VarBuilder::from_tensors(plain, DType::F32, &Device::Cpu),
            )
            .unwrap();
            // The same weights as variables: the composite step.
            let composite = Recurrent::new(
                &config,
                VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
            )
            .unwrap();
            let mut s_fused = State {
                h: rng.tensor(&[layers, batch, hidden]),
                memory: (cell == CellKind::Lstm)
                    .then(|| rng.tensor(&[layers, batch, hidden]))
                    .into_iter()
                    .collect(),
            };
            let mut s_comp = s_fused.clone();
            for _ in 0..4 {
                let x = rng.tensor(&[batch, 5]);
                let (y_f, next_f) = fused.step(&x, &s_fused).unwrap();
                let (y_c, next_c) = composite.step(&x, &s_comp).unwrap();
                assert!(
                    max_diff(&y_f, &y_c) < 1e-5,
                    "{cell} layers {layers} batch {batch}"
                );
                assert!(max_diff(&next_f.h, &next_c.h) < 1e-5);
                if let (Some(a), Some(b)) = (next_f.memory.first(), next_c.memory.first()) {
                    assert!(max_diff(a, b) < 1e-5);
                }
                s_fused = next_f;
                s_comp = next_c;
            }
        }
    }
}

#[test]
fn one_hot_ids_match_dense_one_hot_inputs() {
    let mut rng = Rng(11);
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        for (layers, bidirectional, with_lengths) in [(1, false, false), (2, true, true)] {
            let vocab = 13;
            let config = RecurrentConfig {
                num_layers: layers,
                bidirectional,
                ..RecurrentConfig::new(cell, vocab, 9)
            };
            let varmap = VarMap::new();
            let rnn = Recurrent::new(
                &config,
                VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
            )
            .unwrap();
            let (batch, seq) = (4, 6);
            let ids: Vec<u32> = (0..batch * seq)
                .map(|_| rng.range(0, vocab - 1) as u32)
                .collect();
            let mut dense = vec![0f32; batch * seq * vocab];
            for (i, &id) in ids.iter().enumerate() {
                dense[i * vocab + id as usize] = 1.0;
            }
            let ids = Tensor::from_vec(ids, (batch, seq), &Device::Cpu).unwrap();
            let dense = Tensor::from_vec(dense, (batch, seq, vocab), &Device::Cpu).unwrap();
            let lengths = with_lengths.then(|| vec![6, 2, 5, 1]);
            let r_out = rng.tensor(&[batch, seq, config.output_size()]);
            let grads_of = |out: &Tensor| {
                (out * &r_out)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap()
            };

            let (out_ids, state_ids) = rnn
                .forward_one_hot(&ids, lengths.as_deref(), None, true)
                .unwrap();
            let (out_ref, state_ref) = rnn
                .forward_composite(&dense, lengths.as_deref(), None, true)
                .unwrap();
            assert!(max_diff(&out_ids, &out_ref) < 1e-6, "{cell}");
            assert!(max_diff(&state_ids.h, &state_ref.h) < 1e-6, "{cell}");
            let (g_ids, g_ref) = (grads_of(&out_ids), grads_of(&out_ref));
            for (name, var) in varmap.data().lock().unwrap().iter() {
                let d = max_diff(
                    g_ids.get(var.as_tensor()).unwrap(),
                    g_ref.get(var.as_tensor()).unwrap(),
                );
                assert!(
                    d < 1e-5,
                    "{cell} layers {layers}: grad {name} differs by {d:e}"
                );
            }
        }
    }
    let config = RecurrentConfig::new(CellKind::Lstm, 5, 4);
    let varmap = VarMap::new();
    let rnn = Recurrent::new(
        &config,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let bad = Tensor::new(&[[1u32, 5]], &Device::Cpu).unwrap();
    let e = rnn
        .forward_one_hot(&bad, None, None, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("token id 5"), "{e}");
}

#[test]
fn fused_cross_entropy_matches_candle_nn_with_and_without_padding() {
    let mut rng = Rng(5);
    // 2000 × 40 logits are split across threads.
    for (n, vocab) in [(1, 2), (7, 96), (300, 37), (2000, 40)] {
        let logits = Var::from_tensor(&(rng.tensor(&[n, vocab]) * 4.0).unwrap()).unwrap();
        let targets: Vec<u32> = (0..n).map(|_| rng.range(0, vocab - 1) as u32).collect();
        let t = Tensor::new(targets.as_slice(), &Device::Cpu).unwrap();
        let fused = seqlab_cells::cross_entropy(logits.as_tensor(), &t, None).unwrap();
        let plain = candle_nn::loss::cross_entropy(logits.as_tensor(), &t).unwrap();
        let d = (fused.to_scalar::<f32>().unwrap() - plain.to_scalar::<f32>().unwrap()).abs();
        assert!(d < 1e-5, "loss differs by {d}");
        let gf = fused.backward().unwrap();
        let gp = plain.backward().unwrap();
        let d = max_diff(
            gf.get(logits.as_tensor()).unwrap(),
            gp.get(logits.as_tensor()).unwrap(),
        );
        assert!(d < 1e-6, "gradient differs by {d}");
    }
    // Rows whose target is the ignored id (padding) count for nothing, in the loss and in its mean.
    let logits = Var::from_tensor(&rng.tensor(&[4, 5])).unwrap();
    let t = Tensor::new(&[3u32, 0, 2, 0], &Device::Cpu).unwrap();
    let kept_rows = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
    let kept = logits.as_tensor().index_select(&kept_rows, 0).unwrap();
    let want =
        candle_nn::loss::cross_entropy(&kept, &Tensor::new(&[3u32, 2], &Device::Cpu).unwrap())
            .unwrap();
    let got = seqlab_cells::cross_entropy(logits.as_tensor(), &t, Some(0)).unwrap();
    assert!((got.to_scalar::<f32>().unwrap() - want.to_scalar::<f32>().unwrap()).abs() < 1e-6);
    let g = got.backward().unwrap();
    let g = g.get(logits.as_tensor()).unwrap();
    let padded_rows = g
        .index_select(&Tensor::new(&[1u32, 3], &Device::Cpu).unwrap(), 0)
        .unwrap();
    assert_eq!(
        padded_rows
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        0.0
    );
    // A target outside the vocabulary is an error, not a panic.
    let e = seqlab_cells::cross_entropy(
        logits.as_tensor(),
        &Tensor::new(&[1u32, 9, 0, 0], &Device::Cpu).unwrap(),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("target 9"), "{e}");
}

#[test]
fn embedded_ids_match_an_embedding_lookup() {
    let mut rng = Rng(13);
    for cell in [CellKind::RnnRelu, CellKind::Lstm, CellKind::Gru] {
        // vocab 7 is folded into layer 0 (2·7 ≤ 24 tokens); vocab 40 takes the lookup path.
        for (vocab, layers, bidirectional, with_lengths, bias) in [
            (7, 1, false, false, true),
            (7, 2, true, true, true),
            (7, 1, false, true, false),
            (40, 2, false, true, true),
        ] {
            let config = RecurrentConfig {
                num_layers: layers,
                bidirectional,
                bias,
                ..RecurrentConfig::new(cell, 5, 8)
            };
            let varmap = VarMap::new();
            let rnn = Recurrent::new(
                &config,
                VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
            )
            .unwrap();
            let emb = Var::from_tensor(&rng.tensor(&[vocab, 5])).unwrap();
            let (batch, seq) = (4, 6);
            let ids: Vec<u32> = (0..batch * seq)
                .map(|_| rng.range(0, vocab - 1) as u32)
                .collect();
            let ids = Tensor::from_vec(ids, (batch, seq), &Device::Cpu).unwrap();
            let lengths = with_lengths.then(|| vec![6, 3, 1, 5]);
            let h0 = Var::from_tensor(&rng.tensor(&[config.state_rows(), batch, 8])).unwrap();
            let init = State {
                h: h0.as_tensor().clone(),
                memory: (cell == CellKind::Lstm)
                    .then(|| rng.tensor(&[config.state_rows(), batch, 8]))
                    .into_iter()
                    .collect(),
            };
            let r_out = rng.tensor(&[batch, seq, config.output_size()]);
            let r_h = rng.tensor(&[config.state_rows(), batch, 8]);
            let loss = |out: &Tensor, s: &State| {
                ((out * &r_out).unwrap().sum_all().unwrap()
                    + (&s.h * &r_h).unwrap().sum_all().unwrap())
                .unwrap()
            };

            let (out_f, s_f) = rnn
                .forward_embedded(&ids, emb.as_tensor(), lengths.as_deref(), Some(&init), true)
                .unwrap();
            let xs = emb
                .as_tensor()
                .index_select(&ids.flatten_all().unwrap(), 0)
                .unwrap()
                .reshape((batch, seq, 5))
                .unwrap();
            let (out_r, s_r) = rnn
                .forward_composite(&xs, lengths.as_deref(), Some(&init), true)
                .unwrap();
            assert!(max_diff(&out_f, &out_r) < 1e-5, "{cell} vocab {vocab}");
            assert!(max_diff(&s_f.h, &s_r.h) < 1e-5);
            let (g_f, g_r) = (
                loss(&out_f, &s_f).backward().unwrap(),
                loss(&out_r, &s_r).backward().unwrap(),
            );
            let mut checked = vec![
                ("embedding".to_string(), emb.clone()),
                ("h0".to_string(), h0.clone()),
            ];
            checked.extend(
                varmap
                    .data()
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
            for (name, var) in checked {
                let d = max_diff(
                    g_f.get(var.as_tensor()).unwrap(),
                    g_r.get(var.as_tensor()).unwrap(),
                );
                assert!(
                    d < 1e-5,
                    "{cell} vocab {vocab} layers {layers}: grad {name} differs by {d:e}"
                );
            }
        }
    }
}

/// The folded embedding path (`forward_embedded` with a vocabulary smaller than half the tokens) against the
/// composite pass over looked-up embeddings: outputs, final state and the gradients of the embedding, the
/// weights and a given initial state (a captioner's or translator's decoder starts from one that needs its
/// gradient).
#[test]
fn folded_embedding_path_matches_composite_with_an_initial_state() {
    let mut rng = Rng(77);
    let mut folded_cases = 0;
    for case in 0..16 {
        let cell = [CellKind::Lstm, CellKind::Gru, CellKind::Rnn][case % 3];
        let (vocab, embed, hidden) = (rng.range(3, 9), rng.range(1, 6), rng.range(1, 12));
        let (batch, seq) = (rng.range(2, 8), rng.range(4, 9));
        if 2 * vocab > batch * seq {
            // Would not fold: not what this test is about.
            continue;
        }
        folded_cases += 1;
        let config = RecurrentConfig {
            num_layers: rng.range(1, 2),
            ..RecurrentConfig::new(cell, embed, hidden)
        };
        let varmap = VarMap::new();
        let rnn = Recurrent::new(
            &config,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let embedding = Var::from_tensor(&rng.tensor(&[vocab, embed])).unwrap();
        let ids: Vec<u32> = (0..batch * seq)
            .map(|_| rng.range(0, vocab - 1) as u32)
            .collect();
        let ids = Tensor::from_vec(ids, (batch, seq), &Device::Cpu).unwrap();
        let lengths: Option<Vec<usize>> =
            (case % 2 == 1).then(|| (0..batch).map(|_| rng.range(1, seq)).collect());
        let rows = config.state_rows();
        let h0 = Var::from_tensor(&rng.tensor(&[rows, batch, hidden])).unwrap();
        let c0 = Var::from_tensor(&rng.tensor(&[rows, batch, hidden])).unwrap();
        let init = State {
            h: h0.as_tensor().clone(),
            memory: (cell == CellKind::Lstm)
                .then(|| c0.as_tensor().clone())
                .into_iter()
                .collect(),
        };
        let r_out = rng.tensor(&[batch, seq, hidden]);
        let r_state = rng.tensor(&[rows, batch, hidden]);
        let run = |folded: bool| {
            let (out, state) = if folded {
                rnn.forward_embedded(
                    &ids,
                    embedding.as_tensor(),
                    lengths.as_deref(),
                    Some(&init),
                    true,
                )
            } else {
                let xs = embedding
                    .as_tensor()
                    .index_select(&ids.flatten_all().unwrap(), 0)
                    .unwrap()
                    .reshape((batch, seq, embed))
                    .unwrap();
                rnn.forward_composite(&xs, lengths.as_deref(), Some(&init), true)
            }
            .unwrap();
            let loss = ((&out * &r_out).unwrap().sum_all().unwrap()
                + (&state.h * &r_state).unwrap().sum_all().unwrap())
            .unwrap();
            let grads = loss.backward().unwrap();
            let mut tensors = vec![
                ("output".to_string(), out),
                ("h_n".to_string(), state.h),
                (
                    "grad embedding".to_string(),
                    grads.get(embedding.as_tensor()).unwrap().clone(),
                ),
                (
                    "grad h0".to_string(),
                    grads.get(h0.as_tensor()).unwrap().clone(),
                ),
            ];
            if cell == CellKind::Lstm {
                tensors.push((
                    "grad c0".to_string(),
                    grads.get(c0.as_tensor()).unwrap().clone(),
                ));
            }
            let mut names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
            names.sort();
            for name in names {
                let var = varmap.data().lock().unwrap()[&name].clone();
                tensors.push((
                    format!("grad {name}"),
                    grads.get(var.as_tensor()).unwrap().clone(),
                ));
            }
            tensors
        };
        for ((name, got), (_, want)) in run(true).iter().zip(run(false).iter()) {
            let d = max_diff(got, want);
            assert!(d <= 1e-5, "case {case} {cell:?} vocab {vocab} batch {batch} seq {seq} lengths {lengths:?}: {name} differs by {d:e}");
        }
    }
    assert!(folded_cases >= 8, "only {folded_cases} cases folded");
}
