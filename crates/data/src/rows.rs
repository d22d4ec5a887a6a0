//! The rows each pipeline trains on, taken from a [`Table`] by column role: text (lm), text and label
//! (classify), source and target (translate), image and caption (caption).
//!
//! A column not named on the command line is the catalogue's column for that dataset
//! ([`crate::catalogue`]), else the usual name: `text`, `label`, `source`, `target`, `image`, `caption`.

use crate::catalogue::{entry_for, ColumnRoles};
use crate::error::{Error, Result};
use crate::hub_dataset::{is_hub_dataset, Hub, HubDataset};
use crate::labelled::LabelledRow;
use crate::table::{Table, Values};

/// Columns named on the command line (`--text-column`, `--label-column`, `--source-column`,
/// `--target-column`, `--image-column`, `--caption-column`); `None` takes the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnFlags {
    /// The text column (lm, classify), or the caption column(s) of a captioning set, comma-separated
    /// (`--caption-column`).
    pub text: Option<String>,
    /// The label column (classify).
    pub label: Option<String>,
    /// The source-sentence column (translate); `a.b` names field `b` of struct column `a`.
    pub source: Option<String>,
    /// The target-sentence column (translate).
    pub target: Option<String>,
    /// The image column (caption).
    pub image: Option<String>,
}

/// The catalogue's columns for `source` when it is a catalogued hub dataset, else none.
pub fn catalogue_columns(source: &str) -> ColumnRoles {
    HubDataset::parse(source)
        .ok()
        .and_then(|dataset| entry_for(&dataset))
        .map(|entry| entry.columns)
        .unwrap_or_default()
}

/// One column to read: its name and the flag that chooses it.
struct Role {
    column: String,
    flag: &'static str,
}

fn role(
    flag_value: &Option<String>,
    catalogue: Option<&str>,
    fallback: &str,
    flag: &'static str,
) -> Role {
    Role {
        column: flag_value
            .clone()
            .or_else(|| catalogue.map(str::to_string))
            .unwrap_or_else(|| fallback.to_string()),
        flag,
    }
}

/// Reads the roles' columns; a missing column's error names the flag that chooses it.
fn read(hub: &Hub, source: &str, roles: &[&Role]) -> Result<Table> {
    let columns: Vec<&str> = roles.iter().map(|r| r.column.as_str()).collect();
    Table::load_with(hub, source, &columns).map_err(|error| match error {
        Error::MissingColumn {
            source_name,
            column,
            available,
            flag: None,
        } => {
            let flag = roles.iter().find(|r| r.column == column).map(|r| r.flag);
            Error::MissingColumn {
                source_name,
                column,
                available,
                flag,
            }
        }
        other => other,
    })
}

/// The rows of the text column of `source`, for a language model.
pub fn text_rows(hub: &Hub, source: &str, flags: &ColumnFlags) -> Result<Vec<String>> {
    let text = role(
        &flags.text,
        catalogue_columns(source).text,
        "text",
        "--text-column",
    );
    let table = read(hub, source, &[&text])?;
    Ok(table.text(&text.column)?.to_vec())
}

/// Texts with their class labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledRows {
    /// One text per row.
    pub texts: Vec<String>,
    /// Its label, as text: the class name when the file names its classes, else the value as it is.
    pub labels: Vec<String>,
    /// The ordered class names when the file gives them (a hub `ClassLabel`): class id `i` is
    /// `class_names[i]`, including classes no row of this split holds.
    pub class_names: Option<Vec<String>>,
}

/// The text and label columns of `source`, for a classifier.
pub fn labelled_rows(hub: &Hub, source: &str, flags: &ColumnFlags) -> Result<LabelledRows> {
    let defaults = catalogue_columns(source);
    let text = role(&flags.text, defaults.text, "text", "--text-column");
    let label = role(&flags.label, defaults.label, "label", "--label-column");
    let table = read(hub, source, &[&text, &label])?;
    Ok(LabelledRows {
        texts: table.text(&text.column)?.to_vec(),
        labels: table.text(&label.column)?.to_vec(),
        class_names: table
            .column(&label.column)?
            .class_names()
            .map(<[String]>::to_vec),
    })
}

/// The source and target columns of `source`, for a translator: `(source, target)` pairs.
pub fn translation_pairs(
    hub: &Hub,
    source: &str,
    flags: &ColumnFlags,
) -> Result<Vec<(String, String)>> {
    let defaults = catalogue_columns(source);
    let from = role(&flags.source, defaults.source, "source", "--source-column");
    let to = role(&flags.target, defaults.target, "target", "--target-column");
    let table = read(hub, source, &[&from, &to])?;
    Ok(table
        .text(&from.column)?
        .iter()
        .cloned()
        .zip(table.text(&to.column)?.iter().cloned())
        .collect())
}

/// The source and target columns of a table as `source<TAB>target` lines, one per row (tabs and line
/// breaks inside a sentence become spaces), for the translator's [`crate::parse_parallel`]: a pair's line is
/// its row.
pub fn parallel_text(hub: &Hub, source: &str, flags: &ColumnFlags) -> Result<String> {
    let clean = |s: &str| s.replace(['\t', '\r', '\n'], " ");
    Ok(translation_pairs(hub, source, flags)?
        .iter()
        .map(|(from, to)| format!("{}\t{}\n", clean(from), clean(to)))
        .collect())
}

/// An image (its encoded bytes: PNG, JPEG, ...) with one caption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptionRow {
    /// The image file's bytes, as stored.
    pub image: Vec<u8>,
    /// One caption of it.
    pub caption: String,
}

/// The image and caption columns of `source`, for a captioner: one row per (image, caption) pair. The
/// caption flag may name several columns, comma-separated (Flickr8k's `caption_0` ... `caption_4`), and a
/// column may hold a list of captions per image; empty captions are skipped.
pub fn caption_rows(hub: &Hub, source: &str, flags: &ColumnFlags) -> Result<Vec<CaptionRow>> {
    Ok(captioned_images(hub, source, flags)?
        .into_iter()
        .flat_map(|(image, captions)| {
            captions.into_iter().map(move |caption| CaptionRow {
                image: image.clone(),
                caption,
            })
        })
        .collect())
}

/// Each row's image bytes with its non-empty captions, in row order.
pub(crate) fn captioned_images(
    hub: &Hub,
    source: &str,
    flags: &ColumnFlags,
) -> Result<Vec<(Vec<u8>, Vec<String>)>> {
    let defaults = catalogue_columns(source);
    let image = role(&flags.image, defaults.image, "image", "--image-column");
    let captions: Vec<Role> = flags
        .text
        .as_deref()
        .or(defaults.text)
        .unwrap_or("caption")
        .split(',')
        .map(|c| Role {
            column: c.trim().to_string(),
            flag: "--caption-column",
        })
        .collect();
    let mut roles = vec![&image];
    roles.extend(captions.iter());
    let table = read(hub, source, &roles)?;
    let images = table.bytes(&image.column)?;
    let mut per_image: Vec<Vec<String>> = vec![Vec::new(); images.len()];
    for caption in &captions {
        match table.column(&caption.column)?.values() {
            Values::Text(texts) => {
                for (all, text) in per_image.iter_mut().zip(texts) {
                    all.push(text.clone());
                }
            }
            Values::Lists(lists) => {
                for (all, list) in per_image.iter_mut().zip(lists) {
                    all.extend(list.iter().cloned());
                }
            }
            Values::Bytes(_) => {
                table.text(&caption.column)?;
            }
        }
    }
    Ok(images
        .iter()
        .zip(per_image)
        .map(|(image, captions)| {
            let captions = captions
                .into_iter()
                .filter(|c| !c.trim().is_empty())
                .collect();
            (image.clone(), captions)
        })
        .collect())
}

/// Whether a classifier reads `source` as a table (a hub split, or a parquet file) rather than as its own
/// CSV or TSV formats.
pub fn is_labelled_table(source: &str) -> bool {
    is_hub_dataset(source)
        || source
            .rsplit_once('.')
            .is_some_and(|(_, e)| e.eq_ignore_ascii_case("parquet"))
}

/// The rows of a labelled table in the classifier's form ([`LabelledRow`]: `line` is the 1-based row, the
/// label its name as [`labelled_rows`] gives it); rows with an empty text are left out. The classifier's
/// [`crate::read_labelled`] calls this for [`is_labelled_table`] sources, with the default columns.
pub fn labelled_table_rows(
    hub: &Hub,
    source: &str,
    flags: &ColumnFlags,
) -> Result<Vec<LabelledRow>> {
    let rows = labelled_rows(hub, source, flags)?;
    let out: Vec<LabelledRow> = rows
        .texts
        .into_iter()
        .zip(rows.labels)
        .enumerate()
        .filter(|(_, (text, _))| !text.trim().is_empty())
        .map(|(i, (text, label))| LabelledRow {
            line: i + 1,
            label,
            text,
        })
        .collect();
    if out.is_empty() {
        return Err(Error::NoExamples {
            file: source.to_string(),
        });
    }
    Ok(out)
}
