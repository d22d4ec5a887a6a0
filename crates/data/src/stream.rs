//! Contiguous batches for stateful truncated backpropagation through time.

use candle_core::{Device, Tensor};
use seqlab_base::SplitMix64;

use crate::error::{Error, Result};

/// A token stream laid out as `batch` parallel rows and cut into batches of `seq_len` steps, so that row `i`
/// of batch `k + 1` continues row `i` of batch `k`: the recurrent state a model ends batch `k` with is the
/// right initial state for batch `k + 1` (carried detached, which truncates backpropagation at the batch
/// boundary).
///
/// The layout, for a stream `ids`, a start token `s` and `B` rows: the stream from `offset` on is cut into
/// `B` rows of `L = ⌊len / B⌋` tokens (fewer than `B` tokens at the end are dropped). Every token of a row is
/// a target exactly once; the inputs are the row shifted right by one, beginning with `s`:
///
/// ```text
/// row i targets:  r[0]  r[1]  ...  r[L-1]
/// row i inputs:   s     r[0]  ...  r[L-2]
/// ```
///
/// so a row starts from the zero state and `<bos>`, exactly as generation does. Without a start token, a
/// row of `L + 1` tokens gives `L` inputs and the `L` targets after them. Batch `k` holds the columns
/// `[k·seq_len, (k+1)·seq_len)`; the last batch is shorter when `seq_len` does not divide `L`.
#[derive(Debug, Clone)]
pub struct StreamBatches {
    inputs: Vec<u32>,
    targets: Vec<u32>,
    batch: usize,
    row_len: usize,
    seq_len: usize,
}

/// One batch: inputs and targets, both (batch, seq_len) row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Input ids, `batch * seq_len`, row after row.
    pub inputs: Vec<u32>,
    /// Target ids (the next token of each input), same layout.
    pub targets: Vec<u32>,
    /// Rows.
    pub batch: usize,
    /// Steps of each row.
    pub seq_len: usize,
}

impl Batch {
    /// Inputs and targets as u32 tensors of shape (batch, seq_len).
    pub fn tensors(&self, device: &Device) -> Result<(Tensor, Tensor)> {
        let shape = (self.batch, self.seq_len);
        Ok((
            Tensor::from_slice(&self.inputs, shape, device)?,
            Tensor::from_slice(&self.targets, shape, device)?,
        ))
    }

    /// Targets in the batch: `batch * seq_len`.
    pub fn tokens(&self) -> usize {
        self.batch * self.seq_len
    }
}

impl StreamBatches {
    /// Lays out `ids[offset..]` as described on the type. `what` names the text in errors ("training text").
    ///
    /// Errors: [`Error::InvalidLayout`] for a zero batch or sequence length, [`Error::TooShort`] when a row
    /// would get no target.
    pub fn new(
        ids: &[u32],
        start: Option<u32>,
        batch: usize,
        seq_len: usize,
        offset: usize,
        what: &'static str,
    ) -> Result<StreamBatches> {
        if batch == 0 || seq_len == 0 {
            return Err(Error::InvalidLayout { batch, seq_len });
        }
        let stream = ids.get(offset..).unwrap_or_default();
        let needed = if start.is_some() { 1 } else { 2 };
        let row_len = match start {
            Some(_) => stream.len() / batch,
            None => stream.len().saturating_sub(1) / batch,
        };
        if row_len == 0 {
            return Err(Error::TooShort {
                what,
                tokens: ids.len(),
                batch,
                needed,
            });
        }
        let mut inputs = Vec::with_capacity(batch * row_len);
        let mut targets = Vec::with_capacity(batch * row_len);
        for row in 0..batch {
            match start {
                Some(start) => {
                    let r = &stream[row * row_len..(row + 1) * row_len];
                    inputs.push(start);
                    inputs.extend_from_slice(&r[..row_len - 1]);
                    targets.extend_from_slice(r);
                }
                None => {
                    let r = &stream[row * row_len..(row + 1) * row_len + 1];
                    inputs.extend_from_slice(&r[..row_len]);
                    targets.extend_from_slice(&r[1..]);
                }
            }
        }
        Ok(StreamBatches {
            inputs,
            targets,
            batch,
            row_len,
            seq_len,
        })
    }

    /// The layout of training epoch `epoch`: the stream from [`epoch_offset`]`(seed, epoch, seq_len)` on,
    /// cut to `len - (seq_len - 1)` tokens whatever the offset, so that every epoch has the same rows and
    /// the same number of batches.
    pub fn for_epoch(
        ids: &[u32],
        start: Option<u32>,
        batch: usize,
        seq_len: usize,
        seed: u64,
        epoch: usize,
        what: &'static str,
    ) -> Result<StreamBatches> {
        let offset = epoch_offset(seed, epoch, seq_len);
        let usable = ids.len().saturating_sub(seq_len.saturating_sub(1));
        let stream = ids.get(offset..offset + usable).unwrap_or_default();
        StreamBatches::new(stream, start, batch, seq_len, 0, what)
    }

    /// Batches in one pass over the stream: `⌈row_len / seq_len⌉`.
    pub fn len(&self) -> usize {
        self.row_len.div_ceil(self.seq_len)
    }

    /// Whether there is no batch (never, for a successfully built layout).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Targets of each row.
    pub fn row_len(&self) -> usize {
        self.row_len
    }

    /// Targets in one pass: `batch * row_len`.
    pub fn tokens(&self) -> usize {
        self.batch * self.row_len
    }

    /// Batch `k` (columns `[k·seq_len, (k+1)·seq_len)` of every row), `k < len()`.
    pub fn get(&self, k: usize) -> Option<Batch> {
        if k >= self.len() {
            return None;
        }
        let from = k * self.seq_len;
        let to = (from + self.seq_len).min(self.row_len);
        let cols = to - from;
        let mut inputs = Vec::with_capacity(self.batch * cols);
        let mut targets = Vec::with_capacity(self.batch * cols);
        for row in 0..self.batch {
            let at = row * self.row_len;
            inputs.extend_from_slice(&self.inputs[at + from..at + to]);
            targets.extend_from_slice(&self.targets[at + from..at + to]);
        }
        Some(Batch {
            inputs,
            targets,
            batch: self.batch,
            seq_len: cols,
        })
    }

    /// All batches in order.
    pub fn iter(&self) -> impl Iterator<Item = Batch> + '_ {
        (0..self.len()).filter_map(|k| self.get(k))
    }
}

/// Where epoch `epoch`'s stream starts: a pseudo-random offset in `[0, seq_len)` that depends only on `seed`
/// and `epoch`, so that batch boundaries fall elsewhere each epoch and a resumed run sees the same batches.
pub fn epoch_offset(seed: u64, epoch: usize, seq_len: usize) -> usize {
    if seq_len <= 1 {
        return 0;
    }
    (SplitMix64::at(seed ^ SplitMix64::at(epoch as u64 + 1, 1), 1) % seq_len as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_i_of_batch_k_plus_1_continues_row_i_of_batch_k() {
        let ids: Vec<u32> = (10..40).collect(); // 30 tokens
        let batches = StreamBatches::new(&ids, Some(2), 3, 4, 0, "text").unwrap();
        assert_eq!(batches.row_len(), 10);
        assert_eq!(batches.len(), 3); // 4 + 4 + 2 columns
        let all: Vec<Batch> = batches.iter().collect();
        assert_eq!(all[0].inputs[..4], [2, 10, 11, 12]);
        assert_eq!(all[0].targets[..4], [10, 11, 12, 13]);
        assert_eq!(all[1].inputs[..4], [13, 14, 15, 16]);
        assert_eq!(all[2].seq_len, 2);
        assert_eq!(all[2].targets[..2], [18, 19]);
        // Row 1 starts at token 20, with <bos> as its first input.
        assert_eq!(all[0].inputs[4..8], [2, 20, 21, 22]);
        // Every row: concatenating its columns over the batches gives its inputs and targets unbroken.
        for row in 0..3 {
            let targets: Vec<u32> = all
                .iter()
                .flat_map(|b| b.targets[row * b.seq_len..(row + 1) * b.seq_len].to_vec())
                .collect();
            let first = 10 + 10 * row as u32;
            assert_eq!(targets, (first..first + 10).collect::<Vec<_>>());
            let inputs: Vec<u32> = all
                .iter()
                .flat_map(|b| b.inputs[row * b.seq_len..(row + 1) * b.seq_len].to_vec())
                .collect();
            assert_eq!(inputs[1..], targets[..9]);
        }
        assert_eq!(batches.tokens(), 30);
    }

    #[test]
    fn without_a_start_token_inputs_are_the_stream_itself() {
        let ids: Vec<u32> = (0..11).collect();
        let batches = StreamBatches::new(&ids, None, 2, 5, 0, "text").unwrap();
        let b = batches.get(0).unwrap();
        assert_eq!(b.inputs, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(b.targets, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert!(batches.get(1).is_none());
    }

    #[test]
    fn an_offset_shifts_the_stream_and_tail_tokens_are_dropped() {
        let ids: Vec<u32> = (0..23).collect();
        let batches = StreamBatches::new(&ids, Some(99), 2, 100, 3, "text").unwrap();
        assert_eq!(batches.row_len(), 10);
        let b = batches.get(0).unwrap();
        assert_eq!(b.targets[0], 3);
        assert_eq!(b.targets[10], 13);
        assert_eq!(b.seq_len, 10);
    }

    #[test]
    fn too_little_text_is_an_error() {
        let error = StreamBatches::new(&[5, 6], Some(2), 3, 10, 0, "validation text").unwrap_err();
        assert!(
            matches!(
                error,
                Error::TooShort {
                    tokens: 2,
                    batch: 3,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("validation text"));
        assert!(matches!(
            StreamBatches::new(&[1, 2, 3], None, 0, 1, 0, "text"),
            Err(Error::InvalidLayout { .. })
        ));
    }

    #[test]
    fn every_epoch_has_the_same_number_of_batches() {
        let ids: Vec<u32> = (0..1003).collect();
        let counts: Vec<(usize, usize)> = (0..30)
            .map(|epoch| {
                let b = StreamBatches::for_epoch(&ids, Some(0), 4, 50, 5, epoch, "text").unwrap();
                (b.len(), b.row_len())
            })
            .collect();
        assert!(counts.iter().all(|&c| c == counts[0]), "{counts:?}");
        assert_eq!(counts[0].1, (1003 - 49) / 4);
        // The offsets do move the stream.
        let first = |epoch| {
            StreamBatches::for_epoch(&ids, Some(0), 4, 50, 5, epoch, "text")
                .unwrap()
                .get(0)
                .unwrap()
                .targets[0]
        };
        assert!((0..30).any(|e| first(e) != first(0)));
    }

    #[test]
    fn epoch_offsets_depend_only_on_seed_and_epoch() {
        let offsets: Vec<usize> = (0..20).map(|e| epoch_offset(7, e, 100)).collect();
        assert_eq!(
            offsets,
            (0..20).map(|e| epoch_offset(7, e, 100)).collect::<Vec<_>>()
        );
        assert!(offsets.iter().all(|&o| o < 100));
        assert!(offsets.windows(2).any(|w| w[0] != w[1]));
        assert_ne!(
            offsets,
            (0..20).map(|e| epoch_offset(8, e, 100)).collect::<Vec<_>>()
        );
        assert_eq!(epoch_offset(7, 3, 1), 0);
    }
}
