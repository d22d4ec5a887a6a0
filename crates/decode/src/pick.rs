//! The numerics of choosing one token from a row of logits, in plain Rust.
//!
//! Reproducible by construction, so that a seed gives the same tokens on every platform:
//!
//! - random numbers come from ChaCha8, one stream per batch row;
//! - `exp` is computed here from `+` and `*` only (IEEE-exact everywhere; Rust never fuses them), not by the
//!   platform's math library;
//! - weights are fixed-point integers, so sums are exact whatever the order: the top-p cut and the draw
//!   cannot depend on how a selection algorithm happens to leave the candidates (and integer sums
//!   vectorise);
//! - candidates are ranked by logit, ties to the lower token id, and drawn in token-id order.

use std::f64::consts::{LN_2, LOG2_E};

use rand_chacha::rand_core::RngCore;
use rand_chacha::ChaCha8Rng;

use crate::{Error, Result, Sampling};

/// Weight of the most likely token: weights are `exp((l - max) / T)` in [0, 1] times this, as integers.
/// 2^52 for vocabularies up to 2047 tokens, less beyond so that the sum of all weights stays below 2^63
/// (2^49 for 10 000 tokens). A token below 1/one of the most likely one is never drawn: it would come
/// once in more than 10^14 tokens even for a 50 000-token vocabulary.
fn fixed_point_one(vocab: usize) -> f64 {
    let bits = usize::BITS - vocab.leading_zeros();
    (1u64 << 52.min(63 - bits)) as f64
}

/// The validated sampling parameters, plus scratch buffers reused from token to token.
#[derive(Debug, Clone)]
pub(crate) struct Picker {
    sampling: Sampling,
    banned: Vec<u32>,
    /// Rank keys of candidates (see [`rank_key`]).
    keys: Vec<u64>,
    /// Fixed-point weight by token id (for top-k, only the candidates' entries are meaningful).
    weights: Vec<u64>,
    /// Bucket by token id, for top-p over the whole vocabulary (see [`Scale::bucket`]).
    buckets: Vec<u16>,
}

impl Picker {
    pub(crate) fn new(sampling: Sampling, banned: &[u32]) -> Result<Picker> {
        sampling.validate()?;
        Ok(Picker {
            sampling,
            banned: banned.to_vec(),
            keys: Vec::new(),
            weights: Vec::new(),
            buckets: Vec::new(),
        })
    }

    /// Chooses a token from `logits` (one row, modified in place: banned tokens become -inf). Draws one
    /// random number unless the rule is greedy. `row` only names the row in errors.
    pub(crate) fn pick(
        &mut self,
        logits: &mut [f32],
        row: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<u32> {
        mask(logits, &self.banned);
        let (argmax, max) = argmax(logits, row)?;
        let (temperature, top_k, top_p) = match self.sampling {
            Sampling::Sample {
                temperature,
                top_k,
                top_p,
            } if temperature > 0.0 => (temperature, top_k, top_p),
            _ => return Ok(argmax as u32),
        };
        let logits = &*logits;
        let scale = Scale {
            max: f64::from(max),
            // Capped so that a tiny T gives 0 * MAX = 0 nats for the maximum, not 0 * inf = NaN.
            inv_temperature: (1.0 / temperature).min(f64::MAX),
            one: fixed_point_one(logits.len()),
        };
        let u = uniform(rng);
        self.weights.resize(logits.len(), 0);
        let token = match (
            top_k.filter(|&k| k < logits.len()),
            top_p.filter(|&p| p < 1.0),
        ) {
            (None, None) => {
                let total = self.weigh_all(logits, scale);
                draw(0..logits.len() as u32, &self.weights, total, u)
            }
            (None, Some(p)) => self.draw_nucleus(logits, scale, p, u),
            (Some(k), top_p) => self.draw_top_k(logits, scale, k, top_p, u),
        };
        Ok(token.unwrap_or(argmax as u32))
    }

    /// Weighs every token, in one pass that vectorises; returns the total weight.
    fn weigh_all(&mut self, logits: &[f32], scale: Scale) -> u64 {
        let mut total: u64 = 0;
        for (w, &l) in self.weights.iter_mut().zip(logits) {
            *w = scale.weight(l);
            total += *w;
        }
        total
    }

    /// Top-p over the whole vocabulary, in linear time: sums the weight of each bucket of tokens (buckets
    /// follow the rank), finds the bucket where the running weight reaches `p` of the total, and ranks
    /// only that bucket's tokens to cut it. Then draws, in token-id order, from every token of the
    /// buckets before it and the kept part of it.
    fn draw_nucleus(&mut self, logits: &[f32], scale: Scale, p: f64, u: f64) -> Option<u32> {
        let vocab = logits.len();
        let total = self.weigh_all(logits, scale);
        let threshold = (p * total as f64).ceil() as u64;
        let (weights, buckets, keys) = (&self.weights, &mut self.buckets, &mut self.keys);
        buckets.resize(vocab, 0);
        let mut masses = [0u64; BUCKETS];
        for ((b, &w), &l) in buckets.iter_mut().zip(weights).zip(logits) {
            *b = scale.bucket(l);
            masses[usize::from(*b)] += w;
        }
        let mut above = 0;
        let Some(crossing) = masses.iter().position(|&mass| {
            let reached = above + mass >= threshold;
            above += if reached { 0 } else { mass };
            reached
        }) else {
            // The threshold exceeds the total (by rounding): keep everything.
            return draw(0..vocab as u32, weights, total, u);
        };
        let crossing = crossing as u16;
        keys.clear();
        keys.extend(
            (0..vocab as u32)
                .filter(|&id| buckets[id as usize] == crossing)
                .map(|id| rank_key(logits[id as usize], id)),
        );
        let (kept, mass) = nucleus(keys, weights, threshold - above);
        let cut = keys[..kept].iter().copied().max()?;
        let kept = (0..vocab as u32).filter(|&id| {
            let b = buckets[id as usize];
            b < crossing || (b == crossing && rank_key(logits[id as usize], id) <= cut)
        });
        draw(kept, weights, above + mass, u)
    }

    /// Top-k (`k` smaller than the vocabulary), then top-p over the `k` if asked: selects the `k` best
    /// keys, weighs only them, cuts the nucleus among them, and draws in token-id order.
    fn draw_top_k(
        &mut self,
        logits: &[f32],
        scale: Scale,
        k: usize,
        top_p: Option<f64>,
        u: f64,
    ) -> Option<u32> {
        let vocab = logits.len();
        let (weights, keys) = (&mut self.weights, &mut self.keys);
        keys.clear();
        keys.extend(
            (0..vocab as u32)
                .filter(|&id| logits[id as usize] > f32::NEG_INFINITY)
                .map(|id| rank_key(logits[id as usize], id)),
        );
        if k < keys.len() {
            keys.select_nth_unstable(k - 1);
            keys.truncate(k);
        }
        let mut total: u64 = 0;
        for &key in keys.iter() {
            let id = key_id(key);
            weights[id] = scale.weight(logits[id]);
            total += weights[id];
        }
        if let Some(p) = top_p {
            let (kept, mass) = nucleus(keys, weights, (p * total as f64).ceil() as u64);
            keys.truncate(kept);
            total = mass;
        }
        // Sort a few kept ids, or walk the vocabulary keeping what ranks at or above the last kept token
        // (the kept set is exactly that).
        if keys.len() * 8 <= vocab {
            keys.sort_unstable_by_key(|&key| key as u32);
            draw(keys.iter().map(|&key| key as u32), weights, total, u)
        } else {
            let cut = keys.iter().copied().max()?;
            let kept = (0..vocab as u32).filter(|&id| {
                let l = logits[id as usize];
                l > f32::NEG_INFINITY && rank_key(l, id) <= cut
            });
            draw(kept, weights, total, u)
        }
    }
}

/// How logits become weights: `exp((l - max) / T)` in [0, 1], as fixed-point integers.
#[derive(Debug, Clone, Copy)]
struct Scale {
    max: f64,
    inv_temperature: f64,
    /// The weight of the most likely token (see [`fixed_point_one`]).
    one: f64,
}

impl Scale {
    /// How many nats below the most likely token `l` lies once divided by T: `(max - l) / T` (inf for
    /// -inf).
    fn nats(self, l: f32) -> f64 {
        (self.max - f64::from(l)) * self.inv_temperature
    }

    fn weight(self, l: f32) -> u64 {
        to_fixed_point(exp_nonpositive(-self.nats(l)) * self.one)
    }

    /// `nats(l)` in steps of 1/16 (rounded), up to `BUCKETS - 1`: one more bucket for every 6% less
    /// weight, and the last one for everything below e^-40 (weight 0). Never decreases as the rank
    /// falls; computed without branches or float-to-integer casts, so that its loop vectorises.
    fn bucket(self, l: f32) -> u16 {
        const ROUND: f64 = 6_755_399_441_055_744.0;
        let last = (BUCKETS - 1) as f64;
        let x = self.nats(l) * BUCKETS_PER_NAT;
        let x = if x < last { x } else { last };
        (x + ROUND).to_bits() as u16
    }
}

/// Buckets of [`Scale::bucket`]: 16 per nat, up to 40 nats.
const BUCKETS_PER_NAT: f64 = 16.0;
const BUCKETS: usize = 640;

/// A uniform number in [0, 1) from the top 53 bits of one u64: exact and the same everywhere.
fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A key whose ascending order is the rank of candidates: higher logit first, then lower token id (-0.0
/// and 0.0 count as equal). Sorting and selecting plain `u64`s is several times faster than comparing
/// floats through an index, and the key of the last kept candidate decides membership in one comparison.
pub(crate) fn rank_key(logit: f32, id: u32) -> u64 {
    let logit = if logit == 0.0 { 0.0 } else { logit };
    let bits = logit.to_bits();
    // Increasing in the logit: flip negatives entirely, set the sign bit of positives.
    let ascending = if bits >> 31 == 1 {
        !bits
    } else {
        bits | 1 << 31
    };
    (u64::from(!ascending) << 32) | u64::from(id)
}

/// The token id inside a [`rank_key`].
pub(crate) fn key_id(key: u64) -> usize {
    key as u32 as usize
}

/// `e^x` for `x <= 0`, to a relative error below 1e-10, from `+` and `*` only: `x = (n + f / ln 2) ln 2`
/// with integer `n` and `|f| <= ln(2) / 2`, `e^f` by its Taylor series to degree 9 (remainder below
/// 0.35^10 / 10! * e^0.35 < 1e-11), times `2^n` built from its bits. Arguments below -708 (-inf included)
/// give e^-708 ≈ 3e-308, which stands for 0 in every sum and weight here.
///
/// No branches and no float-to-integer conversions, so that the loops calling it vectorise: about 2.5
/// times faster than calling `libm::exp`.
pub(crate) fn exp_nonpositive(x: f64) -> f64 {
    /// Adding 1.5 * 2^52 rounds to an integer (IEEE's default rounding, to nearest) and leaves it, in two's
    /// complement, in the low bits of the sum.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    let x = if x < -708.0 { -708.0 } else { x };
    let t = x * LOG2_E;
    let shifted = t + ROUND;
    let n = shifted - ROUND;
    let f = (t - n) * LN_2;
    let mut p = 1.0 / 362_880.0;
    for c in [
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * f + c;
    }
    // n is in [-1022, 0]: its low 32 bits, sign-extended, are n itself.
    let n = i64::from(shifted.to_bits() as u32 as i32);
    p * f64::from_bits(((n + 1023) as u64) << 52)
}

/// The integer nearest to `w`, for `0 <= w <= 2^52`: adding 2^52 puts it in the low bits of the sum. A
/// float-to-integer cast would block vectorisation.
fn to_fixed_point(w: f64) -> u64 {
    const TWO_52: f64 = 4_503_599_627_370_496.0;
    (w + TWO_52).to_bits() - TWO_52.to_bits()
}

/// Sets the logits of `banned` ids to -inf; ids beyond the vocabulary are ignored.
pub(crate) fn mask(logits: &mut [f32], banned: &[u32]) {
    for &id in banned {
        if let Some(l) = logits.get_mut(id as usize) {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// The position and value of the largest logit, the lower id on ties; errors on NaN or +inf, and when
/// every logit is -inf.
///
/// Written lane-wise over chunks of 8, without branches inside a chunk, so that the compiler turns both
/// passes (the maximum and the check, then the chunk holding the maximum) into vector instructions.
pub(crate) fn argmax(logits: &[f32], row: usize) -> Result<(usize, f32)> {
    const LANES: usize = 8;
    let larger = |a: f32, b: f32| if b > a { b } else { a };
    let mut maxes = [f32::NEG_INFINITY; LANES];
    let mut bad = [false; LANES];
    let chunks = logits.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for lane in 0..LANES {
            let value = chunk[lane];
            bad[lane] |= value.is_nan() | (value == f32::INFINITY);
            maxes[lane] = larger(maxes[lane], value);
        }
    }
    let mut max = maxes.into_iter().fold(f32::NEG_INFINITY, larger);
    let mut bad = bad.contains(&true);
    for &value in rest {
        bad |= value.is_nan() | (value == f32::INFINITY);
        max = larger(max, value);
    }
    if bad {
        if let Some(token) = logits
            .iter()
            .position(|v| v.is_nan() || *v == f32::INFINITY)
        {
            let value = logits[token];
            return Err(Error::InvalidLogit { row, token, value });
        }
    }
    if max == f32::NEG_INFINITY {
        return Err(Error::NoTokenAllowed { row });
    }
    let holds_max = |chunk: &[f32]| chunk.iter().fold(false, |found, &v| found | (v == max));
    let chunk = logits
        .chunks(LANES)
        .position(holds_max)
        .ok_or(Error::NoTokenAllowed { row })?;
    let token = logits[chunk * LANES..]
        .iter()
        .position(|&v| v == max)
        .ok_or(Error::NoTokenAllowed { row })?;
    Ok((chunk * LANES + token, max))
}

/// Rearranges `keys` so that its first `m` are the `m` smallest (the best ranked), for the smallest `m`
/// whose weight reaches `threshold`, and returns `m` and that weight; all of `keys` when their weight
/// falls short (which rounding of the threshold can cause).
///
/// A quickselect on mass: split the range at its median key, keep the half where the threshold is crossed.
/// Expected linear time, where sorting would be `n log n` (and the nucleus of a flat distribution holds
/// most of the vocabulary).
fn nucleus(keys: &mut [u64], weights: &[u64], threshold: u64) -> (usize, u64) {
    let weight = |key: &u64| weights[key_id(*key)];
    // Invariants: keys[..lo] are the lo smallest and weigh `above` < threshold; keys[..hi] weigh at least
    // the threshold (or hi is the end).
    let (mut lo, mut hi) = (0, keys.len());
    let mut above: u64 = 0;
    while hi - lo > 16 {
        let mid = lo + (hi - lo) / 2;
        keys[lo..hi].select_nth_unstable(mid - lo);
        let upper: u64 = keys[lo..mid].iter().map(weight).sum();
        if above + upper >= threshold {
            hi = mid;
            continue;
        }
        above += upper + weight(&keys[mid]);
        if above >= threshold {
            return (mid + 1, above);
        }
        lo = mid + 1;
    }
    keys[lo..hi].sort_unstable();
    for (pos, key) in keys.iter().enumerate().take(hi).skip(lo) {
        above += weight(key);
        if above >= threshold {
            return (pos + 1, above);
        }
    }
    (hi, above)
}

/// The first of `ids` where their running weight exceeds `u` times `total` (their total weight); `None`
/// only when all weigh 0, which the callers rule out (the most likely token weighs `fixed_point_one`).
fn draw(ids: impl Iterator<Item = u32>, weights: &[u64], total: u64, u: f64) -> Option<u32> {
    let target = ((u * total as f64) as u64).min(total.checked_sub(1)?);
    let mut cumulative: u64 = 0;
    for id in ids {
        cumulative += weights[id as usize];
        if cumulative > target {
            return Some(id);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::row_rng;
    use crate::Sampler;

    fn sample(temperature: f64, top_k: Option<usize>, top_p: Option<f64>) -> Sampling {
        Sampling::Sample {
            temperature,
            top_k,
            top_p,
        }
    }

    /// The distinct tokens drawn in `draws` tries.
    fn sample_set(sampling: Sampling, logits: &[f32], draws: usize) -> Vec<u32> {
        let mut sampler = Sampler::new(sampling, 7, &[]).expect("valid sampling");
        let mut seen: Vec<u32> = (0..draws)
            .map(|_| sampler.sample(logits).expect("valid logits"))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        seen
    }

    #[test]
    fn exp_matches_std_to_1e_10() {
        for i in 0..=189_000 {
            let x = -(i as f64) * 0.0037;
            let (ours, std) = (exp_nonpositive(x), x.exp());
            assert!(
                ((ours - std) / std).abs() < 1e-10,
                "exp({x}) = {ours}, std {std}"
            );
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        for x in [-708.0, -800.0, f64::NEG_INFINITY] {
            assert!(exp_nonpositive(x) < 1e-307);
            assert_eq!(to_fixed_point(exp_nonpositive(x) * fixed_point_one(1)), 0);
        }
    }

    #[test]
    fn to_fixed_point_rounds_to_the_nearest_integer() {
        let two_52 = (1u64 << 52) as f64;
        for (w, expected) in [
            (0.0, 0),
            (0.49, 0),
            (0.51, 1),
            (7.0, 7),
            (1e6 + 0.4, 1_000_000),
        ] {
            assert_eq!(to_fixed_point(w), expected, "{w}");
        }
        assert_eq!(to_fixed_point(two_52), 1 << 52);
        assert_eq!(to_fixed_point(two_52 - 1.0), (1 << 52) - 1);
    }

    #[test]
    fn fixed_point_weights_cannot_overflow() {
        assert_eq!(fixed_point_one(1), (1u64 << 52) as f64);
        assert_eq!(fixed_point_one(2048), (1u64 << 51) as f64);
        assert_eq!(fixed_point_one(10_000), (1u64 << 49) as f64);
        for vocab in [1usize, 2047, 2048, 10_000, 1 << 20, u32::MAX as usize] {
            assert!(
                vocab as f64 * fixed_point_one(vocab) < 2f64.powi(63),
                "vocab {vocab}"
            );
        }
    }

    #[test]
    fn rank_keys_order_by_logit_then_id() {
        let logits = [
            0.5f32,
            -3.0,
            0.5,
            f32::MAX,
            -0.0,
            0.0,
            -f32::MAX,
            1e-30,
            -1e-30,
        ];
        let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
        ids.sort_by_key(|&id| rank_key(logits[id as usize], id));
        assert_eq!(ids, [3, 0, 2, 7, 4, 5, 8, 1, 6]);
        assert!(ids
            .iter()
            .all(|&id| key_id(rank_key(logits[id as usize], id)) == id as usize));
    }

    #[test]
    fn argmax_finds_the_first_maximum_in_any_lane() {
        for len in [1usize, 7, 8, 9, 16, 17, 100] {
            for at in 0..len {
                let mut logits: Vec<f32> = (0..len).map(|i| -(i as f32)).collect();
                logits[at] = 5.0;
                assert_eq!(argmax(&logits, 0).unwrap(), (at, 5.0));
                if at + 1 < len {
                    logits[len - 1] = 5.0;
                    assert_eq!(argmax(&logits, 0).unwrap(), (at, 5.0));
                }
                logits[at] = f32::NAN;
                assert!(
                    matches!(argmax(&logits, 3), Err(Error::InvalidLogit { row: 3, token, .. }) if token == at)
                );
            }
        }
        assert!(matches!(
            argmax(&[f32::NEG_INFINITY; 9], 1),
            Err(Error::NoTokenAllowed { row: 1 })
        ));
    }

    #[test]
    fn greedy_breaks_ties_towards_the_lower_id() {
        let mut rng = row_rng(0, 0);
        let mut picker = Picker::new(Sampling::Greedy, &[]).unwrap();
        assert_eq!(
            picker.pick(&mut [0.0, 3.0, 1.0, 3.0], 0, &mut rng).unwrap(),
            1
        );
        // -0.0 and 0.0 are equal logits, so the lower id wins whichever sign it has.
        assert_eq!(picker.pick(&mut [-1.0, -0.0, 0.0], 0, &mut rng).unwrap(), 1);
    }

    #[test]
    fn top_k_keeps_the_k_highest_logits_ties_to_the_lower_id() {
        let logits = [1.0, 5.0, 3.0, 5.0, 3.0, -2.0];
        assert_eq!(sample_set(sample(1.0, Some(2), None), &logits, 500), [1, 3]);
        assert_eq!(
            sample_set(sample(1.0, Some(3), None), &logits, 500),
            [1, 2, 3]
        );
        assert_eq!(
            sample_set(sample(20.0, Some(100), None), &logits, 2000),
            [0, 1, 2, 3, 4, 5]
        );
        // Top-k 1 with -0.0 and 0.0 tied for the maximum takes the lower id, as greedy does.
        assert_eq!(
            sample_set(sample(1.0, Some(1), None), &[-1.0, 0.0, -0.0], 50),
            [1]
        );
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_the_mass() {
        // Equal logits give exactly equal weights, so the mass of n tokens is exactly n/4.
        let logits = [0.0f32; 4];
        assert_eq!(sample_set(sample(1.0, None, Some(0.25)), &logits, 500), [0]);
        assert_eq!(
            sample_set(sample(1.0, None, Some(0.5)), &logits, 500),
            [0, 1]
        );
        assert_eq!(
            sample_set(sample(1.0, None, Some(0.500_001)), &logits, 500),
            [0, 1, 2]
        );
        assert_eq!(
            sample_set(sample(1.0, None, Some(1.0)), &logits, 500),
            [0, 1, 2, 3]
        );
        // Probabilities about 0.5, 0.25, 0.125, 0.125 (logits are log-probabilities).
        let logits = [0.5f32.ln(), 0.25f32.ln(), 0.125f32.ln(), 0.125f32.ln()];
        assert_eq!(sample_set(sample(1.0, None, Some(0.49)), &logits, 500), [0]);
        assert_eq!(
            sample_set(sample(1.0, None, Some(0.51)), &logits, 500),
            [0, 1]
        );
        assert_eq!(
            sample_set(sample(1.0, None, Some(0.76)), &logits, 500),
            [0, 1, 2]
        );
        // A tiny p still keeps one token.
        assert_eq!(sample_set(sample(1.0, None, Some(1e-9)), &logits, 100), [0]);
    }

    #[test]
    fn top_p_applies_to_the_top_k_renormalised_distribution() {
        // After top-k 2 the probabilities are 2/3 and 1/3, so p = 0.6 keeps only the first.
        let logits = [0.5f32.ln(), 0.25f32.ln(), 0.125f32.ln(), 0.125f32.ln()];
        assert_eq!(
            sample_set(sample(1.0, Some(2), Some(0.6)), &logits, 500),
            [0]
        );
        assert_eq!(
            sample_set(sample(1.0, Some(2), Some(0.7)), &logits, 500),
            [0, 1]
        );
    }

    #[test]
    fn a_large_nucleus_is_found_by_selection() {
        // 300 equal logits: p = 0.5 needs exactly 150 of them, the lowest ids; the draw walks the vocabulary.
        let logits = vec![0.0f32; 300];
        let seen = sample_set(sample(1.0, None, Some(0.5)), &logits, 5000);
        assert_eq!(seen, (0..150).collect::<Vec<u32>>());
    }

    #[test]
    fn banned_and_masked_tokens_are_never_drawn() {
        let logits = [9.0, 0.0, f32::NEG_INFINITY, 0.5];
        for sampling in [sample(5.0, None, None), sample(5.0, Some(3), Some(0.99))] {
            let mut sampler = Sampler::new(sampling, 1, &[0, 99]).unwrap();
            for _ in 0..1000 {
                let token = sampler.sample(&logits).unwrap();
                assert!(token == 1 || token == 3, "drew {token}");
            }
        }
    }

    #[test]
    fn bad_logits_and_empty_rows_are_errors() {
        let mut sampler = Sampler::new(Sampling::temperature(1.0), 0, &[1]).unwrap();
        assert!(matches!(
            sampler.sample(&[0.0, 1.0, f32::NAN]),
            Err(Error::InvalidLogit {
                row: 0,
                token: 2,
                ..
            })
        ));
        assert!(matches!(
            sampler.sample(&[f32::INFINITY, 0.0]),
            Err(Error::InvalidLogit { token: 0, .. })
        ));
        // NaN in a banned position is masked before it is looked at.
        assert_eq!(sampler.sample(&[0.0, f32::NAN]).unwrap(), 0);
        assert!(matches!(
            sampler.sample(&[f32::NEG_INFINITY, 2.0]),
            Err(Error::NoTokenAllowed { row: 0 })
        ));
        assert!(matches!(
            sampler.sample(&[]),
            Err(Error::NoTokenAllowed { row: 0 })
        ));
    }

    #[test]
    fn uniform_stays_in_the_unit_interval_and_streams_differ() {
        let mut a = row_rng(3, 0);
        let mut b = row_rng(3, 1);
        let xs: Vec<f64> = (0..1000).map(|_| uniform(&mut a)).collect();
        let ys: Vec<f64> = (0..1000).map(|_| uniform(&mut b)).collect();
        assert!(xs.iter().all(|&x| (0.0..1.0).contains(&x)));
        assert_ne!(xs, ys);
        let mut again = row_rng(3, 0);
        assert_eq!(
            xs,
            (0..1000).map(|_| uniform(&mut again)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn draw_walks_the_cumulative_weight() {
        let weights = [0, 1, 0, 3, 0];
        let draw_at = |u| draw(0..5, &weights, 4, u);
        assert_eq!(draw_at(0.0), Some(1));
        assert_eq!(draw_at(0.2499), Some(1));
        assert_eq!(draw_at(0.25), Some(3));
        assert_eq!(draw_at(0.999_999_999), Some(3));
        // Walked in the order given: 3 covers [0, 3) of the 4 units, then 1 covers [3, 4).
        assert_eq!(draw([3, 1].into_iter(), &weights, 4, 0.5), Some(3));
        assert_eq!(draw([3, 1].into_iter(), &weights, 4, 0.8), Some(1));
        assert_eq!(draw(0..2, &[0, 0], 0, 0.5), None);
    }

    #[test]
    fn bucketed_top_p_draws_what_ranking_every_candidate_draws() {
        // Top-p alone cuts the nucleus through buckets; with top-k it ranks its candidates directly. Over
        // 1000 tokens (in tied pairs), top-k 999 only drops token 999, of weight 0: both must keep the
        // same tokens and draw the same ones from the same random numbers.
        let mut logits: Vec<f32> = (0..1000)
            .map(|i| -((i * 37 % 500) as f32) / 100.0)
            .collect();
        logits[999] = -1000.0;
        for (temperature, p) in [
            (1.0, 1e-9),
            (1.0, 0.1),
            (0.7, 0.5),
            (2.0, 0.9),
            (1.0, 0.999),
        ] {
            let mut bucketed = Sampler::new(sample(temperature, None, Some(p)), 5, &[]).unwrap();
            let mut ranked = Sampler::new(sample(temperature, Some(999), Some(p)), 5, &[]).unwrap();
            for _ in 0..2000 {
                assert_eq!(
                    bucketed.sample(&logits).unwrap(),
                    ranked.sample(&logits).unwrap(),
                    "p {p}"
                );
            }
        }
    }

    #[test]
    fn buckets_follow_the_rank() {
        let scale = Scale {
            max: 2.0,
            inv_temperature: 1.0 / 0.7,
            one: fixed_point_one(10),
        };
        let logits = [2.0f32, 1.99, 1.9, 0.0, -20.0, -1e30, f32::NEG_INFINITY];
        let buckets: Vec<u16> = logits.iter().map(|&l| scale.bucket(l)).collect();
        assert_eq!(buckets[0], 0);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
        assert_eq!(buckets[5..], [BUCKETS as u16 - 1; 2]);
    }

    #[test]
    fn nucleus_finds_the_smallest_prefix_reaching_the_threshold() {
        // Ids 0..100 weigh 1..=100 and rank by weight: the best are the highest ids.
        let weights: Vec<u64> = (1..=100).collect();
        let key = |id: u32| rank_key(weights[id as usize] as f32, id);
        for threshold in [1u64, 100, 101, 199, 2000, 5050] {
            let mut keys: Vec<u64> = (0..100).map(key).collect();
            let (m, mass) = nucleus(&mut keys, &weights, threshold);
            // The m best weigh 100 + 99 + ... + (101 - m).
            let best = |m: u64| (0..m).map(|i| 100 - i).sum::<u64>();
            let expected = (1..=100).find(|&m| best(m) >= threshold).unwrap();
            assert_eq!(m as u64, expected, "threshold {threshold}");
            assert_eq!(mass, best(expected));
            let mut kept: Vec<usize> = keys[..m].iter().map(|&k| key_id(k)).collect();
            kept.sort_unstable();
            assert_eq!(kept, (100 - m..100).collect::<Vec<usize>>());
        }
    }
}
