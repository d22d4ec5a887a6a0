//! Labelled text for classifiers: AG News CSV (`"class","title","description"`, class 1-based) and
//! `label<TAB>text` TSV, read into rows of (label as written, text), then into examples with class indices.
//!
//! Reading is two steps so that any table of strings can feed a classifier: [`parse_csv`] (or a parquet
//! reader, a database, ...) gives [`CsvRecord`]s, [`agnews_rows`] picks the class and the text of each, and
//! [`assign_labels`] maps the labels as written to class indices over a list of label names.

use std::path::Path;

use crate::error::{Error, Result};

/// How a labelled-text file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LabelledFormat {
    /// AG News CSV: `"class","title","description"` (or `"class","text"`), class numbers 1-based.
    #[default]
    AgNews,
    /// One example per line: `label<TAB>text`, the label a name.
    Tsv,
}

impl LabelledFormat {
    /// The format of `path` by its extension: `.csv` is AG News, anything else (`.tsv`, `.txt`) TSV.
    pub fn detect(path: &Path) -> LabelledFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("csv") => LabelledFormat::AgNews,
            _ => LabelledFormat::Tsv,
        }
    }

    /// How labels of this format are written: class numbers (AG News) or names (TSV).
    pub fn label_kind(self) -> LabelKind {
        match self {
            LabelledFormat::AgNews => LabelKind::ClassNumber,
            LabelledFormat::Tsv => LabelKind::Name,
        }
    }

    /// The name used on the command line: `agnews` or `tsv`.
    pub fn as_str(self) -> &'static str {
        match self {
            LabelledFormat::AgNews => "agnews",
            LabelledFormat::Tsv => "tsv",
        }
    }
}

impl std::str::FromStr for LabelledFormat {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "agnews" | "csv" => Ok(LabelledFormat::AgNews),
            "tsv" => Ok(LabelledFormat::Tsv),
            other => Err(format!("unknown format '{other}': expected agnews or tsv")),
        }
    }
}

/// Which columns of an AG News row make the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextField {
    /// The title alone.
    Title,
    /// The description alone.
    Description,
    /// The title, a space, the description (what most AG News classifiers read).
    #[default]
    Both,
}

impl TextField {
    /// The name used on the command line: `title`, `description` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            TextField::Title => "title",
            TextField::Description => "description",
            TextField::Both => "both",
        }
    }
}

impl std::str::FromStr for TextField {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "title" => Ok(TextField::Title),
            "description" => Ok(TextField::Description),
            "both" => Ok(TextField::Both),
            other => Err(format!(
                "unknown text field '{other}': expected title, description or both"
            )),
        }
    }
}

/// How the labels of [`LabelledRow`]s are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelKind {
    /// Class numbers from 1 (AG News): class `k` is the `k`-th label name.
    ClassNumber,
    /// Label names, looked up in the list of names.
    Name,
}

/// One record of a CSV file: its fields, unquoted, and the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvRecord {
    /// The line of the file the record starts on, 1-based (a quoted field may span lines).
    pub line: usize,
    /// The fields, with quotes removed and `""` read as `"`.
    pub fields: Vec<String>,
}

/// One labelled text as written in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledRow {
    /// The line the row starts on, 1-based (for errors).
    pub line: usize,
    /// The label as written: a class number (AG News) or a name (TSV).
    pub label: String,
    /// The text, never empty.
    pub text: String,
}

/// One example with its class index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The line the example starts on, 1-based (for errors).
    pub line: usize,
    /// Index of the class in [`Labelled::labels`].
    pub label: usize,
    /// The text.
    pub text: String,
}

/// Examples and the names of their classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labelled {
    /// Class names; class `i` is `labels[i]`.
    pub labels: Vec<String>,
    /// The examples, in file order.
    pub examples: Vec<Example>,
}

/// Splits CSV `text` into records (RFC 4180): fields separated by commas, records by line ends (`\n` or
/// `\r\n`), a field in double quotes may hold commas, line ends and doubled quotes (`""` for `"`). Empty
/// lines are skipped. `file` names the text in errors: an unclosed quote, or a character after a closing
/// quote, is [`Error::MalformedRow`] with the line the record starts on.
pub fn parse_csv(text: &str, file: &str) -> Result<Vec<CsvRecord>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let malformed = |line: usize, reason: String| Error::MalformedRow {
        file: file.to_string(),
        line,
        reason,
    };
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted_field = false;
        loop {
            // At the start of a field.
            if chars.peek() == Some(&'"') {
                chars.next();
                quoted_field = true;
                loop {
                    match chars.next() {
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
                        None => {
                            return Err(malformed(
                                start,
                                "a quoted field is not closed before the end of the file"
                                    .to_string(),
                            ))
                        }
                    }
                }
                if chars.peek() == Some(&'\r') {
                    chars.next();
                }
                match chars.peek() {
                    None | Some(',') | Some('\n') => {}
                    Some(c) => {
                        return Err(malformed(
                            start,
                            format!(
                                "unexpected {c:?} after the closing quote of field {}",
                                fields.len() + 1
                            ),
                        ))
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' || c == '\n' {
                        break;
                    }
                    chars.next();
                    field.push(c);
                }
                if field.ends_with('\r') {
                    field.pop();
                }
            }
            fields.push(std::mem::take(&mut field));
            match chars.next() {
                Some(',') => continue,
                Some(_) => {
                    // A line end.
                    line += 1;
                    break;
                }
                None => break,
            }
        }
        let empty_line = fields.len() == 1 && fields[0].is_empty() && !quoted_field;
        if !empty_line {
            records.push(CsvRecord {
                line: start,
                fields,
            });
        }
    }
    Ok(records)
}

/// The labelled rows of AG News records: `class,title,description` (or `class,text`), class a positive
/// integer. A first record whose class is not a number is a header and is skipped. `text` picks the
/// columns of three-column records (two-column records have only a text). Errors name `file` and the line:
/// [`Error::MalformedRow`] for a wrong number of fields, [`Error::BadLabel`] for a class that is not a
/// positive integer, [`Error::EmptyText`] for an empty text.
pub fn agnews_rows(
    records: impl IntoIterator<Item = CsvRecord>,
    text: TextField,
    file: &str,
) -> Result<Vec<LabelledRow>> {
    let mut rows = Vec::new();
    for (i, record) in records.into_iter().enumerate() {
        let CsvRecord { line, fields } = record;
        let class = fields.first().map(|c| c.trim()).unwrap_or("");
        let is_number = class.parse::<u64>().is_ok();
        if i == 0 && !is_number && fields.len() >= 2 {
            continue; // a header
        }
        let body = match (fields.len(), text) {
            (2, _) => fields[1].trim().to_string(),
            (3, TextField::Title) => fields[1].trim().to_string(),
            (3, TextField::Description) => fields[2].trim().to_string(),
            (3, TextField::Both) => {
                let (title, description) = (fields[1].trim(), fields[2].trim());
                match (title.is_empty(), description.is_empty()) {
                    (false, false) => format!("{title} {description}"),
                    _ => format!("{title}{description}"),
                }
            }
            (n, _) => {
                return Err(Error::MalformedRow {
                    file: file.to_string(),
                    line,
                    reason: format!(
                        "expected 3 fields (class, title, description) or 2 (class, text), got {n}"
                    ),
                })
            }
        };
        if class.parse::<u64>().map_or(true, |k| k == 0) {
            return Err(Error::BadLabel {
                file: file.to_string(),
                line,
                label: class.to_string(),
                reason: "an AG News class is a number from 1".to_string(),
            });
        }
        if body.is_empty() {
            return Err(Error::EmptyText {
                file: file.to_string(),
                line,
            });
        }
        rows.push(LabelledRow {
            line,
            label: class.to_string(),
            text: body,
        });
    }
    Ok(rows)
}

/// The rows of a `label<TAB>text` file: the label is what precedes the first tab (trimmed), the text the
/// rest (trimmed). Empty lines are skipped; a first line `label<TAB>text` is a header. Errors name `file`
/// and the line: [`Error::MalformedRow`] without a tab, [`Error::BadLabel`] for an empty label,
/// [`Error::EmptyText`] for an empty text.
pub fn parse_tsv(text: &str, file: &str) -> Result<Vec<LabelledRow>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            continue;
        }
        let Some((label, body)) = raw.split_once('\t') else {
            return Err(Error::MalformedRow {
                file: file.to_string(),
                line,
                reason: "expected label<TAB>text, found no tab".to_string(),
            });
        };
        let (label, body) = (label.trim(), body.trim());
        if rows.is_empty()
            && label.eq_ignore_ascii_case("label")
            && body.eq_ignore_ascii_case("text")
        {
            continue; // a header
        }
        if label.is_empty() {
            return Err(Error::BadLabel {
                file: file.to_string(),
                line,
                label: String::new(),
                reason: "the label is empty".to_string(),
            });
        }
        if body.is_empty() {
            return Err(Error::EmptyText {
                file: file.to_string(),
                line,
            });
        }
        rows.push(LabelledRow {
            line,
            label: label.to_string(),
            text: body.to_string(),
        });
    }
    Ok(rows)
}

/// Reads a labelled-text file in `format` ([`parse_csv`] + [`agnews_rows`], or [`parse_tsv`]); `text` picks
/// the AG News columns. A byte-order mark and CRLF line ends are fine. An empty file, or one with no rows,
/// is an error naming it. A hub split (`hf://datasets/...`) or a `.parquet` file is read as a table instead
/// ([`crate::labelled_table_rows`], the catalogue's or the `text` and `label` columns, labels as names).
pub fn read_labelled(
    path: &Path,
    format: LabelledFormat,
    text: TextField,
) -> Result<Vec<LabelledRow>> {
    // Hub splits and parquet files are tables: their text and label columns, labels as names.
    if let Some(source) = path.to_str().filter(|s| crate::rows::is_labelled_table(s)) {
        let hub = crate::hub_dataset::Hub::from_env();
        return crate::rows::labelled_table_rows(&hub, source, &Default::default());
    }
    let content = seqlab_tokenize::read_text(path)?;
    let file = path.display().to_string();
    let rows = match format {
        LabelledFormat::AgNews => agnews_rows(parse_csv(&content, &file)?, text, &file)?,
        LabelledFormat::Tsv => parse_tsv(&content, &file)?,
    };
    if rows.is_empty() {
        return Err(Error::NoExamples { file });
    }
    Ok(rows)
}

/// The label names a training set implies when none are given: for class numbers, `"1"` to the largest
/// class; for names, the distinct names in sorted order (so the classes do not depend on the rows' order).
pub fn infer_labels(rows: &[LabelledRow], kind: LabelKind) -> Vec<String> {
    match kind {
        LabelKind::ClassNumber => {
            let max = rows
                .iter()
                .filter_map(|r| r.label.parse::<usize>().ok())
                .max()
                .unwrap_or(0);
            (1..=max).map(|k| k.to_string()).collect()
        }
        LabelKind::Name => {
            let mut names: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
            names.sort();
            names.dedup();
            names
        }
    }
}

/// Maps each row's label to a class index over `labels`: class number `k` to `k - 1` (which must be below
/// `labels.len()`), a name to its position in `labels`. A label outside them is [`Error::BadLabel`] naming
/// `file` and the line.
pub fn assign_labels(
    rows: Vec<LabelledRow>,
    kind: LabelKind,
    labels: &[String],
    file: &str,
) -> Result<Labelled> {
    let index: std::collections::HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, name)| (name.as_str(), i))
        .collect();
    let examples = rows
        .into_iter()
        .map(|row| {
            let found = match kind {
                LabelKind::ClassNumber => row
                    .label
                    .parse::<usize>()
                    .ok()
                    .filter(|&k| (1..=labels.len()).contains(&k))
                    .map(|k| k - 1),
                LabelKind::Name => index.get(row.label.as_str()).copied(),
            };
            let label = found.ok_or_else(|| Error::BadLabel {
                file: file.to_string(),
                line: row.line,
                label: row.label.clone(),
                reason: match kind {
                    LabelKind::ClassNumber => {
                        format!("expected a class from 1 to {}", labels.len())
                    }
                    LabelKind::Name => format!("the known labels are {}", labels.join(", ")),
                },
            })?;
            Ok(Example {
                line: row.line,
                label,
                text: row.text,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Labelled {
        labels: labels.to_vec(),
        examples,
    })
}

/// Reads label names from a file, one per line (empty lines skipped, whitespace trimmed), as
/// `bbc-news-classes.txt` or AG News' `classes.txt` hold them. Duplicates are an error naming the line.
pub fn read_label_names(path: &Path) -> Result<Vec<String>> {
    let content = seqlab_tokenize::read_text(path)?;
    let file = path.display().to_string();
    let mut names: Vec<String> = Vec::new();
    for (i, line) in content.lines().enumerate() {
        let name = line.trim();
        if name.is_empty() {
            continue;
        }
        if names.iter().any(|n| n == name) {
            return Err(Error::BadLabel {
                file,
                line: i + 1,
                label: name.to_string(),
                reason: "the label is listed twice".to_string(),
            });
        }
        names.push(name.to_string());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(records: &[CsvRecord]) -> Vec<(usize, Vec<&str>)> {
        records
            .iter()
            .map(|r| (r.line, r.fields.iter().map(String::as_str).collect()))
            .collect()
    }

    #[test]
    fn csv_quotes_hold_commas_doubled_quotes_and_newlines() {
        let text = "\"3\",\"Hello, world\",\"She said \"\"hi\"\"\"\r\n\n4,plain,\"two\nlines\"\n\"1\",\"\",x";
        let records = parse_csv(text, "t.csv").unwrap();
        assert_eq!(
            fields(&records),
            [
                (1, vec!["3", "Hello, world", "She said \"hi\""]),
                (3, vec!["4", "plain", "two\nlines"]),
                (5, vec!["1", "", "x"]),
            ]
        );
    }

    #[test]
    fn csv_errors_name_the_line() {
        let err = parse_csv("1,a,b\n2,\"open,c\n", "t.csv")
            .unwrap_err()
            .to_string();
        assert!(err.contains("t.csv") && err.contains("line 2"), "{err}");
        let err = parse_csv("1,\"a\"b,c\n", "t.csv").unwrap_err().to_string();
        assert!(
            err.contains("line 1") && err.contains("after the closing quote"),
            "{err}"
        );
    }

    #[test]
    fn agnews_rows_pick_the_text_and_skip_a_header() {
        let records = parse_csv(
            "class,title,description\n\"2\",\"Title A\",\"Body A.\"\n1,Title B,\n",
            "t.csv",
        )
        .unwrap();
        let rows = agnews_rows(records.clone(), TextField::Both, "t.csv").unwrap();
        assert_eq!(rows[0].text, "Title A Body A.");
        assert_eq!((rows[0].line, rows[0].label.as_str()), (2, "2"));
        assert_eq!(rows[1].text, "Title B");
        let rows = agnews_rows(records.clone(), TextField::Title, "t.csv").unwrap();
        assert_eq!(rows[0].text, "Title A");
        let err = agnews_rows(records, TextField::Description, "t.csv")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "t.csv, line 3: the text is empty");
    }

    #[test]
    fn agnews_rows_reject_bad_classes_and_field_counts() {
        let records = parse_csv("1,a,b\nx,a,b\n", "t.csv").unwrap();
        let err = agnews_rows(records, TextField::Both, "t.csv")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("t.csv, line 2: bad label \"x\""), "{err}");
        let records = parse_csv("0,a,b\n", "t.csv").unwrap();
        assert!(agnews_rows(records, TextField::Both, "t.csv").is_err());
        let records = parse_csv("1,a,b\n2,a,b,c\n", "t.csv").unwrap();
        let err = agnews_rows(records, TextField::Both, "t.csv")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("got 4"), "{err}");
    }

    #[test]
    fn tsv_rows_split_at_the_first_tab() {
        let rows = parse_tsv("label\ttext\nspam\tWin\tnow\r\n\nham\t see you \n", "t.tsv").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].label.as_str(), rows[0].text.as_str()),
            ("spam", "Win\tnow")
        );
        assert_eq!((rows[1].line, rows[1].text.as_str()), (4, "see you"));
        let err = parse_tsv("spam\tok\nno tab here\n", "t.tsv")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("t.tsv, line 2:"), "{err}");
        let err = parse_tsv("spam\t  \n", "t.tsv").unwrap_err().to_string();
        assert_eq!(err, "t.tsv, line 1: the text is empty");
    }

    #[test]
    fn labels_map_by_number_or_name() {
        let rows = parse_tsv("b\tx\na\ty\nb\tz\n", "t.tsv").unwrap();
        let names = infer_labels(&rows, LabelKind::Name);
        assert_eq!(names, ["a", "b"]);
        let labelled = assign_labels(rows, LabelKind::Name, &names, "t.tsv").unwrap();
        let classes: Vec<usize> = labelled.examples.iter().map(|e| e.label).collect();
        assert_eq!(classes, [1, 0, 1]);

        let rows = parse_tsv("c\tx\n", "v.tsv").unwrap();
        let err = assign_labels(rows, LabelKind::Name, &names, "v.tsv")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "v.tsv, line 1: bad label \"c\": the known labels are a, b"
        );

        let rows = agnews_rows(
            parse_csv("3,t,d\n1,t,d\n", "t.csv").unwrap(),
            TextField::Both,
            "t.csv",
        )
        .unwrap();
        let names = infer_labels(&rows, LabelKind::ClassNumber);
        assert_eq!(names, ["1", "2", "3"]);
        let labelled =
            assign_labels(rows.clone(), LabelKind::ClassNumber, &names, "t.csv").unwrap();
        assert_eq!(labelled.examples[0].label, 2);
        let two = ["a".to_string(), "b".to_string()];
        let err = assign_labels(rows, LabelKind::ClassNumber, &two, "t.csv")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 1") && err.contains("a class from 1 to 2"),
            "{err}"
        );
    }

    #[test]
    fn the_format_follows_the_extension() {
        assert_eq!(
            LabelledFormat::detect(Path::new("a/train.CSV")),
            LabelledFormat::AgNews
        );
        assert_eq!(
            LabelledFormat::detect(Path::new("a/train.tsv")),
            LabelledFormat::Tsv
        );
        assert_eq!(
            "agnews".parse::<LabelledFormat>(),
            Ok(LabelledFormat::AgNews)
        );
        assert!("xml".parse::<LabelledFormat>().is_err());
        assert_eq!("both".parse::<TextField>(), Ok(TextField::Both));
    }
}
