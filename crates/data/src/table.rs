//! Tables of named columns: the one way the pipelines get rows out of parquet, CSV, TSV and text files,
//! local or on the Hugging Face Hub.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::hub::{HubFile, HUB_SCHEME};
use crate::hub_dataset::{Hub, HubDataset};

/// The values of one column.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Text, one string per row. Numbers, booleans and class ids read as text too (class ids as their class
    /// names when the file names them).
    Text(Vec<String>),
    /// Bytes, one buffer per row: binary columns, and images stored the hub's way (a struct of `bytes` and
    /// `path`).
    Bytes(Vec<Vec<u8>>),
    /// A list of strings per row (a hub `Sequence(Value("string"))` column).
    Lists(Vec<Vec<String>>),
}

impl Values {
    /// The number of rows.
    pub fn len(&self) -> usize {
        match self {
            Values::Text(v) => v.len(),
            Values::Bytes(v) => v.len(),
            Values::Lists(v) => v.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn kind(&self) -> &'static str {
        match self {
            Values::Text(_) => "text",
            Values::Bytes(_) => "bytes",
            Values::Lists(_) => "a list of strings",
        }
    }

    /// Appends `other`'s rows; `false` (and nothing appended) when the kinds differ.
    fn append(&mut self, other: Values) -> bool {
        match (self, other) {
            (Values::Text(a), Values::Text(b)) => a.extend(b),
            (Values::Bytes(a), Values::Bytes(b)) => a.extend(b),
            (Values::Lists(a), Values::Lists(b)) => a.extend(b),
            _ => return false,
        }
        true
    }
}

/// A named column. A nested field is named with a dot: `translation.en`.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    name: String,
    values: Values,
    class_names: Option<Vec<String>>,
}

impl Column {
    /// A column of any kind of values.
    pub fn new(name: impl Into<String>, values: Values) -> Column {
        Column {
            name: name.into(),
            values,
            class_names: None,
        }
    }

    /// A text column.
    pub fn text(name: impl Into<String>, values: Vec<String>) -> Column {
        Column::new(name, Values::Text(values))
    }

    /// A bytes column (written to parquet as the hub writes images: a struct of `bytes` and `path`).
    pub fn bytes(name: impl Into<String>, values: Vec<Vec<u8>>) -> Column {
        Column::new(name, Values::Bytes(values))
    }

    /// The same column with the ordered names of its classes: a text column of class labels is written to
    /// parquet as the hub writes a `ClassLabel` (integer ids, names in the file's metadata).
    pub fn with_class_names(mut self, names: Vec<String>) -> Column {
        self.class_names = Some(names);
        self
    }

    /// The column's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its values.
    pub fn values(&self) -> &Values {
        &self.values
    }

    /// The ordered class names of a class-label column, when the file gives them (class id `i` reads as
    /// `class_names[i]`).
    pub fn class_names(&self) -> Option<&[String]> {
        self.class_names.as_deref()
    }
}

/// Rows of named columns, read from one source (a file, a hub split).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    source: String,
    columns: Vec<Column>,
}

impl Table {
    /// A table of `columns`, which must all have the same number of rows; `source` names it in messages.
    pub fn new(source: impl Into<String>, columns: Vec<Column>) -> Result<Table> {
        let source = source.into();
        if let Some(first) = columns.first() {
            if let Some(other) = columns
                .iter()
                .find(|c| c.values.len() != first.values.len())
            {
                return Err(Error::BadColumn {
                    source_name: source,
                    column: other.name.clone(),
                    reason: format!(
                        "has {} rows where \"{}\" has {}",
                        other.values.len(),
                        first.name,
                        first.values.len()
                    ),
                });
            }
        }
        Ok(Table { source, columns })
    }

    /// Reads `columns` (all of them when empty) of a data source: a local file or folder, an
    /// `hf://datasets/OWNER/NAME[@REVISION]/FILE` file, or an `hf://datasets/OWNER/NAME[@REVISION][:[CONFIG/]SPLIT]`
    /// split, through the environment's hub ([`Hub::from_env`]).
    pub fn load(source: &str, columns: &[&str]) -> Result<Table> {
        Table::load_with(&Hub::from_env(), source, columns)
    }

    /// [`Table::load`] through a given hub (cache folder, server, offline or not).
    pub fn load_with(hub: &Hub, source: &str, columns: &[&str]) -> Result<Table> {
        let paths = source_files(hub, source)?;
        Table::read_files(&paths, source, columns)
    }

    /// Reads `columns` (all of them when empty) of one file, by its extension: `.parquet`; `.csv` (a header
    /// line, then RFC 4180 rows); `.tsv` (a header line, then tab-separated rows, no quoting); anything else
    /// is text, one row per line in a column named `text`.
    pub fn read(path: &Path, columns: &[&str]) -> Result<Table> {
        let source = path.display().to_string();
        let columns = match extension(path).as_str() {
            "parquet" => crate::parquet_io::read_parquet(path, columns)?,
            "csv" => select(
                &source,
                crate::delimited::read_delimited(path, b',')?,
                columns,
            )?,
            "tsv" => select(
                &source,
                crate::delimited::read_delimited(path, b'\t')?,
                columns,
            )?,
            _ => {
                let text = seqlab_tokenize::read_text(path)?;
                let lines = text.lines().map(str::to_string).collect();
                select(&source, vec![Column::text("text", lines)], columns)?
            }
        };
        Table::new(source, columns)
    }

    /// Reads the same `columns` of several files (the parquet files of a split) as one table named `source`.
    pub fn read_files(paths: &[PathBuf], source: &str, columns: &[&str]) -> Result<Table> {
        let mut table: Option<Table> = None;
        for path in paths {
            let part = Table::read(path, columns).map_err(|error| name_source(error, source))?;
            match &mut table {
                None => table = Some(part),
                Some(table) => table.append(part)?,
            }
        }
        let mut table = table.ok_or_else(|| Error::BadColumn {
            source_name: source.to_string(),
            column: columns.join(", "),
            reason: "cannot be read: the source holds no file".to_string(),
        })?;
        table.source = source.to_string();
        Ok(table)
    }

    fn append(&mut self, other: Table) -> Result<()> {
        let names = |t: &Table| t.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        if names(self) != names(&other) {
            return Err(Error::BadColumn {
                column: names(&other).join(", "),
                source_name: other.source,
                reason: format!(
                    "differ from the columns of {} ({})",
                    self.source,
                    names(self).join(", ")
                ),
            });
        }
        for (column, part) in self.columns.iter_mut().zip(other.columns) {
            let kind = part.values.kind();
            if !column.values.append(part.values) {
                return Err(Error::BadColumn {
                    source_name: other.source,
                    column: column.name.clone(),
                    reason: format!(
                        "holds {kind} where {} holds {}",
                        self.source,
                        column.values.kind()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Where the rows came from (a path or a hub address).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.columns.first().map_or(0, |c| c.values.len())
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The columns, in the order they were asked for (file order when all were read).
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Result<&Column> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Error::MissingColumn {
                source_name: self.source.clone(),
                column: name.to_string(),
                available: self
                    .columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                flag: None,
            })
    }

    /// The text of column `name`; an error naming the column when it holds bytes or lists.
    pub fn text(&self, name: &str) -> Result<&[String]> {
        match &self.column(name)?.values {
            Values::Text(v) => Ok(v),
            other => Err(self.wrong_kind(name, "text", other)),
        }
    }

    /// The bytes of column `name` (an image column); an error naming the column when it holds no bytes.
    pub fn bytes(&self, name: &str) -> Result<&[Vec<u8>]> {
        match &self.column(name)?.values {
            Values::Bytes(v) => Ok(v),
            other => Err(self.wrong_kind(name, "bytes (an image)", other)),
        }
    }

    fn wrong_kind(&self, name: &str, wanted: &str, values: &Values) -> Error {
        Error::BadColumn {
            source_name: self.source.clone(),
            column: name.to_string(),
            reason: format!("holds {}, not {wanted}", values.kind()),
        }
    }

    /// Writes the table as one parquet file (snappy-compressed, written to a temporary file and renamed),
    /// laid out as the hub's converter lays out its files: optional UTF-8 columns, `a.b` columns as fields
    /// of a struct `a`, bytes columns as image structs `{bytes, path}`, list columns as lists of strings,
    /// class-label columns as `int64` ids with their names in the `huggingface` metadata.
    pub fn write_parquet(&self, path: &Path) -> Result<()> {
        crate::parquet_io::write_parquet(self, path)
    }
}

/// A column error about one file of `source` names both: `hf://datasets/a/b:train (…/0000.parquet)`.
fn name_source(error: Error, source: &str) -> Error {
    let both = |file: String| {
        if file == source {
            file
        } else {
            format!("{source} ({file})")
        }
    };
    match error {
        Error::MissingColumn {
            source_name,
            column,
            available,
            flag,
        } => Error::MissingColumn {
            source_name: both(source_name),
            column,
            available,
            flag,
        },
        Error::BadColumn {
            source_name,
            column,
            reason,
        } => Error::BadColumn {
            source_name: both(source_name),
            column,
            reason,
        },
        other => other,
    }
}

/// The lower-cased extension of a path, `""` when none.
fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Keeps the `wanted` columns, in that order (all when empty).
fn select(source: &str, columns: Vec<Column>, wanted: &[&str]) -> Result<Vec<Column>> {
    if wanted.is_empty() {
        return Ok(columns);
    }
    let available = columns
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut columns: Vec<Option<Column>> = columns.into_iter().map(Some).collect();
    wanted
        .iter()
        .map(|name| {
            columns
                .iter_mut()
                .find(|c| c.as_ref().is_some_and(|c| c.name == *name))
                .and_then(Option::take)
                .ok_or_else(|| Error::MissingColumn {
                    source_name: source.to_string(),
                    column: name.to_string(),
                    available: available.clone(),
                    flag: None,
                })
        })
        .collect()
}

/// The local files of a data source: a hub split's parquet files, a hub file, the table files of a local
/// folder (in name order), or a local file as it is.
pub fn source_files(hub: &Hub, source: &str) -> Result<Vec<PathBuf>> {
    if source.starts_with(HUB_SCHEME) {
        return match HubFile::parse(source) {
            Ok(file) => Ok(vec![hub.file(&file)?]),
            Err(file_error) => match HubDataset::parse(source) {
                Ok(dataset) => Ok(hub.split(&dataset)?.files),
                Err(_) => Err(file_error),
            },
        };
    }
    let path = PathBuf::from(source);
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
            .map_err(|error| Error::Read {
                path: path.clone(),
                error,
            })?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| matches!(extension(p).as_str(), "parquet" | "csv" | "tsv"))
            .collect();
        files.sort();
        return Ok(files);
    }
    Ok(vec![path])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_of_unequal_length_are_refused() {
        let error = Table::new(
            "t",
            vec![
                Column::text("a", vec!["x".into()]),
                Column::text("b", vec![]),
            ],
        )
        .unwrap_err();
        assert!(error.to_string().contains("\"b\" has 0 rows"), "{error}");
    }

    #[test]
    fn text_files_are_one_row_per_line_and_columns_are_selected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lines.txt");
        std::fs::write(&path, "\u{feff}one\r\ntwo\r\n").unwrap();
        let table = Table::read(&path, &[]).unwrap();
        assert_eq!(table.text("text").unwrap(), ["one", "two"]);
        let error = Table::read(&path, &["body"]).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("lines.txt") && message.contains("\"body\""),
            "{message}"
        );
        assert!(message.contains("its columns: text"), "{message}");
    }
}
