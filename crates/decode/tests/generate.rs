//! Generation: the greedy equivalences, streaming, stop conditions and independent rows of a batch.

mod common;

use std::ops::ControlFlow;

use common::{tokens, Bigram, HashTree};
use seqlab_decode::{generate, GenerateConfig, Generation, Sampling, StopReason};

const STARTS: [u32; 6] = [1, 22, 333, 4444, 55555, 666666];

fn run(model: &HashTree, starts: &[u32], config: &GenerateConfig) -> Vec<Generation> {
    let first = vec![3; starts.len()];
    generate(
        model,
        &tokens(&first),
        HashTree::state(starts),
        config,
        |_, _| ControlFlow::Continue(()),
    )
    .unwrap()
}

fn config(sampling: Sampling) -> GenerateConfig {
    GenerateConfig {
        sampling,
        seed: 17,
        max_len: 40,
        eos: vec![1],
        banned: vec![0],
        ..Default::default()
    }
}

fn sample(temperature: f64, top_k: Option<usize>, top_p: Option<f64>) -> Sampling {
    Sampling::Sample {
        temperature,
        top_k,
        top_p,
    }
}

#[test]
fn top_k_1_equals_greedy() {
    let model = HashTree::new(12, 3.0);
    let greedy = run(&model, &STARTS, &config(Sampling::Greedy));
    for temperature in [0.5, 1.0, 3.0] {
        assert_eq!(
            run(&model, &STARTS, &config(sample(temperature, Some(1), None))),
            greedy
        );
    }
    // A vanishing nucleus keeps only the most likely token, too.
    assert_eq!(
        run(&model, &STARTS, &config(sample(2.0, None, Some(1e-9)))),
        greedy
    );
}

#[test]
fn temperature_towards_0_equals_greedy() {
    let model = HashTree::new(12, 3.0);
    let greedy = run(&model, &STARTS, &config(Sampling::Greedy));
    // Greedy ends some rows early and lets others run to the length: the comparison covers both.
    assert!(greedy.iter().any(|g| g.stop == StopReason::EndToken(1)));
    for temperature in [1e-6, 1e-12, 0.0] {
        assert_eq!(
            run(&model, &STARTS, &config(sample(temperature, None, None))),
            greedy,
            "T {temperature}"
        );
    }
    // ... and at an ordinary temperature the text differs.
    assert_ne!(
        run(&model, &STARTS, &config(sample(1.0, None, None))),
        greedy
    );
}

#[test]
fn greedy_loops_where_sampling_does_not() {
    // The lesson's point. After "a" the likeliest is "b", after "b" it is "a"; <eos> is never the likeliest.
    let model = Bigram::from_probs(&[
        &[0.0, 0.0, 0.7, 0.3],
        &[0.0, 1.0, 0.0, 0.0],
        &[0.0, 0.2, 0.3, 0.5],
        &[0.0, 0.2, 0.5, 0.3],
    ]);
    let greedy = generate(
        &model,
        &tokens(&[0]),
        (),
        &config(Sampling::Greedy),
        |_, _| ControlFlow::Continue(()),
    )
    .unwrap();
    assert_eq!(greedy[0].stop, StopReason::Length);
    assert!(greedy[0].tokens.chunks(2).all(|pair| pair == [2, 3]));
    let sampled = generate(
        &model,
        &tokens(&[0]),
        (),
        &config(sample(1.0, None, None)),
        |_, _| ControlFlow::Continue(()),
    )
    .unwrap();
    assert_eq!(sampled[0].stop, StopReason::EndToken(1));
}

#[test]
fn rows_of_a_batch_stop_independently_and_equal_single_runs() {
    let model = HashTree::new(10, 2.0);
    let config = config(Sampling::Greedy);
    let batch = run(&model, &STARTS, &config);
    for (start, row) in STARTS.iter().zip(&batch) {
        assert_eq!(&run(&HashTree::new(10, 2.0), &[*start], &config)[0], row);
    }
    let lengths: Vec<usize> = batch.iter().map(|g| g.tokens.len()).collect();
    assert!(
        lengths.iter().any(|&n| n < 40) && lengths.contains(&40),
        "{lengths:?}"
    );
    // Finished rows were dropped from the batch, never added back.
    let selects = model.selects.borrow();
    assert!(!selects.is_empty());
    assert!(selects.windows(2).all(|w| w[1].len() < w[0].len()));
    assert!(selects.iter().all(|s| s.windows(2).all(|w| w[0] < w[1])));
}

#[test]
fn a_row_draws_the_same_tokens_whatever_the_other_rows_do() {
    let config = config(sample(1.0, None, Some(0.9)));
    let alone = run(&HashTree::new(10, 2.0), &STARTS[..1], &config);
    let batch = run(&HashTree::new(10, 2.0), &STARTS, &config);
    assert_eq!(batch[0], alone[0]);
}

#[test]
fn tokens_stream_in_order_and_banned_tokens_never_appear() {
    let model = HashTree::new(8, 1.0);
    let config = GenerateConfig {
        sampling: sample(5.0, None, None),
        seed: 3,
        max_len: 300,
        banned: vec![0, 5],
        ..Default::default()
    };
    let mut streamed = vec![Vec::new(); 3];
    let out = generate(
        &model,
        &tokens(&[1, 2, 3]),
        HashTree::state(&[7, 8, 9]),
        &config,
        |row, t| {
            streamed[row].push(t);
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    for (row, g) in out.iter().enumerate() {
        assert_eq!(g.tokens, streamed[row]);
        assert_eq!(g.tokens.len(), 300);
        assert_eq!(g.stop, StopReason::Length);
        assert!(!g.tokens.iter().any(|t| *t == 0 || *t == 5));
    }
    // A hot temperature on a flat model visits every allowed token.
    let mut seen: Vec<u32> = out[0].tokens.clone();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, [1, 2, 3, 4, 6, 7]);
}

/// A model that deterministically cycles 2 → 3 → 4 → 5 → 2 → ... under greedy decoding.
fn cycle() -> Bigram {
    let row =
        |next: usize| -> Vec<f64> { (0..6).map(|t| if t == next { 0.9 } else { 0.02 }).collect() };
    let rows: Vec<Vec<f64>> = vec![row(2), row(2), row(3), row(4), row(5), row(2)];
    let rows: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
    Bigram::from_probs(&rows)
}

fn run_cycle(config: &GenerateConfig) -> (Generation, Vec<u32>) {
    let mut streamed = Vec::new();
    let out = generate(&cycle(), &tokens(&[0]), (), config, |_, t| {
        streamed.push(t);
        ControlFlow::Continue(())
    })
    .unwrap();
    (out[0].clone(), streamed)
}

#[test]
fn a_stop_sequence_ends_the_row_and_is_not_streamed() {
    let base = GenerateConfig {
        sampling: Sampling::Greedy,
        max_len: 20,
        ..Default::default()
    };
    let config = GenerateConfig {
        stop_sequences: vec![vec![9], vec![4, 5, 2]],
        ..base.clone()
    };
    let (g, streamed) = run_cycle(&config);
    assert_eq!(g.tokens, [2, 3]);
    assert_eq!(g.stop, StopReason::StopSequence(1));
    assert_eq!(streamed, [2, 3]);

    // A stop sequence that starts but never completes holds tokens back only until it fails.
    let config = GenerateConfig {
        stop_sequences: vec![vec![4, 5, 3]],
        max_len: 7,
        ..base.clone()
    };
    let (g, streamed) = run_cycle(&config);
    assert_eq!(g.tokens, [2, 3, 4, 5, 2, 3, 4]);
    assert_eq!(g.stop, StopReason::Length);
    assert_eq!(streamed, g.tokens);

    // An end token flushes what was held back.
    let config = GenerateConfig {
        stop_sequences: vec![vec![3, 4, 9]],
        eos: vec![5],
        ..base
    };
    let (g, streamed) = run_cycle(&config);
    assert_eq!(g.tokens, [2, 3, 4]);
    assert_eq!(g.stop, StopReason::EndToken(5));
    assert_eq!(streamed, [2, 3, 4]);
}

#[test]
fn the_callback_can_stop_a_row() {
    let model = cycle();
    let config = GenerateConfig {
        sampling: Sampling::Greedy,
        max_len: 100,
        ..Default::default()
    };
    let mut seen = 0;
    let out = generate(&model, &tokens(&[0]), (), &config, |_, _| {
        seen += 1;
        if seen == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert_eq!(out[0].tokens, [2, 3, 4]);
    assert_eq!(out[0].stop, StopReason::Callback);
    assert_eq!(model.steps.get(), 3);
}

#[test]
fn max_len_0_generates_nothing() {
    let model = cycle();
    let config = GenerateConfig {
        max_len: 0,
        ..Default::default()
    };
    let out = generate(&model, &tokens(&[0, 0]), (), &config, |_, _| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(out.len(), 2);
    assert!(out
        .iter()
        .all(|g| g.tokens.is_empty() && g.stop == StopReason::Length));
    assert_eq!(model.steps.get(), 0);
}
