//! [`Mode`]: how a forward pass runs, for every model.

use seqlab_cells::LayerDropout;

/// How a model's forward pass runs: evaluation, or training with dropout masks drawn from a seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No dropout.
    Eval,
    /// Dropout on, its masks drawn from `seed`: the same seed gives the same masks, so a training step is
    /// reproducible (a trainer passes a seed derived from its own seed and the step).
    Train {
        /// Seed of this forward pass's dropout masks.
        seed: u64,
    },
}

impl Mode {
    /// The dropout between a recurrent stack's layers in this mode: in training, masks from the pass's seed
    /// mixed with `stream`, one constant per stack of a model, so that no two stacks share masks.
    pub(crate) fn layers(self, stream: u64) -> LayerDropout {
        match self {
            Mode::Eval => LayerDropout::Off,
            Mode::Train { seed } => LayerDropout::Seeded(seed ^ stream),
        }
    }
}
