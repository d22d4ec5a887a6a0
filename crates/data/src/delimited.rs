//! CSV and TSV tables: a header line naming the columns, then one row per record.

use std::path::Path;

use crate::error::{Error, Result};
use crate::table::Column;

/// Reads a delimited file into text columns named by its header line. With `,`, fields follow RFC 4180
/// (double quotes around fields that hold commas, quotes or line breaks; `""` for a quote); with a tab,
/// fields are split at tabs and taken as they are (TSV has no quoting). A byte-order mark and CRLF line ends
/// are tolerated; empty lines are skipped.
pub(crate) fn read_delimited(path: &Path, delimiter: u8) -> Result<Vec<Column>> {
    let text = seqlab_tokenize::read_text(path)?;
    let records = if delimiter == b',' {
        csv_records(&text).map_err(|(line, reason)| Error::Csv {
            path: path.to_path_buf(),
            line,
            reason,
        })?
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.is_empty())
            .map(|(i, line)| {
                (
                    i + 1,
                    line.split(delimiter as char).map(str::to_string).collect(),
                )
            })
            .collect()
    };
    let mut records = records.into_iter();
    let Some((_, header)) = records.next() else {
        return Err(Error::Csv {
            path: path.to_path_buf(),
            line: 1,
            reason: "the file is empty; expected a header line naming the columns".to_string(),
        });
    };
    let mut values: Vec<Vec<String>> = vec![Vec::new(); header.len()];
    for (line, record) in records {
        if record.len() != header.len() {
            return Err(Error::Csv {
                path: path.to_path_buf(),
                line,
                reason: format!(
                    "{} fields where the header has {} ({})",
                    record.len(),
                    header.len(),
                    header.join(", ")
                ),
            });
        }
        for (column, field) in values.iter_mut().zip(record) {
            column.push(field);
        }
    }
    Ok(header
        .into_iter()
        .zip(values)
        .map(|(name, values)| Column::text(name.trim(), values))
        .collect())
}

/// RFC 4180 records with the line each starts on; `Err((line, reason))` for an unterminated quote or text
/// after a closing quote.
/// Records with the 1-based line each starts on.
type Records = Vec<(usize, Vec<String>)>;

fn csv_records(text: &str) -> std::result::Result<Records, (usize, String)> {
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut record = Vec::new();
        let mut field = String::new();
        let mut blank = true;
        loop {
            match chars.next() {
                None => {
                    record.push(std::mem::take(&mut field));
                    break;
                }
                Some('\n') => {
                    line += 1;
                    record.push(std::mem::take(&mut field));
                    break;
                }
                Some(',') => {
                    blank = false;
                    record.push(std::mem::take(&mut field));
                }
                Some('"') if field.is_empty() => {
                    blank = false;
                    loop {
                        match chars.next() {
                            None => return Err((start, "a quoted field is never closed".into())),
                            Some('"') if chars.peek() == Some(&'"') => {
                                chars.next();
                                field.push('"');
                            }
                            Some('"') => break,
                            Some(c) => {
                                if c == '\n' {
                                    line += 1;
                                }
                                field.push(c);
                            }
                        }
                    }
                    match chars.peek() {
                        None | Some(',') | Some('\n') => {}
                        Some(_) => {
                            return Err((line, "text follows a closing quote".into()));
                        }
                    }
                }
                Some(c) => {
                    blank = false;
                    field.push(c);
                }
            }
        }
        if !(blank && record.len() == 1 && record[0].is_empty()) {
            records.push((start, record));
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_follows_rfc_4180() {
        let records =
            csv_records("a,b\n\"x, \"\"y\"\"\",2\n\n\"multi\nline\",3\nplain,\n").unwrap();
        assert_eq!(
            records,
            [
                (1, vec!["a".to_string(), "b".into()]),
                (2, vec!["x, \"y\"".into(), "2".into()]),
                (4, vec!["multi\nline".into(), "3".into()]),
                (6, vec!["plain".into(), "".into()]),
            ]
        );
        assert_eq!(csv_records("a\n\"open\n").unwrap_err().0, 2);
        assert!(csv_records("\"a\"b\n").is_err());
    }

    #[test]
    fn delimited_files_give_named_text_columns_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let tsv = dir.path().join("pairs.tsv");
        std::fs::write(&tsv, "en\tes\r\nHello \"you\"\tHola\r\n").unwrap();
        let columns = read_delimited(&tsv, b'\t').unwrap();
        assert_eq!(columns[0].name(), "en");
        assert_eq!(
            columns[0].values(),
            &crate::Values::Text(vec!["Hello \"you\"".into()])
        );
        let csv = dir.path().join("bad.csv");
        std::fs::write(&csv, "text,label\nok,1\nmissing\n").unwrap();
        let error = read_delimited(&csv, b',').unwrap_err().to_string();
        assert!(
            error.contains("bad.csv, line 3") && error.contains("1 fields"),
            "{error}"
        );
    }
}
