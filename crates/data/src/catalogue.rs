//! A small catalogue of real datasets on the Hugging Face Hub, by name: where each lies, which command
//! trains on it, which columns hold what, and under which licence. The entries are data: this crate
//! knows no pipeline (each pipeline checks that the entries meant for it name the roles it reads).

use crate::error::{Error, Result};
use crate::hub_dataset::{HubDataset, DEFAULT_CONFIG};
use crate::rows::Columns;

/// One named dataset of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueEntry {
    /// The short name: `seqlab data fetch NAME`.
    pub name: &'static str,
    /// `OWNER/NAME` on the hub.
    pub repo: &'static str,
    /// The config of the hub's parquet conversion.
    pub config: &'static str,
    /// Its splits, the training split first.
    pub splits: &'static [&'static str],
    /// The `seqlab` command that trains on it (`lm`, `classify`, ...).
    pub command: &'static str,
    /// Which column holds each role the command reads (`text`, `label`, `source`, `target`, `image`,
    /// `caption`; see [`crate::Columns`]).
    pub columns: &'static [(&'static str, &'static str)],
    /// The licence, as the dataset card or the source gives it.
    pub licence: &'static str,
    /// One line about it.
    pub description: &'static str,
    /// How its id and columns were checked (or that they were not).
    pub checked: &'static str,
}

impl CatalogueEntry {
    /// The split `split` as a hub address.
    pub fn dataset(&self, split: &str) -> HubDataset {
        let config = (self.config != DEFAULT_CONFIG).then_some(self.config);
        HubDataset::new(self.repo, config, split)
    }

    /// Its columns as a [`Columns`] map.
    pub fn column_map(&self) -> Columns {
        self.columns
            .iter()
            .fold(Columns::new(), |columns, &(role, column)| {
                columns.with(role, Some(column))
            })
    }

    /// The address of its training split: what `--data` takes.
    pub fn address(&self) -> String {
        self.dataset(self.splits[0]).to_string()
    }
}

const CATALOGUE: &[CatalogueEntry] = &[
    CatalogueEntry {
        name: "ag_news",
        repo: "fancyzhx/ag_news",
        config: "default",
        splits: &["train", "test"],
        command: "classify",
        columns: &[("text", "text"), ("label", "label")],
        licence: "unknown (the card says so; AG's corpus is offered for research and non-commercial use)",
        description: "AG News: 120,000 + 7,600 news articles in 4 topics (World, Sports, Business, Sci/Tech)",
        checked: "dataset card: features text (string) and label (class_label World/Sports/Business/Sci/Tech)",
    },
    CatalogueEntry {
        name: "tiny_shakespeare",
        repo: "karpathy/tiny_shakespeare",
        config: "default",
        splits: &["train", "validation", "test"],
        command: "lm",
        columns: &[("text", "text")],
        licence: "public domain (Shakespeare's plays); the card names no licence",
        description: "tiny-shakespeare: 1.1 MB of Shakespeare's plays, the whole text of each split in one row",
        checked: "dataset card: one feature text (string), splits train/validation/test of one example each",
    },
    CatalogueEntry {
        name: "sherlock",
        repo: "minnbanya/nlp-a2-sherlock",
        config: "default",
        splits: &["train", "validation", "test"],
        command: "lm",
        columns: &[("text", "text")],
        licence: "public domain (Arthur Conan Doyle's Sherlock Holmes stories); the card names no licence",
        description: "Sherlock Holmes stories as plain text, one row per line",
        checked: "repository listing only (train/validation/test folders of .txt files); the text column is the hub's name for text files, not seen",
    },
    CatalogueEntry {
        name: "opus_books_en_es",
        repo: "Helsinki-NLP/opus_books",
        config: "en-es",
        splits: &["train"],
        command: "translate",
        columns: &[("source", "translation.en"), ("target", "translation.es")],
        licence: "other (OPUS Books: aligned copyright-free books; research use)",
        description: "OPUS Books English-Spanish: 93,470 aligned sentence pairs from novels",
        checked: "dataset card: config en-es, features id and translation {en, es}; parquet branch has en-es/train",
    },
    CatalogueEntry {
        name: "flickr8k",
        repo: "jxie/flickr8k",
        config: "default",
        splits: &["train", "validation", "test"],
        command: "caption",
        columns: &[("caption", "caption_0,caption_1,caption_2,caption_3,caption_4"), ("image", "image")],
        licence: "Flickr8k terms: research use only; images belong to their Flickr owners",
        description: "Flickr8k: 6,000 + 1,000 + 1,000 photos with five captions each (about 1.1 GB)",
        checked: "dataset card: features image (image), caption_0 ... caption_4 (string)",
    },
];

/// The catalogue, in the order `seqlab data list` shows it.
pub fn catalogue() -> &'static [CatalogueEntry] {
    CATALOGUE
}

/// The catalogue entry named `name`.
pub fn find_dataset(name: &str) -> Result<&'static CatalogueEntry> {
    CATALOGUE
        .iter()
        .find(|entry| entry.name == name)
        .ok_or_else(|| Error::UnknownDataset {
            name: name.to_string(),
            known: CATALOGUE
                .iter()
                .map(|e| e.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The catalogue entry of a hub dataset address (same repository, and same config when it names one).
pub fn entry_for(dataset: &HubDataset) -> Option<&'static CatalogueEntry> {
    CATALOGUE.iter().find(|entry| {
        entry.repo.eq_ignore_ascii_case(&dataset.repo)
            && dataset.config.as_deref().is_none_or(|c| c == entry.config)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_have_unique_names_and_columns_for_their_task() {
        for (i, entry) in catalogue().iter().enumerate() {
            assert!(catalogue()[..i].iter().all(|e| e.name != entry.name));
            assert!(!entry.splits.is_empty() && !entry.licence.is_empty());
            assert!(!entry.command.is_empty() && !entry.columns.is_empty());
            let roles: Vec<&str> = entry.columns.iter().map(|(role, _)| *role).collect();
            assert!(
                roles
                    .iter()
                    .enumerate()
                    .all(|(i, r)| !roles[..i].contains(r)),
                "{}",
                entry.name
            );
            // Its address leads back to it.
            let dataset = HubDataset::parse(&entry.address()).unwrap();
            assert_eq!(entry_for(&dataset), Some(entry));
        }
        assert_eq!(
            find_dataset("opus_books_en_es").unwrap().address(),
            "hf://datasets/Helsinki-NLP/opus_books:en-es/train"
        );
        let error = find_dataset("imagenet").unwrap_err().to_string();
        assert!(
            error.contains("\"imagenet\"") && error.contains("ag_news"),
            "{error}"
        );
    }
}
