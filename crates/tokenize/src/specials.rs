//! The special tokens and where to find them in any tokenizer.

/// Padding: fills batches of sequences of different lengths. Always id 0 in seqlab's tokenizers.
pub const PAD: &str = "<pad>";
/// Unknown: stands for every character or word that is not in the vocabulary.
pub const UNK: &str = "<unk>";
/// Beginning of sequence: the first input of a decoder.
pub const BOS: &str = "<bos>";
/// End of sequence: generation stops when it is produced.
pub const EOS: &str = "<eos>";

/// The special tokens of seqlab's tokenizers, in id order: `<pad>` = 0, `<unk>` = 1, `<bos>` = 2,
/// `<eos>` = 3.
pub const SPECIAL_TOKENS: [&str; 4] = [PAD, UNK, BOS, EOS];

/// The ids of the special tokens of a tokenizer; `None` where it has no such token.
///
/// seqlab's own tokenizers have all four. For a tokenizer.json made elsewhere the conventional
/// spellings are looked up in order: `<pad>`, `[PAD]`, `<|pad|>` for padding; the model's own unknown
/// token, then `<unk>`, `[UNK]`; `<bos>`, `<s>`, `[CLS]`, `<|startoftext|>`, `<|begin_of_text|>` for the
/// beginning; `<eos>`, `</s>`, `[SEP]`, `<|endoftext|>`, `<|end_of_text|>` for the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Specials {
    /// Padding.
    pub pad: Option<u32>,
    /// Unknown character or word.
    pub unk: Option<u32>,
    /// Beginning of sequence.
    pub bos: Option<u32>,
    /// End of sequence.
    pub eos: Option<u32>,
}

pub(crate) const PAD_SPELLINGS: &[&str] = &[PAD, "[PAD]", "<|pad|>"];
pub(crate) const UNK_SPELLINGS: &[&str] = &[UNK, "[UNK]"];
pub(crate) const BOS_SPELLINGS: &[&str] =
    &[BOS, "<s>", "[CLS]", "<|startoftext|>", "<|begin_of_text|>"];
pub(crate) const EOS_SPELLINGS: &[&str] =
    &[EOS, "</s>", "[SEP]", "<|endoftext|>", "<|end_of_text|>"];

/// The ids that frame and pad the sequences a decoder reads and writes: what a translator's or a
/// captioner's batches need, all three present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// Padding.
    pub pad: u32,
    /// The first input of a decoder.
    pub bos: u32,
    /// The token that ends a sequence.
    pub eos: u32,
}

impl Specials {
    /// `<pad>`, `<bos>` and `<eos>` together; `None` when any is missing.
    pub fn framing(&self) -> Option<Framing> {
        Some(Framing {
            pad: self.pad?,
            bos: self.bos?,
            eos: self.eos?,
        })
    }
}
