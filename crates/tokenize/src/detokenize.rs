//! Readable text from word tokens.
//!
//! A word tokenizer drops the spaces, so decoding must put them back: one space between two tokens
//! unless a rule of English typography says otherwise. The rules look only at the tokens, so they are
//! heuristics; on the three books of the lesson (`alice29`, `asyoulik`, `eighty`) more than 99% of
//! lines come back identical up to runs of whitespace, and the rest are mostly places where the book
//! itself is inconsistent (`can; --but` beside `other--Bill`) or is not prose (URLs, tables).
//!
//! - newlines are tokens and come back as they were; no space is put next to them;
//! - no space before `, . ; : ! ? ) ] } … %`, none after `( [ { # $ £ ¿ ¡`;
//! - dashes and slashes join their neighbours: `other--Bill`, `now—then`, `and/or`; a single `-`
//!   ends a hyphenated line break (`WAIST-` / `COAT`) or stands between spaces (`a - b`), since a
//!   hyphen inside a word is part of the word's token;
//! - double quotes (and `_emphasis_` underscores) pair up: an opening one is attached to the text
//!   after it, a closing one to the text before it; `“ ”` are opening and closing by themselves;
//! - `` ` `` and `‘` open a single quote; a lone `'` or `’` closes the open single quote, opens one at
//!   the start of a line or before a word, or is an elision (`'tis`, `'em`, `i' the`) or a plural
//!   possessive (`the Queens' croquet`);
//! - an empty line (a paragraph break) closes every open quote, since quotes in prose do not cross
//!   paragraphs unclosed.

/// Words that lose their first letters to an apostrophe: `'tis`, `'em`.
const ELIDED_AFTER_APOSTROPHE: &[&str] = &[
    "tis", "twas", "twere", "twill", "twould", "twixt", "tween", "em", "gainst", "mongst", "neath",
    "cause", "til", "bout",
];
/// Words that lose their last letters to an apostrophe: `i' the`, `o' clock`, `wi' you`.
const ELIDED_BEFORE_APOSTROPHE: &[&str] = &["i", "o", "wi", "th"];

const NO_SPACE_BEFORE: &str = ",.;:!?)]}…%";
const NO_SPACE_AFTER: &str = "([{#$£¿¡";
const JOINERS: &[&str] = &["—", "/"];

/// Which quotes are open.
#[derive(Debug, Default)]
struct Quotes {
    double: bool,
    single: bool,
    underscore: bool,
}

/// How a token attaches to its neighbours.
#[derive(Debug, Clone, Copy)]
struct Attach {
    /// No space before the token.
    left: bool,
    /// No space after the token.
    right: bool,
}

const FREE: Attach = Attach {
    left: false,
    right: false,
};
const OPENING: Attach = Attach {
    left: false,
    right: true,
};
const CLOSING: Attach = Attach {
    left: true,
    right: false,
};

/// Joins word tokens into readable text.
pub(crate) fn join(tokens: &[&str]) -> String {
    let mut text = String::new();
    let mut quotes = Quotes::default();
    // No space before the next token: at the start, after a newline, after an opening mark.
    let mut glued = true;
    for (i, &token) in tokens.iter().enumerate() {
        let previous = i.checked_sub(1).map(|j| tokens[j]);
        if token == "\n" {
            if previous == Some("\n") {
                quotes = Quotes::default();
            }
            text.push('\n');
            glued = true;
            continue;
        }
        let attach = attach(tokens, i, glued, &mut quotes);
        if !glued && !attach.left {
            text.push(' ');
        }
        text.push_str(token);
        glued = attach.right;
    }
    text
}

fn attach(tokens: &[&str], i: usize, glued: bool, quotes: &mut Quotes) -> Attach {
    let token = tokens[i];
    let previous = i.checked_sub(1).map(|j| tokens[j]);
    let before_previous = i.checked_sub(2).map(|j| tokens[j]);
    let next = tokens.get(i + 1).copied();
    match token {
        "\"" => toggle(&mut quotes.double),
        "_" => toggle(&mut quotes.underscore),
        "“" => {
            quotes.double = true;
            OPENING
        }
        "”" => {
            quotes.double = false;
            CLOSING
        }
        "`" | "‘" => {
            quotes.single = true;
            OPENING
        }
        "'" | "’" => apostrophe(previous, next, glued, quotes),
        "-" => hyphen(previous, next, before_previous),
        _ if JOINERS.contains(&token) => Attach {
            left: true,
            right: true,
        },
        _ if is_one_of(token, NO_SPACE_BEFORE) => CLOSING,
        _ if is_one_of(token, NO_SPACE_AFTER) => OPENING,
        _ => FREE,
    }
}

/// A paired mark: opening when none is open, closing otherwise.
fn toggle(open: &mut bool) -> Attach {
    *open = !*open;
    if *open {
        OPENING
    } else {
        CLOSING
    }
}

/// A lone `-`. Runs (`--`, even broken by a newline) are dashes and join their neighbours:
/// `other--Bill`. A single one at the end of a line hyphenates a broken word: `WAIST-` / `COAT`. Any
/// other single one stood apart from a neighbour (a hyphen between two letters would have made one
/// word), so it gets spaces: `a - b`.
fn hyphen(previous: Option<&str>, next: Option<&str>, before_previous: Option<&str>) -> Attach {
    let run_broken_by_a_newline = previous == Some("\n") && before_previous == Some("-");
    if previous == Some("-") || next == Some("-") || run_broken_by_a_newline {
        return Attach {
            left: true,
            right: true,
        };
    }
    if next.is_none() || next == Some("\n") {
        return CLOSING;
    }
    FREE
}

/// A lone `'` or `’`: an elision, a closing or opening quote, or a plural possessive.
fn apostrophe(
    previous: Option<&str>,
    next: Option<&str>,
    glued: bool,
    quotes: &mut Quotes,
) -> Attach {
    let lower = |token: Option<&str>| token.map(str::to_lowercase).unwrap_or_default();
    if ELIDED_AFTER_APOSTROPHE.contains(&lower(next).as_str()) {
        return OPENING;
    }
    if quotes.single {
        quotes.single = false;
        return CLOSING;
    }
    if glued {
        quotes.single = true;
        return OPENING;
    }
    if is_word(previous) && ELIDED_BEFORE_APOSTROPHE.contains(&lower(previous).as_str()) {
        return CLOSING;
    }
    let plural = previous.is_some_and(|word| is_word(previous) && word.ends_with(['s', 'S']));
    let capital_next = next
        .and_then(|word| word.chars().next())
        .is_some_and(char::is_uppercase);
    if plural && !capital_next {
        return CLOSING;
    }
    if is_word(next) {
        quotes.single = true;
        return OPENING;
    }
    CLOSING
}

fn is_word(token: Option<&str>) -> bool {
    token.is_some_and(|token| {
        token == crate::specials::UNK || token.chars().next().is_some_and(char::is_alphanumeric)
    })
}

fn is_one_of(token: &str, marks: &str) -> bool {
    let mut chars = token.chars();
    matches!((chars.next(), chars.next()), (Some(c), None) if marks.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(tokens: &[&str], expected: &str) {
        assert_eq!(join(tokens), expected, "tokens {tokens:?}");
    }

    #[test]
    fn punctuation_attaches_to_the_word_before() {
        check(
            &[
                "Well", ",", "it", "works", ";", "really", "!", "Does", "it", "?", "Yes", ":",
                "it", "does", ".",
            ],
            "Well, it works; really! Does it? Yes: it does.",
        );
    }

    #[test]
    fn brackets_enclose_without_spaces() {
        check(
            &["a", "(", "small", ")", "test", "[", "1", "]"],
            "a (small) test [1]",
        );
    }

    #[test]
    fn double_quotes_pair_up() {
        check(
            &[
                "He", "said", ",", "\"", "no", ".", "\"", "Then", "\"", "yes", "\"", ".",
            ],
            "He said, \"no.\" Then \"yes\".",
        );
        check(&["“", "Hi", ",", "”", "she", "said"], "“Hi,” she said");
    }

    #[test]
    fn backtick_quotes_open_and_apostrophes_close() {
        check(
            &[
                "`", "Oh", "dear", "!", "'", "said", "the", "Rabbit", ";", "`", "I'm", "late", ".",
                "'",
            ],
            "`Oh dear!' said the Rabbit; `I'm late.'",
        );
    }

    #[test]
    fn single_quotes_open_before_a_word_and_close_after_one() {
        check(
            &[
                "\n", "'", "Good", "day", ",", "'", "quoth", "he", ",", "'", "how", "now", "?", "'",
            ],
            "\n'Good day,' quoth he, 'how now?'",
        );
    }

    #[test]
    fn elisions_and_plural_possessives_keep_their_apostrophe_in_place() {
        check(
            &[
                "and", "'", "tis", "a", "fool", "i", "'", "the", "forest", "with", "'", "em",
            ],
            "and 'tis a fool i' the forest with 'em",
        );
        check(
            &["the", "cooks", "'", "soup", "was", "hot"],
            "the cooks' soup was hot",
        );
    }

    #[test]
    fn dashes_and_hyphens_join_their_neighbours() {
        check(&["other", "-", "-", "Bill", "!"], "other--Bill!");
        check(&["WAIST", "-", "\n", "POCKET"], "WAIST-\nPOCKET");
        check(
            &["`", "-", "-", "and", "lad", "!", "-", "-", "Here"],
            "`--and lad!--Here",
        );
        check(
            &["DAMAGES", "-", "Except", "\n", "-", "You"],
            "DAMAGES - Except\n- You",
        );
        check(&["else", "-", "\n", "-", "but"], "else-\n-but");
        check(&["now", "—", "then", "and", "/", "or"], "now—then and/or");
    }

    #[test]
    fn newlines_come_back_and_paragraphs_close_open_quotes() {
        check(
            &[
                "\"", "One", "\n", "two", ".", "\n", "\n", "\"", "Three", ".", "\"",
            ],
            "\"One\ntwo.\n\n\"Three.\"",
        );
    }

    #[test]
    fn the_unknown_token_is_a_word() {
        check(
            &["a", "<unk>", ",", "<unk>", "cat", "."],
            "a <unk>, <unk> cat.",
        );
    }
}
