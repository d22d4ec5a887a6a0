//! Beam search: exact on small trees, better than greedy where greedy provably fails, honest scores.

mod common;

use std::ops::ControlFlow;

use common::{tokens, Bigram, HashTree};
use seqlab_decode::{
    beam_search, generate, length_penalty, BeamConfig, GenerateConfig, Hypothesis, Sampling,
    StopReason,
};

const EOS: u32 = 1;

/// Every hypothesis of up to `max_len` steps (ended at `EOS`, or open at `max_len`), scored from the model's
/// log-probabilities with our own arithmetic.
fn exhaustive(
    model: &HashTree,
    start: u32,
    first: u32,
    max_len: usize,
    alpha: f64,
) -> Vec<Hypothesis> {
    let mut all = Vec::new();
    let mut prefixes: Vec<Vec<u32>> = vec![Vec::new()];
    for step in 1..=max_len {
        let mut next = Vec::new();
        for prefix in &prefixes {
            for token in 0..model.vocab as u32 {
                let mut tokens = prefix.clone();
                tokens.push(token);
                let log_prob: f64 = model.replay(start, first, &tokens).iter().sum();
                if token == EOS {
                    tokens.pop();
                    all.push(Hypothesis {
                        tokens,
                        ended: true,
                        log_prob,
                        score: log_prob / length_penalty(step, alpha),
                    });
                } else if step == max_len {
                    all.push(Hypothesis {
                        tokens,
                        ended: false,
                        log_prob,
                        score: log_prob / length_penalty(step, alpha),
                    });
                } else {
                    next.push(tokens);
                }
            }
        }
        prefixes = next;
    }
    all.sort_by(|a, b| b.score.total_cmp(&a.score));
    all
}

fn assert_same(found: &[Hypothesis], expected: &[Hypothesis]) {
    assert_eq!(found.len(), expected.len());
    for (f, e) in found.iter().zip(expected) {
        assert_eq!((&f.tokens, f.ended), (&e.tokens, e.ended));
        assert!((f.log_prob - e.log_prob).abs() < 1e-9, "{f:?} vs {e:?}");
        assert!((f.score - e.score).abs() < 1e-9, "{f:?} vs {e:?}");
    }
}

#[test]
fn a_beam_wider_than_the_tree_equals_exhaustive_search() {
    // Vocabulary 4 with one end token: at most 3^5 = 243 open hypotheses at 5 steps.
    let model = HashTree::new(4, 2.5);
    for (start, alpha) in [(5, 0.0), (6, 0.6), (7, 1.5)] {
        let config = BeamConfig {
            width: 250,
            max_len: 5,
            alpha,
            eos: vec![EOS],
            n_best: 10,
            banned: vec![],
        };
        let found = beam_search(&model, &tokens(&[2]), HashTree::state(&[start]), &config).unwrap();
        let expected = exhaustive(&model, start, 2, 5, alpha);
        assert_same(&found, &expected[..10]);
    }
}

#[test]
fn stopping_early_loses_nothing() {
    // Vocabulary 3: at most 2^9 open hypotheses at 9 steps, but the search stops well before.
    for (start, alpha) in [(21, 0.0), (22, 0.0), (23, 0.5), (24, 1.0)] {
        let model = HashTree::new(3, 3.0);
        let config = BeamConfig {
            width: 520,
            max_len: 9,
            alpha,
            eos: vec![EOS],
            n_best: 3,
            banned: vec![],
        };
        let found = beam_search(&model, &tokens(&[2]), HashTree::state(&[start]), &config).unwrap();
        assert!(model.steps.get() < 9, "start {start}: no early stop");
        let expected = exhaustive(&model, start, 2, 9, alpha);
        assert_same(&found, &expected[..3]);
    }
}

/// After <bos>: "a" 0.6, "b" 0.4. After "a": <eos> 0.4, "a" 0.3, "b" 0.3. After "b": <eos> 0.9.
fn greedy_trap() -> Bigram {
    Bigram::from_probs(&[
        &[0.0, 0.0, 0.6, 0.4],
        &[0.0, 1.0, 0.0, 0.0],
        &[0.0, 0.4, 0.3, 0.3],
        &[0.0, 0.9, 0.05, 0.05],
    ])
}

#[test]
fn beam_search_finds_the_best_sequence_where_greedy_provably_does_not() {
    // Greedy must take "a" first (0.6 > 0.4), and every sequence through "a" has probability <= 0.6 * 0.4,
    // while "b <eos>" has 0.4 * 0.9 = 0.36.
    let model = greedy_trap();
    let greedy_config = GenerateConfig {
        sampling: Sampling::Greedy,
        max_len: 10,
        eos: vec![EOS],
        banned: vec![0],
        ..Default::default()
    };
    let greedy = generate(&model, &tokens(&[0]), (), &greedy_config, |_, _| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(greedy[0].tokens, [2]);
    assert_eq!(greedy[0].stop, StopReason::EndToken(EOS));

    let config = BeamConfig {
        width: 2,
        max_len: 10,
        alpha: 0.0,
        eos: vec![EOS],
        n_best: 2,
        banned: vec![0],
    };
    let best = beam_search(&model, &tokens(&[0]), (), &config).unwrap();
    assert_eq!(best[0].tokens, [3]);
    assert!(best[0].ended);
    assert!((best[0].log_prob - 0.36f64.ln()).abs() < 1e-6);
    assert_eq!(best[1].tokens, [2]);
    assert!((best[1].log_prob - 0.24f64.ln()).abs() < 1e-6);
    // Nothing open could beat the two ended hypotheses any more: the search stopped early.
    assert!(model.steps.get() < 10, "{} steps", model.steps.get());
}

#[test]
fn n_best_scores_are_sorted_and_equal_the_sum_of_step_log_probabilities() {
    let model = HashTree::new(7, 3.0);
    for (start, alpha) in [(11, 0.0), (12, 0.7), (13, 2.0)] {
        let config = BeamConfig {
            width: 5,
            max_len: 12,
            alpha,
            eos: vec![EOS],
            n_best: 5,
            banned: vec![0],
        };
        let n_best =
            beam_search(&model, &tokens(&[4]), HashTree::state(&[start]), &config).unwrap();
        assert_eq!(n_best.len(), 5);
        assert!(
            n_best.windows(2).all(|w| w[0].score >= w[1].score),
            "{n_best:?}"
        );
        for h in &n_best {
            let mut replayed = h.tokens.clone();
            if h.ended {
                replayed.push(EOS);
            }
            assert!(!replayed.contains(&0));
            let log_prob: f64 = model.replay(start, 4, &replayed).iter().sum();
            assert!(
                (h.log_prob - log_prob).abs() < 1e-9,
                "{} vs {log_prob}",
                h.log_prob
            );
            assert_eq!(h.steps(), replayed.len());
            let score = log_prob / ((5.0 + replayed.len() as f64) / 6.0).powf(alpha);
            assert!((h.score - score).abs() < 1e-9, "{} vs {score}", h.score);
        }
    }
}

#[test]
fn beam_width_1_equals_greedy() {
    let model = HashTree::new(9, 2.0);
    for start in [1, 2, 3, 4, 5, 6, 7, 8] {
        let greedy_config = GenerateConfig {
            sampling: Sampling::Greedy,
            max_len: 25,
            eos: vec![EOS],
            banned: vec![0],
            ..Default::default()
        };
        let greedy = generate(
            &model,
            &tokens(&[2]),
            HashTree::state(&[start]),
            &greedy_config,
            |_, _| ControlFlow::Continue(()),
        )
        .unwrap();
        let config = BeamConfig {
            width: 1,
            max_len: 25,
            alpha: 0.0,
            eos: vec![EOS],
            n_best: 1,
            banned: vec![0],
        };
        let beam = beam_search(&model, &tokens(&[2]), HashTree::state(&[start]), &config).unwrap();
        assert_eq!(beam[0].tokens, greedy[0].tokens, "start {start}");
        assert_eq!(beam[0].ended, greedy[0].stop == StopReason::EndToken(EOS));
    }
}

#[test]
fn the_single_starting_row_is_expanded_with_select() {
    let model = HashTree::new(6, 1.0);
    let config = BeamConfig {
        width: 3,
        max_len: 4,
        eos: vec![],
        ..Default::default()
    };
    let out = beam_search(&model, &tokens(&[2]), HashTree::state(&[9]), &config).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].tokens.len(), 4);
    assert!(!out[0].ended);
    let selects = model.selects.borrow();
    assert_eq!(selects[0], [0, 0, 0]);
    assert!(selects.iter().all(|s| s.len() == 3));
}

#[test]
fn max_len_0_gives_the_empty_hypothesis() {
    let model = greedy_trap();
    let config = BeamConfig {
        max_len: 0,
        ..Default::default()
    };
    let out = beam_search(&model, &tokens(&[0]), (), &config).unwrap();
    assert_eq!(out.len(), 1);
    assert!(out[0].tokens.is_empty() && !out[0].ended);
    assert_eq!((out[0].log_prob, out[0].score), (0.0, 0.0));
    assert_eq!(model.steps.get(), 0);
}
