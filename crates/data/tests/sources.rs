//! Where the text comes from: a pre-filled Hugging Face Hub cache (no network), and the default book.

use std::path::PathBuf;

use seqlab_data::{default_book, load_corpus, HubFile};

/// hf-hub's cache layout: `datasets--OWNER--NAME/refs/REVISION` holds a commit hash, and
/// `datasets--OWNER--NAME/snapshots/COMMIT/PATH` the file.
#[test]
fn a_hub_file_in_the_cache_is_read_without_network() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("datasets--someone--books");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let snapshot = repo.join("snapshots").join(commit).join("texts");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::write(
        snapshot.join("tale.txt"),
        "\u{feff}Once upon a time\r\nthe end\r\n",
    )
    .unwrap();
    // The only test of this binary that touches the environment.
    std::env::set_var("HF_HUB_CACHE", cache.path());
    // No server answers here: only the cache can give the file.
    std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:9");

    let spec = "hf://datasets/someone/books/texts/tale.txt";
    assert_eq!(
        HubFile::parse(spec).unwrap().cached(),
        Some(snapshot.join("tale.txt"))
    );
    let corpus = load_corpus(&[spec.to_string()]).unwrap();
    assert_eq!(corpus.text, "Once upon a time\nthe end\n");
    // A file that is not cached needs the hub; the error names the address.
    let error = load_corpus(&["hf://datasets/someone/books/other.txt".to_string()]).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("hf://datasets/someone/books/other.txt"),
        "{error}"
    );
}

fn registry_book() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    std::fs::read_dir(home.join("registry/src"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("esaxx-rs-0.1.10/data/eighty.txt"))
        .find(|p| p.is_file())
}

#[test]
fn the_default_book_comes_from_the_cargo_registry_without_its_licence_boilerplate() {
    if registry_book().is_none() {
        eprintln!(
            "skipped: no esaxx-rs-0.1.10 in the cargo registry (the default book's offline source)"
        );
        return;
    }
    let book = default_book().unwrap();
    assert!(
        book.description.contains("Around the World in 80 Days"),
        "{}",
        book.description
    );
    assert!(book.text.contains("Phileas Fogg"));
    assert!(!book.text.contains("*** START OF") && !book.text.contains("*** END OF"));
    assert!(!book.text.contains('\r') && !book.text.starts_with('\u{feff}'));
    assert!(book.text.len() > 300_000, "{}", book.text.len());
}
