//! The crate's error type: every bad parameter and every malformed model output names the value at fault.

use candle_core::DType;

/// Everything that can go wrong while decoding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The sampling temperature is negative, NaN or infinite (0 is allowed and means greedy).
    #[error("temperature must be a finite number >= 0 (0 means greedy), got {0}")]
    InvalidTemperature(f64),

    /// `top_k` is 0, which would keep no token.
    #[error("top-k must be at least 1, got {0}")]
    InvalidTopK(usize),

    /// `top_p` lies outside (0, 1] or is NaN.
    #[error("top-p must lie in (0, 1], got {0}")]
    InvalidTopP(f64),

    /// The beam width is 0.
    #[error("beam width must be at least 1, got {0}")]
    InvalidBeamWidth(usize),

    /// The n-best list asks for no hypothesis, or for more than the beam keeps.
    #[error("n-best must be between 1 and the beam width {width}, got {n_best}")]
    InvalidNBest {
        /// The requested number of hypotheses.
        n_best: usize,
        /// The beam width it must not exceed.
        width: usize,
    },

    /// The length-penalty exponent is negative, NaN or infinite.
    #[error("length-penalty alpha must be a finite number >= 0, got {0}")]
    InvalidLengthPenalty(f64),

    /// A stop sequence is empty, so it would match before any token.
    #[error("stop sequence {index} is empty")]
    EmptyStopSequence {
        /// Its position in the configured list.
        index: usize,
    },

    /// The first tokens are not a non-empty `(batch,)` u32 tensor (or, for beam search, not `(1,)`).
    #[error("first tokens must be a {expected} u32 tensor, got shape {dims:?} of dtype {dtype:?}")]
    InvalidFirstTokens {
        /// What was expected, in words: "(batch,)" or "(1,)".
        expected: &'static str,
        /// The shape given.
        dims: Vec<usize>,
        /// The dtype given.
        dtype: DType,
    },

    /// The model's logits do not have the shape (batch, vocab) for the batch it was given.
    #[error("model step returned logits of shape {dims:?}, expected ({batch}, vocab)")]
    LogitsShape {
        /// Rows of the batch the model was stepped with.
        batch: usize,
        /// The shape it returned.
        dims: Vec<usize>,
    },

    /// A logit is NaN or +infinity (-infinity is allowed: it masks a token).
    #[error("logit of token {token} in row {row} is {value}; logits must be finite or -inf")]
    InvalidLogit {
        /// The batch row.
        row: usize,
        /// The token whose logit is bad.
        token: usize,
        /// The bad value.
        value: f32,
    },

    /// Every token of a row is banned or has logit -inf, so none can be produced.
    #[error("no token can be produced in row {row}: every token is banned or has logit -inf")]
    NoTokenAllowed {
        /// The batch row.
        row: usize,
    },

    /// The model, or a tensor operation around it, failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
