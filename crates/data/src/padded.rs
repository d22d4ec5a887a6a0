//! Padded batches of whole sequences with their lengths, bucketed by length: what a classifier trains on.

use candle_core::{Device, Tensor};
use seqlab_base::SplitMix64;

use crate::error::{Error, Result};

/// How many batches' worth of examples are sorted by length together. Within such a pool the batches hold
/// sequences of similar lengths (little padding); across pools the order stays random, so batches still
/// mix the classes. 50: a pool of 1,600 rows at batch 32, as torchtext's `BucketIterator` does it.
pub const BUCKET_POOL: usize = 50;

/// One batch of sequences padded to the longest, with their lengths and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddedBatch {
    /// Token ids, `batch * seq_len`, row after row; each row holds its sequence then `pad` ids.
    pub ids: Vec<u32>,
    /// The length of each row, each in `1..=seq_len`.
    pub lengths: Vec<usize>,
    /// The label of each row.
    pub labels: Vec<u32>,
    /// The index of each row's sequence in the data the batch was cut from.
    pub indices: Vec<usize>,
    /// Rows.
    pub batch: usize,
    /// Steps of each row: the longest length.
    pub seq_len: usize,
}

impl PaddedBatch {
    /// Gathers the sequences `indices` of `sequences` (with their `labels`) into one batch padded with
    /// `pad` to the longest.
    ///
    /// Errors: [`Error::EmptySequence`] when a chosen sequence has no tokens, [`Error::InvalidLayout`] for no
    /// rows.
    pub fn gather(
        sequences: &[Vec<u32>],
        labels: &[u32],
        indices: &[usize],
        pad: u32,
    ) -> Result<PaddedBatch> {
        let seq_len = indices
            .iter()
            .map(|&i| sequences[i].len())
            .max()
            .unwrap_or(0);
        if indices.is_empty() {
            return Err(Error::InvalidLayout { batch: 0, seq_len });
        }
        let mut ids = Vec::with_capacity(indices.len() * seq_len);
        let mut lengths = Vec::with_capacity(indices.len());
        for &i in indices {
            let sequence = &sequences[i];
            if sequence.is_empty() {
                return Err(Error::EmptySequence { index: i });
            }
            ids.extend_from_slice(sequence);
            ids.extend(std::iter::repeat_n(pad, seq_len - sequence.len()));
            lengths.push(sequence.len());
        }
        Ok(PaddedBatch {
            ids,
            lengths,
            labels: indices
                .iter()
                .map(|&i| labels.get(i).copied().unwrap_or(0))
                .collect(),
            indices: indices.to_vec(),
            batch: indices.len(),
            seq_len,
        })
    }

    /// The ids as a u32 tensor (batch, seq_len) and the labels as a u32 tensor (batch,).
    pub fn tensors(&self, device: &Device) -> Result<(Tensor, Tensor)> {
        Ok((
            Tensor::from_slice(&self.ids, (self.batch, self.seq_len), device)?,
            Tensor::from_slice(&self.labels, self.batch, device)?,
        ))
    }
}

/// The batches of one training epoch, as lists of indices into the data: a pure function of the lengths,
/// the batch size, the seed and the epoch.
///
/// The examples are shuffled (from `seed` and `epoch`), cut into pools of [`BUCKET_POOL`] batches, each pool
/// sorted by length (ties in shuffled order) and cut into batches of `batch` rows, and the batches are
/// shuffled again. Every example is in exactly one batch; only the last batch may be smaller.
pub fn bucket_batches(
    lengths: &[usize],
    batch: usize,
    seed: u64,
    epoch: usize,
) -> Result<Vec<Vec<usize>>> {
    if batch == 0 {
        return Err(Error::InvalidLayout {
            batch,
            seq_len: lengths.iter().copied().max().unwrap_or(0),
        });
    }
    let mut rng = order_stream(seed ^ 0x6261_7463_6865_7321, epoch as u64);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    shuffle(&mut rng, &mut order);
    let mut batches = Vec::with_capacity(lengths.len().div_ceil(batch));
    for pool in order.chunks(batch * BUCKET_POOL) {
        let mut pool = pool.to_vec();
        pool.sort_by_key(|&i| lengths[i]); // stable: equal lengths keep their shuffled order
        batches.extend(pool.chunks(batch).map(<[usize]>::to_vec));
    }
    shuffle(&mut rng, &mut batches);
    Ok(batches)
}

/// Batches for evaluation: the examples sorted by length (longest first, ties by index) and cut into batches
/// of `batch` rows, so padding is minimal. The order of the results does not matter to a metric, and every
/// example is in exactly one batch.
pub fn sorted_batches(lengths: &[usize], batch: usize) -> Result<Vec<Vec<usize>>> {
    if batch == 0 {
        return Err(Error::InvalidLayout {
            batch,
            seq_len: lengths.iter().copied().max().unwrap_or(0),
        });
    }
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(lengths[i]), i));
    Ok(order.chunks(batch).map(<[usize]>::to_vec).collect())
}

/// The seeded stream of a batch order: SplitMix64 from the seed and a stream (the epoch), its first draw
/// skipped.
fn order_stream(seed: u64, stream: u64) -> SplitMix64 {
    let mut rng = SplitMix64::new(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
    rng.next_u64();
    rng
}

/// A uniform draw in `0..n` (n > 0), by Lemire's multiply-shift (the bias is below 2⁻³² for n < 2³²).
fn below(rng: &mut SplitMix64, n: usize) -> usize {
    (((rng.next_u64() >> 32) * n as u64) >> 32) as usize
}

/// Fisher-Yates.
fn shuffle<T>(rng: &mut SplitMix64, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i + 1);
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lengths() -> Vec<usize> {
        (0..1000).map(|i| 1 + (i * 7919) % 97).collect()
    }

    #[test]
    fn bucketed_batches_cover_every_example_once_and_are_seeded() {
        let lengths = lengths();
        let a = bucket_batches(&lengths, 8, 3, 0).unwrap();
        let mut all: Vec<usize> = a.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(a.len(), 125);
        assert_eq!(a, bucket_batches(&lengths, 8, 3, 0).unwrap());
        assert_ne!(a, bucket_batches(&lengths, 8, 3, 1).unwrap());
        assert_ne!(a, bucket_batches(&lengths, 8, 4, 0).unwrap());
    }

    #[test]
    fn bucketing_keeps_padding_small() {
        let lengths = lengths();
        let padded = |batches: &[Vec<usize>]| -> usize {
            batches
                .iter()
                .map(|b| {
                    let max = b.iter().map(|&i| lengths[i]).max().unwrap();
                    b.iter().map(|&i| max - lengths[i]).sum::<usize>()
                })
                .sum()
        };
        let bucketed = padded(&bucket_batches(&lengths, 8, 3, 0).unwrap());
        let plain: Vec<Vec<usize>> = (0..1000)
            .collect::<Vec<_>>()
            .chunks(8)
            .map(<[usize]>::to_vec)
            .collect();
        assert!(
            bucketed * 10 < padded(&plain),
            "{bucketed} vs {}",
            padded(&plain)
        );
    }

    #[test]
    fn a_padded_batch_holds_lengths_and_pads() {
        let sequences = vec![vec![5, 6, 7], vec![8], vec![9, 10]];
        let batch = PaddedBatch::gather(&sequences, &[1, 0, 2], &[2, 0, 1], 0).unwrap();
        assert_eq!(batch.ids, [9, 10, 0, 5, 6, 7, 8, 0, 0]);
        assert_eq!(batch.lengths, [2, 3, 1]);
        assert_eq!(batch.labels, [2, 1, 0]);
        assert_eq!((batch.batch, batch.seq_len), (3, 3));
        let (ids, labels) = batch.tensors(&Device::Cpu).unwrap();
        assert_eq!(ids.dims(), [3, 3]);
        assert_eq!(labels.dims(), [3]);
        let empty = vec![vec![1], vec![]];
        assert!(matches!(
            PaddedBatch::gather(&empty, &[0, 0], &[0, 1], 0),
            Err(Error::EmptySequence { index: 1 })
        ));
    }

    #[test]
    fn sorted_batches_go_longest_first() {
        let batches = sorted_batches(&[2, 5, 1, 5], 3).unwrap();
        assert_eq!(batches, [vec![1, 3, 0], vec![2]]);
        assert!(sorted_batches(&[1], 0).is_err());
    }
}
