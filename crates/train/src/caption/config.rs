//! How a captioner is trained ([`CaptionTrainConfig`], saved in `config.json` under `"train"`), and which
//! images of a captions file a command uses ([`Split`]).

use std::path::PathBuf;

use seqlab_data::{split_by_image, CaptionedImage, Columns};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::trainer::{has_loop, LoopConfig};

/// How a captioner is trained: plain data, saved in `config.json` under `"train"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CaptionTrainConfig {
    /// The image folder.
    pub images: String,
    /// The `captions.txt` CSV (`image,caption`), or a table: a hub split or a `.parquet` file.
    pub captions: String,
    /// The image column (bytes) of a table; `None`: the catalogue's column for the dataset, else `image`.
    /// A `captions.txt` file does not use it.
    pub image_column: Option<String>,
    /// The caption column(s) of a table, comma-separated; `None`: the catalogue's columns for the dataset,
    /// else `caption`.
    pub caption_column: Option<String>,
    /// Images (not captions) held out for validation. 0.1: a tenth of the images, all their captions.
    pub valid_fraction: f64,
    /// Leave out listed images that are missing, corrupt or of another format (counted and reported)
    /// instead of stopping with an error naming the first one.
    pub skip_bad_images: bool,
    /// Lowercase the captions. Default true: "A dog" and "a dog" are one caption.
    pub lowercase: bool,
    /// Keep only words seen at least this often in the training captions; rarer ones become `<unk>`.
    pub min_freq: usize,
    /// Keep at most this many words, specials included.
    pub max_vocab: Option<usize>,
    /// Captions per batch. 32: the CNN's batch-norm statistics need a few dozen images; larger batches
    /// cost more per step on two cores than they gain.
    pub batch: usize,
    /// Words kept of each caption (longer ones are cut). 30: longer than any Flickr8k caption but a few.
    pub max_words: usize,
    /// The loop's settings.
    #[serde(flatten)]
    pub optim: LoopConfig,
}

has_loop!(CaptionTrainConfig);

impl Default for CaptionTrainConfig {
    fn default() -> Self {
        Self {
            images: String::new(),
            captions: String::new(),
            image_column: None,
            caption_column: None,
            valid_fraction: 0.1,
            skip_bad_images: false,
            lowercase: true,
            min_freq: 1,
            max_vocab: None,
            batch: 32,
            max_words: 30,
            optim: LoopConfig::default(),
        }
    }
}

impl CaptionTrainConfig {
    /// The columns a table is read by: `image_column` and `caption_column`.
    pub fn columns(&self) -> Columns {
        Columns::new()
            .with("image", self.image_column.clone())
            .with("caption", self.caption_column.clone())
    }

    /// The `captions.txt` file and image folder of this run's data: a table is written out once by its
    /// columns ([`seqlab_data::caption_files_with`]). Column settings for a `captions.txt` file are an error
    /// naming the flag and the file.
    pub fn caption_files(&self) -> Result<(PathBuf, PathBuf)> {
        self.caption_files_of(&self.captions, &self.images, &self.columns())
    }

    /// The `captions.txt` file and image folder of another source, e.g. for `caption eval`: a table is read
    /// by `columns` where they name a column, else by this run's columns. Columns named in `columns` for a
    /// `captions.txt` file are an error naming the flag and the file.
    pub fn caption_files_of(
        &self,
        captions: &str,
        images: &str,
        columns: &Columns,
    ) -> Result<(PathBuf, PathBuf)> {
        columns.check_tables(&[captions], "an image,caption CSV")?;
        let columns = columns.or(&self.columns());
        Ok(seqlab_data::caption_files_with(captions, images, &columns)?)
    }
}

/// Which images of a captions file a command uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Split {
    /// Every image of the file.
    #[default]
    All,
    /// The training images of the model's split (its seed and validation fraction).
    Train,
    /// The validation images of the model's split: held-out images when the file is the training file.
    Valid,
}

impl std::str::FromStr for Split {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "all" => Ok(Split::All),
            "train" => Ok(Split::Train),
            "valid" => Ok(Split::Valid),
            other => Err(format!(
                "unknown split '{other}': expected all, train or valid"
            )),
        }
    }
}

impl Split {
    /// The images of `images` this split keeps, split as the model's training run split them.
    pub fn select(
        self,
        images: &[CaptionedImage],
        train: &CaptionTrainConfig,
    ) -> Result<Vec<CaptionedImage>> {
        if self == Split::All {
            return Ok(images.to_vec());
        }
        let (t, v) = split_by_image(images, train.valid_fraction, train.optim.seed)?;
        Ok(if self == Split::Train { t } else { v })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_without_the_column_settings_still_loads() {
        // config.json files written before --image-column and --caption-column existed.
        let config: CaptionTrainConfig =
            serde_json::from_str(r#"{"captions": "captions.txt", "images": "images"}"#).unwrap();
        assert_eq!(config.columns(), Columns::new());
    }

    #[test]
    fn column_settings_for_a_captions_file_are_refused() {
        let config = CaptionTrainConfig {
            captions: "captions.txt".into(),
            caption_column: Some("text".into()),
            ..CaptionTrainConfig::default()
        };
        let error = config.caption_files().unwrap_err().to_string();
        assert!(
            error.contains("--caption-column") && error.contains("captions.txt"),
            "{error}"
        );
        // Saved columns do not make another captions file an error; given ones do.
        let (file, _) = config
            .caption_files_of("other.txt", "images", &Columns::new())
            .unwrap();
        assert_eq!(file, PathBuf::from("other.txt"));
        let given = Columns::new().with("image", Some("picture"));
        let error = config
            .caption_files_of("other.txt", "images", &given)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--image-column") && error.contains("other.txt"),
            "{error}"
        );
    }
}
