//! Rows taken from a [`Table`] by column role: a text column, a text and a label, a source and a target, an
//! image and its captions.
//!
//! A role is a name a reader asks for: `text`, `label`, `source`, `target`, `image`, `caption`. [`Columns`]
//! maps roles to column names; a role it leaves unset is the catalogue's column for that dataset
//! ([`crate::catalogue`]), else the role's own name. The command line's flag for role `r` is `--r-column`.

use crate::catalogue::entry_for;
use crate::error::{Error, Result};
use crate::hub_dataset::{is_hub_dataset, Hub, HubDataset};
use crate::labelled::LabelledRow;
use crate::table::{Table, Values};

/// The column of a table that holds each role, by role name (`text`, `label`, `source`, `target`, `image`,
/// `caption`): the columns named on the command line (`--text-column`, ...), saved in a model's
/// `config.json`, or a catalogue entry's. A role it leaves unset takes the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Columns {
    named: Vec<(String, String)>,
}

impl Columns {
    /// No column named: every role takes its default.
    pub fn new() -> Columns {
        Columns::default()
    }

    /// These columns with `role` read from `column`, when it is given (`None` leaves the role as it is).
    pub fn with(mut self, role: &str, column: Option<impl Into<String>>) -> Columns {
        if let Some(column) = column {
            let column = column.into();
            match self.named.iter_mut().find(|(r, _)| r == role) {
                Some((_, c)) => *c = column,
                None => self.named.push((role.to_string(), column)),
            }
        }
        self
    }

    /// The column named for `role`.
    pub fn get(&self, role: &str) -> Option<&str> {
        self.named
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, c)| c.as_str())
    }

    /// These columns, and `fallback`'s for the roles they leave unset.
    pub fn or(&self, fallback: &Columns) -> Columns {
        fallback
            .iter()
            .fold(self.clone(), |columns, (role, column)| {
                if columns.get(role).is_some() {
                    columns
                } else {
                    columns.with(role, Some(column))
                }
            })
    }

    /// The named roles and their columns, in the order they were named.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.named.iter().map(|(r, c)| (r.as_str(), c.as_str()))
    }

    /// Whether no column is named.
    pub fn is_empty(&self) -> bool {
        self.named.is_empty()
    }

    /// Column names are for tables only: with a column named and none of `sources` a table (a hub split
    /// or a `.parquet` file), an error naming the first role's flag, the first source and how it is read
    /// instead (`read_as`, such as `"label<TAB>text TSV"`), rather than a setting silently ignored.
    pub fn check_tables(&self, sources: &[&str], read_as: &str) -> Result<()> {
        let Some((role, _)) = self.iter().next() else {
            return Ok(());
        };
        if sources.iter().any(|s| is_labelled_table(s)) {
            return Ok(());
        }
        Err(Error::ColumnsForFile {
            flag: Columns::flag(role),
            file: sources.first().copied().unwrap_or_default().to_string(),
            read_as: read_as.to_string(),
        })
    }

    /// The command line's flag for `role`: `--ROLE-column`.
    pub fn flag(role: &str) -> String {
        format!("--{role}-column")
    }
}

/// The catalogue's columns for `source` when it is a catalogued hub dataset, else none.
pub fn catalogue_columns(source: &str) -> Columns {
    HubDataset::parse(source)
        .ok()
        .and_then(|dataset| entry_for(&dataset))
        .map(|entry| entry.column_map())
        .unwrap_or_default()
}

/// One column to read: its name and the flag that chooses it.
struct Role {
    column: String,
    flag: String,
}

/// The column of `role`: named in `columns`, else the catalogue's for `source`, else the role's name.
fn role(columns: &Columns, source: &str, role: &str) -> Role {
    Role {
        column: columns
            .get(role)
            .or(catalogue_columns(source).get(role))
            .unwrap_or(role)
            .to_string(),
        flag: Columns::flag(role),
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
            let flag = roles
                .iter()
                .find(|r| r.column == column)
                .map(|r| r.flag.clone());
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
pub fn text_rows(hub: &Hub, source: &str, columns: &Columns) -> Result<Vec<String>> {
    let text = role(columns, source, "text");
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
pub fn labelled_rows(hub: &Hub, source: &str, columns: &Columns) -> Result<LabelledRows> {
    let text = role(columns, source, "text");
    let label = role(columns, source, "label");
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
    columns: &Columns,
) -> Result<Vec<(String, String)>> {
    let from = role(columns, source, "source");
    let to = role(columns, source, "target");
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
pub fn parallel_text(hub: &Hub, source: &str, columns: &Columns) -> Result<String> {
    let clean = |s: &str| s.replace(['\t', '\r', '\n'], " ");
    Ok(translation_pairs(hub, source, columns)?
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
pub fn caption_rows(hub: &Hub, source: &str, columns: &Columns) -> Result<Vec<CaptionRow>> {
    Ok(captioned_images(hub, source, columns)?
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
    columns: &Columns,
) -> Result<Vec<(Vec<u8>, Vec<String>)>> {
    let image = role(columns, source, "image");
    let captions: Vec<Role> = role(columns, source, "caption")
        .column
        .split(',')
        .map(|c| Role {
            column: c.trim().to_string(),
            flag: Columns::flag("caption"),
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
pub fn labelled_table_rows(hub: &Hub, source: &str, columns: &Columns) -> Result<Vec<LabelledRow>> {
    let rows = labelled_rows(hub, source, columns)?;
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
