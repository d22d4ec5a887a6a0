//! The ranges of the command line's numeric settings, checked where they are parsed: a value out of range
//! is a usage error (one line naming the flag and the range, exit status 2), never a failure deep inside a
//! run.
//!
//! Each function gives a clap value parser; `what` names the setting in the message ("the dropout").

/// A parser of `T` that accepts the values `ok` keeps, else says `what` `range` (and the value).
fn checked<T>(
    what: &'static str,
    range: &'static str,
    ok: fn(&T) -> bool,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + std::fmt::Display + 'static,
{
    move |text: &str| {
        let value: T = text
            .trim()
            .parse()
            .map_err(|_| format!("{what} must be a number {range}, got {text:?}"))?;
        if ok(&value) {
            Ok(value)
        } else {
            Err(format!("{what} must be {range}, got {value}"))
        }
    }
}

/// A probability of dropping: in [0, 1).
pub fn probability(
    what: &'static str,
) -> impl Fn(&str) -> Result<f32, String> + Clone + Send + Sync + 'static {
    checked(what, "in [0, 1)", |p: &f32| (0.0..1.0).contains(p))
}

/// A share of the data: in [0, 1).
pub fn fraction(
    what: &'static str,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    checked(what, "in [0, 1)", |p: &f64| (0.0..1.0).contains(p))
}

/// A probability that may be 1: in [0, 1].
pub fn unit_interval(
    what: &'static str,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    checked(what, "in [0, 1]", |p: &f64| (0.0..=1.0).contains(p))
}

/// A mass of probability to keep: in (0, 1].
pub fn mass(
    what: &'static str,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    checked(what, "in (0, 1]", |p: &f64| *p > 0.0 && *p <= 1.0)
}

/// A positive, finite number.
pub fn positive(
    what: &'static str,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    checked(what, "a positive number", |v: &f64| {
        v.is_finite() && *v > 0.0
    })
}

/// A finite number, 0 or more.
pub fn non_negative(
    what: &'static str,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    checked(what, "0 or more", |v: &f64| v.is_finite() && *v >= 0.0)
}

/// A count of at least 1.
pub fn at_least_one(
    what: &'static str,
) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    checked(what, "at least 1", |n: &usize| *n >= 1)
}

/// A vocabulary size: room for the 4 special tokens and one more.
pub fn vocabulary(
    what: &'static str,
) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    checked(
        what,
        "at least 5 (the 4 special tokens and one more)",
        |n: &usize| *n >= 5,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_accept_their_values_and_name_the_setting_otherwise() {
        assert_eq!(probability("the dropout")("0.25"), Ok(0.25));
        let e = probability("the dropout")("1.5").unwrap_err();
        assert_eq!(e, "the dropout must be in [0, 1), got 1.5");
        assert!(probability("the dropout")("x")
            .unwrap_err()
            .contains("\"x\""));
        assert!(positive("the learning rate")("0").is_err());
        assert!(positive("the learning rate")("inf").is_err());
        assert!(positive("the learning rate")("NaN").is_err());
        assert_eq!(non_negative("the clip")("0"), Ok(0.0));
        assert_eq!(at_least_one("--hidden")("3"), Ok(3));
        assert!(at_least_one("--hidden")("0").is_err());
        assert!(mass("top-p")("0").is_err() && mass("top-p")("1").is_ok());
        assert!(unit_interval("p")("1").is_ok() && unit_interval("p")("1.01").is_err());
        assert!(vocabulary("v")("4").is_err() && vocabulary("v")("5").is_ok());
    }
}
