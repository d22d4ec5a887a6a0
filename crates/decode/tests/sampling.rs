//! Sampled token frequencies match the distribution they are drawn from; the seed fixes the draws.

mod common;

use std::ops::ControlFlow;

use common::{tokens, Bigram};
use seqlab_decode::{generate, GenerateConfig, Sampler, Sampling};

const LOGITS: [f32; 8] = [1.2, -0.3, 2.0, 0.4, 0.9, -1.5, 1.9, 0.0];

/// The upper 0.1% points of the chi-square distribution with 1..=10 degrees of freedom.
const CHI_SQUARE_999: [f64; 10] = [
    10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12, 27.88, 29.59,
];

/// The upper 0.1% point of the chi-square distribution: the table, then the Wilson–Hilferty approximation.
fn chi_square_999(df: usize) -> f64 {
    if df <= CHI_SQUARE_999.len() {
        return CHI_SQUARE_999[df - 1];
    }
    let (k, z) = (df as f64, 3.0902);
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

fn sample(temperature: f64, top_k: Option<usize>, top_p: Option<f64>) -> Sampling {
    Sampling::Sample {
        temperature,
        top_k,
        top_p,
    }
}

/// softmax(logits / T), truncated to the top k and then to the smallest set with mass >= p, renormalised:
/// written out plainly as the oracle.
fn expected(
    logits: &[f32],
    temperature: f64,
    top_k: Option<usize>,
    top_p: Option<f64>,
) -> Vec<f64> {
    let scaled: Vec<f64> = logits.iter().map(|&l| l as f64 / temperature).collect();
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scaled.iter().map(|s| (s - max).exp()).collect();
    let mut ranked: Vec<usize> = (0..logits.len()).collect();
    ranked.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
    ranked.truncate(top_k.unwrap_or(logits.len()));
    let total: f64 = ranked.iter().map(|&i| weights[i]).sum();
    if let Some(p) = top_p {
        let mut mass = 0.0;
        let keep = ranked
            .iter()
            .position(|&i| {
                mass += weights[i] / total;
                mass >= p
            })
            .map_or(ranked.len(), |pos| pos + 1);
        ranked.truncate(keep);
    }
    let kept: f64 = ranked.iter().map(|&i| weights[i]).sum();
    let mut probs = vec![0.0; logits.len()];
    for &i in &ranked {
        probs[i] = weights[i] / kept;
    }
    probs
}

/// Asserts that `counts` fit `probs` by Pearson's chi-square test at the 0.1% level, and that tokens of
/// probability 0 never occur.
fn assert_fits(counts: &[usize], probs: &[f64], what: &str) {
    let n: usize = counts.iter().sum();
    let mut statistic = 0.0;
    let mut categories = 0;
    for (token, (&count, &p)) in counts.iter().zip(probs).enumerate() {
        if p == 0.0 {
            assert_eq!(
                count, 0,
                "{what}: token {token} has probability 0 but was drawn {count} times"
            );
            continue;
        }
        let expected = p * n as f64;
        assert!(
            expected >= 5.0,
            "{what}: too few draws for a chi-square test"
        );
        statistic += (count as f64 - expected).powi(2) / expected;
        categories += 1;
    }
    if categories < 2 {
        return;
    }
    let bound = chi_square_999(categories - 1);
    assert!(
        statistic < bound,
        "{what}: chi-square {statistic:.2} >= {bound} with {} degrees of freedom; counts {counts:?}, probabilities {probs:?}",
        categories - 1
    );
}

fn counts_from_sampler(sampling: Sampling, seed: u64, draws: usize) -> Vec<usize> {
    let mut sampler = Sampler::new(sampling, seed, &[]).unwrap();
    let mut counts = vec![0; LOGITS.len()];
    for _ in 0..draws {
        counts[sampler.sample(&LOGITS).unwrap() as usize] += 1;
    }
    counts
}

#[test]
fn temperature_sampling_matches_softmax_of_logits_over_temperature() {
    for temperature in [0.5, 1.0, 2.0] {
        let counts = counts_from_sampler(sample(temperature, None, None), 11, 20_000);
        assert_fits(
            &counts,
            &expected(&LOGITS, temperature, None, None),
            &format!("T {temperature}"),
        );
    }
}

#[test]
fn top_k_sampling_matches_the_truncated_renormalised_distribution() {
    for k in [2, 3, 5] {
        let counts = counts_from_sampler(sample(0.9, Some(k), None), 12, 20_000);
        let probs = expected(&LOGITS, 0.9, Some(k), None);
        assert_eq!(probs.iter().filter(|&&p| p > 0.0).count(), k);
        assert_fits(&counts, &probs, &format!("top-k {k}"));
    }
}

#[test]
fn top_p_sampling_matches_the_nucleus_distribution() {
    for p in [0.5, 0.8, 0.95] {
        let counts = counts_from_sampler(sample(1.3, None, Some(p)), 13, 20_000);
        assert_fits(
            &counts,
            &expected(&LOGITS, 1.3, None, Some(p)),
            &format!("top-p {p}"),
        );
    }
    let counts = counts_from_sampler(sample(0.7, Some(5), Some(0.9)), 14, 20_000);
    assert_fits(
        &counts,
        &expected(&LOGITS, 0.7, Some(5), Some(0.9)),
        "top-k 5 then top-p 0.9",
    );
}

#[test]
fn top_p_over_a_larger_vocabulary_matches_the_nucleus_distribution() {
    // 40 (or 30) candidates, more than the 16 the nucleus search sorts outright: it selects.
    let logits: Vec<f32> = (0..40).map(|i| (i as f32 * 0.7).cos() * 1.5).collect();
    for (temperature, top_k, top_p) in [(1.0, None, Some(0.9)), (0.8, Some(30), Some(0.7))] {
        let mut sampler = Sampler::new(sample(temperature, top_k, top_p), 21, &[]).unwrap();
        let mut counts = vec![0; logits.len()];
        for _ in 0..40_000 {
            counts[sampler.sample(&logits).unwrap() as usize] += 1;
        }
        let probs = expected(&logits, temperature, top_k, top_p);
        assert!(probs.iter().filter(|&&p| p > 0.0).count() > 8);
        assert_fits(
            &counts,
            &probs,
            &format!("T {temperature}, top-k {top_k:?}, top-p {top_p:?}"),
        );
    }
}

#[test]
fn top_p_over_a_word_sized_vocabulary_matches_the_nucleus_distribution() {
    // 2000 tokens, the nucleus several hundred: the cut goes through buckets of log-weight. Frequencies
    // are compared in 25 groups of token ids, and tokens outside the nucleus must never be drawn.
    let logits: Vec<f32> = (0..2000)
        .map(|i| (i as f32 * 0.37).sin() * 3.0 - (i as f32 + 1.0).ln())
        .collect();
    let probs = expected(&logits, 1.2, None, Some(0.8));
    let nucleus = probs.iter().filter(|&&p| p > 0.0).count();
    assert!((300..1900).contains(&nucleus), "nucleus of {nucleus}");
    let mut sampler = Sampler::new(sample(1.2, None, Some(0.8)), 31, &[]).unwrap();
    let (mut counts, mut group_probs) = (vec![0; 25], vec![0.0; 25]);
    let mut outside = 0;
    for _ in 0..50_000 {
        let token = sampler.sample(&logits).unwrap() as usize;
        counts[token % 25] += 1;
        outside += usize::from(probs[token] == 0.0);
    }
    for (token, p) in probs.iter().enumerate() {
        group_probs[token % 25] += p;
    }
    assert_eq!(outside, 0);
    assert_fits(&counts, &group_probs, "top-p 0.8 over 2000 tokens, grouped");
}

#[test]
fn batched_generation_draws_from_softmax_in_every_row() {
    let model = Bigram::fixed(&LOGITS);
    let config = GenerateConfig {
        sampling: sample(1.5, None, None),
        seed: 5,
        max_len: 50,
        ..Default::default()
    };
    let mut counts = vec![0; LOGITS.len()];
    let out = generate(&model, &tokens(&[0; 400]), (), &config, |_, t| {
        counts[t as usize] += 1;
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(out.len(), 400);
    assert!(out.iter().all(|g| g.tokens.len() == 50));
    assert_fits(
        &counts,
        &expected(&LOGITS, 1.5, None, None),
        "batch 400 x 50",
    );
    // Rows draw from different streams.
    assert_ne!(out[0].tokens, out[1].tokens);
}

#[test]
fn a_fixed_seed_gives_fixed_tokens() {
    let draw = |sampling, seed| {
        let mut sampler = Sampler::new(sampling, seed, &[]).unwrap();
        (0..24)
            .map(|_| sampler.sample(&LOGITS).unwrap())
            .collect::<Vec<u32>>()
    };
    // Pinned: ChaCha8, exp from + and *, integer weights and the tie-breaking rules make these the same on
    // every platform. A change here changes every user's generated text for a given seed.
    let pinned: [(Sampling, [u32; 24]); 3] = [
        (
            sample(0.7, None, None),
            [
                6, 6, 2, 4, 2, 2, 2, 6, 6, 2, 2, 6, 6, 4, 6, 2, 4, 2, 2, 0, 2, 2, 6, 0,
            ],
        ),
        (
            sample(1.0, Some(3), None),
            [
                6, 6, 2, 6, 2, 0, 2, 6, 6, 2, 2, 6, 6, 2, 6, 0, 2, 0, 2, 0, 0, 2, 6, 0,
            ],
        ),
        (
            sample(1.0, None, Some(0.95)),
            [
                6, 6, 2, 4, 2, 2, 2, 6, 6, 2, 3, 6, 7, 4, 6, 2, 4, 2, 2, 0, 2, 2, 6, 0,
            ],
        ),
    ];
    for (sampling, tokens) in pinned {
        assert_eq!(draw(sampling, 42), tokens, "{sampling:?}");
        assert_ne!(draw(sampling, 43), tokens, "{sampling:?}");
    }
}

#[test]
fn generate_row_0_draws_what_the_sampler_draws() {
    let model = Bigram::fixed(&LOGITS);
    let sampling = sample(0.8, Some(6), None);
    let config = GenerateConfig {
        sampling,
        seed: 9,
        max_len: 30,
        banned: vec![2],
        ..Default::default()
    };
    let out = generate(&model, &tokens(&[0, 0, 0]), (), &config, |_, _| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let mut sampler = Sampler::new(sampling, 9, &[2]).unwrap();
    let expected: Vec<u32> = (0..30).map(|_| sampler.sample(&LOGITS).unwrap()).collect();
    assert_eq!(out[0].tokens, expected);
    assert!(out.iter().all(|g| !g.tokens.contains(&2)));
}
