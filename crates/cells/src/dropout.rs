//! Dropout with masks drawn from a seed: the same seed gives the same mask, so a training step, and a run
//! resumed from a checkpoint, is reproducible (candle-nn's dropout draws from an unseedable generator).

use candle_core::{Result, Tensor};
use seqlab_base::SplitMix64;

/// Dropout between the layers of a stack, for [`crate::Recurrent`]'s forward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerDropout {
    /// No dropout (evaluation).
    Off,
    /// The config's dropout, each layer's mask drawn by [`dropout`] from this seed and the layer: what a
    /// trainer passes, with a seed derived from its own and the step.
    Seeded(u64),
    /// The config's dropout with candle-nn's unseeded masks (`true` as a bool): not reproducible.
    Unseeded,
}

impl From<bool> for LayerDropout {
    /// `true`: [`LayerDropout::Unseeded`]; `false`: [`LayerDropout::Off`].
    fn from(train: bool) -> Self {
        if train {
            LayerDropout::Unseeded
        } else {
            LayerDropout::Off
        }
    }
}

/// Mixed into the seed for the mask between layer `l - 1` and layer `l` (times `l`), so that no layer's
/// mask repeats another's or a model's own dropout drawn from the same seed.
const LAYER_STREAM: u64 = 0x94D0_49BB_1331_11EB;

impl LayerDropout {
    /// The input of layer `layer` (≥ 1) with this dropout at rate `p` applied.
    pub(crate) fn apply(self, xs: &Tensor, p: f32, layer: usize) -> Result<Tensor> {
        match self {
            _ if p <= 0.0 => Ok(xs.clone()),
            LayerDropout::Off => Ok(xs.clone()),
            LayerDropout::Seeded(seed) => {
                dropout(xs, p, seed ^ LAYER_STREAM.wrapping_mul(layer as u64))
            }
            LayerDropout::Unseeded => candle_nn::ops::dropout(xs, p),
        }
    }
}

/// Inverted dropout with a mask drawn from `seed`: each element is zeroed with probability `p`, the others
/// scaled by 1 / (1 - p). The mask is a SplitMix64 stream from `seed`, two 32-bit draws per number; an
/// element survives when its draw is at or above p·2³².
pub fn dropout(xs: &Tensor, p: f32, seed: u64) -> Result<Tensor> {
    let n = xs.elem_count();
    let scale = 1.0 / (1.0 - p);
    let threshold = (p as f64 * 4_294_967_296.0) as u64;
    let mut mask = Vec::with_capacity(n + 1);
    let mut rng = SplitMix64::new(seed);
    while mask.len() < n {
        let z = rng.next_u64();
        for draw in [z & 0xFFFF_FFFF, z >> 32] {
            mask.push(if draw >= threshold { scale } else { 0.0 });
        }
    }
    mask.truncate(n);
    let mask = Tensor::from_vec(mask, xs.shape(), xs.device())?;
    xs.mul(&mask)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    fn values(t: Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn dropout_masks_are_reproducible_and_scaled() {
        let xs = Tensor::ones((4, 50, 8), DType::F32, &Device::Cpu).unwrap();
        let a = values(dropout(&xs, 0.25, 9).unwrap());
        assert_eq!(a, values(dropout(&xs, 0.25, 9).unwrap()));
        assert_ne!(a, values(dropout(&xs, 0.25, 10).unwrap()));
        let zeros = a.iter().filter(|&&v| v == 0.0).count() as f64 / a.len() as f64;
        assert!((zeros - 0.25).abs() < 0.05, "{zeros}");
        assert!(a.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    }

    #[test]
    fn layers_draw_masks_of_their_own() {
        let xs = Tensor::ones((3, 40), DType::F32, &Device::Cpu).unwrap();
        let seeded = LayerDropout::Seeded(4);
        let one = values(seeded.apply(&xs, 0.5, 1).unwrap());
        assert_eq!(one, values(seeded.apply(&xs, 0.5, 1).unwrap()));
        assert_ne!(one, values(seeded.apply(&xs, 0.5, 2).unwrap()));
        assert_ne!(one, values(dropout(&xs, 0.5, 4).unwrap()));
        assert_eq!(
            values(LayerDropout::Off.apply(&xs, 0.5, 1).unwrap()),
            values(xs.clone())
        );
        assert_eq!(values(seeded.apply(&xs, 0.0, 1).unwrap()), values(xs));
    }
}
