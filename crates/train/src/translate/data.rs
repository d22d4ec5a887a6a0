//! Sentence pairs as token ids, and padded batches of them.

use candle_core::{Device, Tensor};
use seqlab_data::Pair;
use seqlab_tokenize::{Framing, Tokenizer};

use crate::error::{Error, Result};

/// Sentence pairs encoded with the source and target tokenizers (no special tokens added).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodedPairs {
    /// Source token ids of each pair, each non-empty.
    pub sources: Vec<Vec<u32>>,
    /// Target token ids of each pair, each non-empty.
    pub targets: Vec<Vec<u32>>,
    /// The file line of each pair.
    pub lines: Vec<usize>,
    /// The index of each pair in the slice it was encoded from.
    pub indices: Vec<usize>,
    /// Pairs left out because a side had more tokens than allowed (`strict` false).
    pub too_long: usize,
    /// Pairs left out because a side encoded to no token at all.
    pub empty: usize,
}

impl EncodedPairs {
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Target tokens the loss is taken over: each target plus its `<eos>`.
    pub fn target_tokens(&self) -> usize {
        self.targets.iter().map(|t| t.len() + 1).sum()
    }
}

/// Encodes `pairs`. A side longer than `max_source` / `max_target` tokens leaves the pair out (counted in
/// [`EncodedPairs::too_long`]), or, when `strict`, is an error naming `file` and the line.
pub fn encode_pairs(
    pairs: &[Pair],
    source: &Tokenizer,
    target: &Tokenizer,
    max_source: usize,
    max_target: usize,
    strict: Option<&str>,
) -> Result<EncodedPairs> {
    let mut encoded = EncodedPairs::default();
    for (index, pair) in pairs.iter().enumerate() {
        let src = source.encode(&pair.source)?;
        let tgt = target.encode(&pair.target)?;
        if src.is_empty() || tgt.is_empty() {
            encoded.empty += 1;
            continue;
        }
        if src.len() > max_source || tgt.len() > max_target {
            if let Some(file) = strict {
                let (side, len, max) = if src.len() > max_source {
                    ("source", src.len(), max_source)
                } else {
                    ("target", tgt.len(), max_target)
                };
                return Err(Error::InvalidSetting(format!(
                    "{file}, line {}: the {side} has {len} tokens, more than the {max} this model reads \
                     (max_{side}_tokens in its config.json)",
                    pair.line
                )));
            }
            encoded.too_long += 1;
            continue;
        }
        encoded.sources.push(src);
        encoded.targets.push(tgt);
        encoded.lines.push(pair.line);
        encoded.indices.push(index);
    }
    Ok(encoded)
}

/// A padded batch of pairs: what one training or validation step reads.
#[derive(Debug)]
pub(crate) struct PairBatch {
    /// Source ids (batch, src_len), padded with `<pad>`.
    pub src: Tensor,
    /// Source lengths.
    pub lengths: Vec<usize>,
    /// Decoder inputs (batch, tgt_len): `<bos>` then the target, padded.
    pub tgt_in: Tensor,
    /// Decoder targets (batch, tgt_len): the target then `<eos>`, padded with `<pad>` (ignored by the loss).
    pub tgt_out: Tensor,
    /// Target tokens predicted (the `<eos>` included).
    pub tokens: usize,
}

/// Pads the pairs `indices` of `pairs` into one batch.
pub(crate) fn gather(
    pairs: &EncodedPairs,
    indices: &[usize],
    specials: Framing,
    device: &Device,
) -> Result<PairBatch> {
    let batch = indices.len();
    let src_len = indices
        .iter()
        .map(|&i| pairs.sources[i].len())
        .max()
        .unwrap_or(1);
    let tgt_len = 1 + indices
        .iter()
        .map(|&i| pairs.targets[i].len())
        .max()
        .unwrap_or(0);
    let mut src = Vec::with_capacity(batch * src_len);
    let mut tgt_in = Vec::with_capacity(batch * tgt_len);
    let mut tgt_out = Vec::with_capacity(batch * tgt_len);
    let mut lengths = Vec::with_capacity(batch);
    let mut tokens = 0;
    for &i in indices {
        let (s, t) = (&pairs.sources[i], &pairs.targets[i]);
        src.extend_from_slice(s);
        src.extend(std::iter::repeat_n(specials.pad, src_len - s.len()));
        lengths.push(s.len());
        tgt_in.push(specials.bos);
        tgt_in.extend_from_slice(t);
        tgt_in.extend(std::iter::repeat_n(specials.pad, tgt_len - 1 - t.len()));
        tgt_out.extend_from_slice(t);
        tgt_out.push(specials.eos);
        tgt_out.extend(std::iter::repeat_n(specials.pad, tgt_len - 1 - t.len()));
        tokens += t.len() + 1;
    }
    Ok(PairBatch {
        src: Tensor::from_vec(src, (batch, src_len), device)?,
        lengths,
        tgt_in: Tensor::from_vec(tgt_in, (batch, tgt_len), device)?,
        tgt_out: Tensor::from_vec(tgt_out, (batch, tgt_len), device)?,
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_shifts_the_target_and_pads_both_sides() {
        let pairs = EncodedPairs {
            sources: vec![vec![5, 6, 7], vec![8]],
            targets: vec![vec![9], vec![10, 11]],
            lines: vec![1, 2],
            ..Default::default()
        };
        let specials = Framing {
            pad: 0,
            bos: 2,
            eos: 3,
        };
        let b = gather(&pairs, &[0, 1], specials, &Device::Cpu).unwrap();
        assert_eq!(b.src.to_vec2::<u32>().unwrap(), [[5, 6, 7], [8, 0, 0]]);
        assert_eq!(b.lengths, [3, 1]);
        assert_eq!(b.tgt_in.to_vec2::<u32>().unwrap(), [[2, 9, 0], [2, 10, 11]]);
        assert_eq!(
            b.tgt_out.to_vec2::<u32>().unwrap(),
            [[9, 3, 0], [10, 11, 3]]
        );
        assert_eq!(b.tokens, 5);
    }
}
