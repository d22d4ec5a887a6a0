//! Reading a request's JSON fields, each error naming its field.
//!
//! Bodies are parsed as a JSON object first and then field by field, rather than into a typed struct with
//! serde, so that every mistake is reported as the API reports it: with the field's name (`temperature must
//! be at least 0`) and not a position in the text. `null` reads as absent, as OpenAI's clients send it.
//! Fields this server does not know are ignored, as OpenAI-style servers do.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// A request body: a JSON object.
#[derive(Debug)]
pub struct Fields(Map<String, Value>);

impl Fields {
    /// The fields of `body`, which must be an object.
    pub fn new(body: Value) -> Result<Fields, ApiError> {
        match body {
            Value::Object(map) => Ok(Fields(map)),
            other => Err(ApiError::invalid(
                "body",
                format!("the body must be a JSON object, not {}", kind(&other)),
            )),
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// An optional string.
    pub fn string(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(wrong(name, "a string", other)),
        }
    }

    /// A string or an array of strings (at least one), as a list.
    pub fn strings(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(wrong(name, "a string or an array of strings", other)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(Value::Array(_)) => Err(ApiError::invalid(
                name,
                format!("{name} is an empty array; give at least one string"),
            )),
            Some(other) => Err(wrong(name, "a string or an array of strings", other)),
        }
    }

    /// An optional finite number within `[min, max]`; `min_open` excludes `min` itself.
    pub fn number(
        &self,
        name: &str,
        min: f64,
        min_open: bool,
        max: f64,
    ) -> Result<Option<f64>, ApiError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let Some(x) = value.as_f64() else {
            return Err(wrong(name, "a number", value));
        };
        let low = if min_open { x <= min } else { x < min };
        if !x.is_finite() || low || x > max {
            let range = match (min_open, max.is_finite()) {
                (true, true) => format!("in ({min}, {max}]"),
                (false, true) => format!("in [{min}, {max}]"),
                (_, false) => format!("at least {min}"),
            };
            return Err(ApiError::invalid(
                name,
                format!("{name} is {x}; it must be {range}"),
            ));
        }
        Ok(Some(x))
    }

    /// An optional whole number within `[min, max]`.
    pub fn integer(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let Some(n) = value.as_u64() else {
            return Err(match value.as_i64() {
                Some(n) => {
                    ApiError::invalid(name, format!("{name} is {n}; it must be in [{min}, {max}]"))
                }
                None => wrong(name, "a whole number", value),
            });
        };
        if n < min || n > max {
            return Err(ApiError::invalid(
                name,
                format!("{name} is {n}; it must be in [{min}, {max}]"),
            ));
        }
        Ok(Some(n))
    }

    /// An optional boolean.
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(wrong(name, "true or false", other)),
        }
    }

    /// Refuses a field whose value asks for something this server does not do.
    pub fn unsupported(&self, name: &str, default: &Value) -> Result<(), ApiError> {
        match self.get(name) {
            Some(v) if v != default => Err(ApiError::invalid(
                name,
                format!("{name} {v} is not supported by this server"),
            )),
            _ => Ok(()),
        }
    }
}

fn wrong(name: &str, expected: &str, got: &Value) -> ApiError {
    ApiError::invalid(
        name,
        format!("{name} must be {expected}, not {}", kind(got)),
    )
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
