//! Reading text files the way every seqlab pipeline reads them.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Reads one UTF-8 text file: a leading byte-order mark is dropped and `\r\n` becomes `\n`.
///
/// Errors name the file: [`Error::Read`] when it cannot be read, [`Error::NotUtf8`] (with the line of
/// the first bad byte) when it is not UTF-8, and [`Error::EmptyFile`] when it is empty or holds only
/// whitespace — an empty training or validation file is always a mistake.
pub fn read_text(path: &Path) -> Result<String> {
    let text = read_utf8(path)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if text.trim().is_empty() {
        return Err(Error::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(text.replace("\r\n", "\n"))
}

/// Reads a file that must be UTF-8, as it is; errors name the file.
pub(crate) fn read_utf8(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|error| Error::Read {
        path: path.to_path_buf(),
        error,
    })?;
    String::from_utf8(bytes).map_err(|error| {
        let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
        Error::NotUtf8 {
            path: path.to_path_buf(),
            line: 1 + valid.iter().filter(|&&byte| byte == b'\n').count(),
        }
    })
}

/// Reads several text files with [`read_text`] and joins them, in order, into one corpus.
///
/// A newline separates two files when the first does not end with one, so that the last word of a
/// file never runs into the first word of the next.
pub fn read_corpus(paths: &[PathBuf]) -> Result<String> {
    let mut corpus = String::new();
    for path in paths {
        if !corpus.is_empty() && !corpus.ends_with('\n') {
            corpus.push('\n');
        }
        corpus.push_str(&read_text(path)?);
    }
    Ok(corpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn bom_and_crlf_are_normalised() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a.txt", b"\xef\xbb\xbfone\r\ntwo\r\n");
        assert_eq!(read_text(&path).unwrap(), "one\ntwo\n");
    }

    #[test]
    fn files_are_joined_with_a_newline_between_them() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.txt", b"end");
        let b = write(dir.path(), "b.txt", b"start\n");
        let c = write(dir.path(), "c.txt", b"last");
        assert_eq!(read_corpus(&[a, b, c]).unwrap(), "end\nstart\nlast");
    }

    #[test]
    fn not_utf8_names_the_file_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "latin1.txt", b"ok\nstill ok\ncaf\xe9\n");
        let error = read_text(&path).unwrap_err();
        assert!(matches!(error, Error::NotUtf8 { line: 3, .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains("latin1.txt") && message.contains("line 3"),
            "{message}"
        );
    }

    #[test]
    fn empty_and_whitespace_only_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [
            ("empty.txt", &b""[..]),
            ("blank.txt", b" \r\n\t\n"),
            ("bom.txt", b"\xef\xbb\xbf"),
        ] {
            let path = write(dir.path(), name, bytes);
            let error = read_text(&path).unwrap_err();
            assert!(matches!(error, Error::EmptyFile { .. }), "{error:?}");
            assert!(error.to_string().contains(name), "{error}");
        }
    }

    #[test]
    fn a_missing_file_names_the_file() {
        let error = read_corpus(&[PathBuf::from("no/such/corpus.txt")]).unwrap_err();
        assert!(matches!(error, Error::Read { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with("cannot read no/such/corpus.txt: "),
            "{error}"
        );
    }
}
