//! Parquet files as tables: read with the parquet crate's row API (only the columns asked for), written the
//! way the hub's converter writes them.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::{Compression, ConvertedType, LogicalType, Repetition, Type as PhysicalType};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::SerializedFileReader;
use parquet::file::writer::SerializedFileWriter;
use parquet::record::{Field, Row};
use parquet::schema::types::{Type, TypePtr};

use crate::error::{one_line, Error, Result};
use crate::table::{Column, Table, Values};

/// What a column gives, decided from its parquet type.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Bytes,
    /// A struct with a `bytes` field: the hub's `Image` (and `Audio`) feature.
    Image,
    List,
}

/// A column asked for, found in the schema.
struct Wanted {
    name: String,
    /// Field names from the top level down: `["translation", "en"]`.
    path: Vec<String>,
    kind: Kind,
    class_names: Option<Vec<String>>,
}

/// Reads `wanted` columns (all top-level columns when empty) of a parquet file.
///
/// The `parquet` crate (58) panics on some corrupt files instead of returning an error (found by the
/// `parquet` fuzz target: "column start and length should not be negative"): such a panic is caught, kept off
/// stderr, and returned as [`Error::Parquet`] naming the file.
pub(crate) fn read_parquet(path: &Path, wanted: &[&str]) -> Result<Vec<Column>> {
    use std::sync::Mutex;
    static HOOK: Mutex<()> = Mutex::new(());
    let _guard = HOOK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(|| read_parquet_unguarded(path, wanted));
    std::panic::set_hook(previous);
    result.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the reader gave up".to_string());
        Err(Error::Parquet {
            path: path.to_path_buf(),
            reason: format!("the file is corrupt ({})", one_line(message)),
        })
    })
}

fn read_parquet_unguarded(path: &Path, wanted: &[&str]) -> Result<Vec<Column>> {
    let source = path.display().to_string();
    let parquet_error = |e: parquet::errors::ParquetError| Error::Parquet {
        path: path.to_path_buf(),
        reason: one_line(e),
    };
    let file = File::open(path).map_err(|error| Error::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let reader = SerializedFileReader::new(file).map_err(parquet_error)?;
    let metadata = reader.metadata().file_metadata();
    let schema = metadata.schema();
    let mut class_names = hub_class_names(metadata.key_value_metadata());
    let names: Vec<String> = if wanted.is_empty() {
        column_names(schema)
            .into_iter()
            .filter(|name| find(schema, name).is_some_and(|(_, f)| kind_of(f).is_ok()))
            .collect()
    } else {
        wanted.iter().map(|s| s.to_string()).collect()
    };
    let mut columns = Vec::with_capacity(names.len());
    for name in names {
        let (path, field) = find(schema, &name).ok_or_else(|| Error::MissingColumn {
            source_name: source.clone(),
            column: name.clone(),
            available: column_names(schema).join(", "),
            flag: None,
        })?;
        let kind = kind_of(field).map_err(|reason| Error::BadColumn {
            source_name: source.clone(),
            column: name.clone(),
            reason,
        })?;
        let names = (path.len() == 1 && field.is_primitive())
            .then(|| class_names.remove(&path[0]))
            .flatten();
        columns.push(Wanted {
            name,
            path,
            kind,
            class_names: names,
        });
    }
    // Only the top-level fields that hold a wanted column are decoded.
    let projected: Vec<TypePtr> = schema
        .get_fields()
        .iter()
        .filter(|f| columns.iter().any(|c| c.path[0] == f.name()))
        .cloned()
        .collect();
    let projection = Type::group_type_builder(schema.name())
        .with_fields(projected)
        .build()
        .map_err(parquet_error)?;
    let mut values: Vec<Values> = columns
        .iter()
        .map(|c| match c.kind {
            Kind::Text => Values::Text(Vec::new()),
            Kind::Bytes | Kind::Image => Values::Bytes(Vec::new()),
            Kind::List => Values::Lists(Vec::new()),
        })
        .collect();
    let rows = reader
        .get_row_iter(Some(projection))
        .map_err(parquet_error)?;
    for (index, row) in rows.enumerate() {
        let row = row.map_err(parquet_error)?;
        for (column, values) in columns.iter().zip(values.iter_mut()) {
            let field = lookup(&row, &column.path).unwrap_or(&Field::Null);
            push(values, field, column).map_err(|reason| Error::BadColumn {
                source_name: source.clone(),
                column: column.name.clone(),
                reason: format!("{reason} in row {}", index + 1),
            })?;
        }
    }
    Ok(columns
        .into_iter()
        .zip(values)
        .map(|(column, values)| {
            let out = Column::new(column.name, values);
            match column.class_names {
                Some(names) => out.with_class_names(names),
                None => out,
            }
        })
        .collect())
}

/// The schema field named `name`: a top-level field, else `a.b` as field `b` of struct `a`.
fn find<'a>(schema: &'a Type, name: &str) -> Option<(Vec<String>, &'a Type)> {
    if let Some(field) = schema.get_fields().iter().find(|f| f.name() == name) {
        return Some((vec![name.to_string()], field));
    }
    let mut field = schema;
    let mut path = Vec::new();
    for part in name.split('.') {
        if !field.is_group() {
            return None;
        }
        field = field.get_fields().iter().find(|f| f.name() == part)?;
        path.push(part.to_string());
    }
    Some((path, field))
}

/// Top-level column names, with `a.b` for the fields of plain structs, for messages.
fn column_names(schema: &Type) -> Vec<String> {
    let mut names = Vec::new();
    for field in schema.get_fields() {
        names.push(field.name().to_string());
        if kind_of(field).is_err() && field.is_group() {
            for child in field.get_fields() {
                names.push(format!("{}.{}", field.name(), child.name()));
            }
        }
    }
    names
}

fn kind_of(field: &Type) -> std::result::Result<Kind, String> {
    let info = field.get_basic_info();
    if field.is_primitive() {
        let binary = matches!(
            field.get_physical_type(),
            PhysicalType::BYTE_ARRAY | PhysicalType::FIXED_LEN_BYTE_ARRAY
        );
        let text = matches!(
            info.logical_type_ref(),
            Some(LogicalType::String | LogicalType::Enum | LogicalType::Json)
        ) || matches!(
            info.converted_type(),
            ConvertedType::UTF8 | ConvertedType::ENUM | ConvertedType::JSON
        );
        return Ok(if binary && !text {
            Kind::Bytes
        } else {
            Kind::Text
        });
    }
    if matches!(info.logical_type_ref(), Some(LogicalType::List))
        || info.converted_type() == ConvertedType::LIST
    {
        return Ok(Kind::List);
    }
    if field.get_fields().iter().any(|f| f.name() == "bytes") {
        return Ok(Kind::Image);
    }
    let children: Vec<&str> = field.get_fields().iter().map(|f| f.name()).collect();
    Err(format!(
        "is a struct of fields {}: name one of them, as {}.{}",
        children.join(", "),
        field.name(),
        children.first().unwrap_or(&"FIELD")
    ))
}

/// The field at `path` of a row.
fn lookup<'a>(row: &'a Row, path: &[String]) -> Option<&'a Field> {
    let (first, rest) = path.split_first()?;
    let field = row
        .get_column_iter()
        .find(|(name, _)| *name == first)
        .map(|(_, field)| field)?;
    match (rest.is_empty(), field) {
        (true, field) => Some(field),
        (false, Field::Group(row)) => lookup(row, rest),
        (false, _) => None,
    }
}

fn push(values: &mut Values, field: &Field, column: &Wanted) -> std::result::Result<(), String> {
    match values {
        Values::Text(values) => values.push(text(field, column.class_names.as_deref())),
        Values::Lists(values) => match field {
            Field::ListInternal(list) => {
                values.push(list.elements().iter().map(|f| text(f, None)).collect())
            }
            Field::Null => values.push(Vec::new()),
            other => return Err(format!("holds {other} where a list was expected")),
        },
        Values::Bytes(values) => {
            let field = match (column.kind, field) {
                (Kind::Image, Field::Group(image)) => {
                    let bytes = lookup(image, &["bytes".to_string()]).unwrap_or(&Field::Null);
                    if matches!(bytes, Field::Null) {
                        return Err(match lookup(image, &["path".to_string()]) {
                            Some(Field::Str(path)) => {
                                format!("holds only a file name ({path}), not the image's bytes")
                            }
                            _ => "holds no image".to_string(),
                        });
                    }
                    bytes
                }
                (_, field) => field,
            };
            match field {
                Field::Bytes(bytes) => values.push(bytes.data().to_vec()),
                Field::Str(text) => values.push(text.as_bytes().to_vec()),
                Field::Null => return Err("is empty".to_string()),
                other => return Err(format!("holds {other} where bytes were expected")),
            }
        }
    }
    Ok(())
}

/// A field as text; an integer class id as its class name when the id is in range.
fn text(field: &Field, class_names: Option<&[String]>) -> String {
    let id = match *field {
        Field::Byte(v) => Some(i64::from(v)),
        Field::Short(v) => Some(i64::from(v)),
        Field::Int(v) => Some(i64::from(v)),
        Field::Long(v) => Some(v),
        Field::UByte(v) => Some(i64::from(v)),
        Field::UShort(v) => Some(i64::from(v)),
        Field::UInt(v) => Some(i64::from(v)),
        Field::ULong(v) => i64::try_from(v).ok(),
        _ => None,
    };
    if let Some(id) = id {
        let name = class_names.and_then(|names| names.get(usize::try_from(id).ok()?));
        return name.cloned().unwrap_or_else(|| id.to_string());
    }
    match field {
        Field::Null => String::new(),
        Field::Str(s) => s.clone(),
        Field::Bytes(b) => String::from_utf8_lossy(b.data()).into_owned(),
        other => other.to_string(),
    }
}

/// The class names of `ClassLabel` columns, from the `huggingface` metadata the hub's files carry:
/// `{"info": {"features": {"label": {"_type": "ClassLabel", "names": [...]}}}}`.
fn hub_class_names(metadata: Option<&Vec<KeyValue>>) -> HashMap<String, Vec<String>> {
    let Some(json) = metadata
        .into_iter()
        .flatten()
        .find(|kv| kv.key == "huggingface")
        .and_then(|kv| kv.value.as_deref())
        .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
    else {
        return HashMap::new();
    };
    let Some(features) = json.pointer("/info/features").and_then(|f| f.as_object()) else {
        return HashMap::new();
    };
    features
        .iter()
        .filter(|(_, feature)| feature["_type"] == "ClassLabel")
        .filter_map(|(name, feature)| {
            let names = feature["names"]
                .as_array()?
                .iter()
                .map(|n| n.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()?;
            Some((name.clone(), names))
        })
        .collect()
}

/// One leaf column of the file being written, in schema order.
enum Leaf {
    Strings {
        values: Vec<ByteArray>,
        def: Vec<i16>,
        rep: Option<Vec<i16>>,
    },
    Ints {
        values: Vec<i64>,
        def: Vec<i16>,
    },
}

fn string_field(name: &str) -> Result<TypePtr> {
    Ok(Arc::new(
        Type::primitive_type_builder(name, PhysicalType::BYTE_ARRAY)
            .with_repetition(Repetition::OPTIONAL)
            .with_logical_type(Some(LogicalType::String))
            .build()
            .map_err(|e| write_error(name, e))?,
    ))
}

fn write_error(what: &str, error: impl std::fmt::Display) -> Error {
    Error::BadColumn {
        source_name: "parquet writer".to_string(),
        column: what.to_string(),
        reason: format!("cannot be written: {}", one_line(error)),
    }
}

/// The schema field and leaves of one top-level column (`columns` share the struct name when nested).
fn top_level(name: &str, columns: &[&Column]) -> Result<(TypePtr, Vec<Leaf>)> {
    let strings = |values: Vec<ByteArray>, def: i16| Leaf::Strings {
        def: vec![def; values.len()],
        values,
        rep: None,
    };
    if let [column] = columns {
        if column.name() == name {
            return match (column.values(), column.class_names()) {
                (Values::Text(values), Some(names)) => {
                    let ids = values
                        .iter()
                        .map(|v| {
                            names
                                .iter()
                                .position(|n| n == v)
                                .map(|i| i as i64)
                                .ok_or_else(|| {
                                    write_error(
                                        name,
                                        format!("\"{v}\" is not one of its class names"),
                                    )
                                })
                        })
                        .collect::<Result<Vec<i64>>>()?;
                    let field = Type::primitive_type_builder(name, PhysicalType::INT64)
                        .with_repetition(Repetition::OPTIONAL)
                        .build()
                        .map_err(|e| write_error(name, e))?;
                    let def = vec![1; ids.len()];
                    Ok((Arc::new(field), vec![Leaf::Ints { values: ids, def }]))
                }
                (Values::Text(values), None) => Ok((
                    string_field(name)?,
                    vec![strings(
                        values.iter().map(|v| v.as_str().into()).collect(),
                        1,
                    )],
                )),
                (Values::Bytes(values), _) => {
                    let group = Type::group_type_builder(name)
                        .with_repetition(Repetition::OPTIONAL)
                        .with_fields(vec![
                            Arc::new(
                                Type::primitive_type_builder("bytes", PhysicalType::BYTE_ARRAY)
                                    .with_repetition(Repetition::OPTIONAL)
                                    .build()
                                    .map_err(|e| write_error(name, e))?,
                            ),
                            string_field("path")?,
                        ])
                        .build()
                        .map_err(|e| write_error(name, e))?;
                    let bytes = strings(values.iter().map(|v| v.clone().into()).collect(), 2);
                    // The path is null (definition level 1: the struct is there, its path is not).
                    let path = Leaf::Strings {
                        values: Vec::new(),
                        def: vec![1; values.len()],
                        rep: None,
                    };
                    Ok((Arc::new(group), vec![bytes, path]))
                }
                (Values::Lists(lists), _) => {
                    let (mut values, mut def, mut rep) = (Vec::new(), Vec::new(), Vec::new());
                    for list in lists {
                        if list.is_empty() {
                            def.push(1);
                            rep.push(0);
                        }
                        for (i, element) in list.iter().enumerate() {
                            values.push(element.as_str().into());
                            def.push(3);
                            rep.push(i16::from(i > 0));
                        }
                    }
                    let item = Type::group_type_builder("list")
                        .with_repetition(Repetition::REPEATED)
                        .with_fields(vec![string_field("element")?])
                        .build()
                        .map_err(|e| write_error(name, e))?;
                    let group = Type::group_type_builder(name)
                        .with_repetition(Repetition::OPTIONAL)
                        .with_logical_type(Some(LogicalType::List))
                        .with_fields(vec![Arc::new(item)])
                        .build()
                        .map_err(|e| write_error(name, e))?;
                    let leaf = Leaf::Strings {
                        values,
                        def,
                        rep: Some(rep),
                    };
                    Ok((Arc::new(group), vec![leaf]))
                }
            };
        }
    }
    // Fields of a struct: `name.a`, `name.b`, text only.
    let mut fields = Vec::new();
    let mut leaves = Vec::new();
    for column in columns {
        let child = &column.name()[name.len() + 1..];
        let Values::Text(values) = column.values() else {
            return Err(write_error(
                column.name(),
                "only text fields of structs can be written",
            ));
        };
        fields.push(string_field(child)?);
        leaves.push(strings(
            values.iter().map(|v| v.as_str().into()).collect(),
            2,
        ));
    }
    let group = Type::group_type_builder(name)
        .with_repetition(Repetition::OPTIONAL)
        .with_fields(fields)
        .build()
        .map_err(|e| write_error(name, e))?;
    Ok((Arc::new(group), leaves))
}

pub(crate) fn write_parquet(table: &Table, path: &Path) -> Result<()> {
    // Top-level names in first-seen order, with the columns under each.
    let mut groups: Vec<(String, Vec<&Column>)> = Vec::new();
    for column in table.columns() {
        let top = column
            .name()
            .split('.')
            .next()
            .unwrap_or_default()
            .to_string();
        match groups.iter_mut().find(|(name, _)| *name == top) {
            Some((_, members)) => members.push(column),
            None => groups.push((top, vec![column])),
        }
    }
    let mut fields = Vec::new();
    let mut leaves = Vec::new();
    for (name, columns) in &groups {
        let (field, column_leaves) = top_level(name, columns)?;
        fields.push(field);
        leaves.extend(column_leaves);
    }
    let schema = Type::group_type_builder("schema")
        .with_fields(fields)
        .build()
        .map_err(|e| write_error("schema", e))?;
    let features: serde_json::Map<String, serde_json::Value> = table
        .columns()
        .iter()
        .filter_map(|c| {
            let names = c.class_names()?;
            Some((
                c.name().to_string(),
                serde_json::json!({"_type": "ClassLabel", "names": names}),
            ))
        })
        .collect();
    let metadata = serde_json::json!({"info": {"features": features}}).to_string();
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(vec![KeyValue::new("huggingface".into(), metadata)]))
        .build();
    let write = |error: std::io::Error| Error::Write {
        path: path.to_path_buf(),
        error,
    };
    let parquet = |e: parquet::errors::ParquetError| Error::Write {
        path: path.to_path_buf(),
        error: std::io::Error::other(one_line(e)),
    };
    let tmp = path.with_extension("parquet.tmp");
    let file = File::create(&tmp).map_err(write)?;
    let mut writer =
        SerializedFileWriter::new(file, Arc::new(schema), Arc::new(properties)).map_err(parquet)?;
    let mut group = writer.next_row_group().map_err(parquet)?;
    for leaf in &leaves {
        let Some(mut column) = group.next_column().map_err(parquet)? else {
            break;
        };
        match leaf {
            Leaf::Strings { values, def, rep } => {
                column
                    .typed::<ByteArrayType>()
                    .write_batch(values, Some(def), rep.as_deref())
            }
            Leaf::Ints { values, def } => {
                column
                    .typed::<Int64Type>()
                    .write_batch(values, Some(def), None)
            }
        }
        .map_err(parquet)?;
        column.close().map_err(parquet)?;
    }
    group.close().map_err(parquet)?;
    writer.close().map_err(parquet)?;
    std::fs::rename(&tmp, path).map_err(write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_trip_through_parquet_in_the_hubs_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0000.parquet");
        let table = Table::new(
            "written",
            vec![
                Column::text("id", vec!["1".into(), "2".into()]),
                Column::text("translation.en", vec!["Hello".into(), "Night".into()]),
                Column::text("translation.es", vec!["Hola".into(), "Noche".into()]),
                Column::text("label", vec!["Sports".into(), "World".into()])
                    .with_class_names(vec!["World".into(), "Sports".into()]),
                Column::bytes("image", vec![vec![1, 2, 3], vec![]]),
                Column::new(
                    "captions",
                    Values::Lists(vec![vec!["a".into(), "b".into()], vec![]]),
                ),
            ],
        )
        .unwrap();
        table.write_parquet(&path).unwrap();
        // All columns: a plain struct reads as its fields.
        let read = Table::read(&path, &[]).unwrap();
        let names: Vec<&str> = read.columns().iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "id",
                "translation.en",
                "translation.es",
                "label",
                "image",
                "captions"
            ]
        );
        // Named alone, the struct needs a field name; the error says which.
        let error = Table::read(&path, &["translation"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("is a struct of fields en, es: name one of them, as translation.en"),
            "{error}"
        );
        let read = Table::read(
            &path,
            &[
                "translation.es",
                "label",
                "image",
                "captions",
                "translation.en",
            ],
        )
        .unwrap();
        assert_eq!(read.text("translation.es").unwrap(), ["Hola", "Noche"]);
        assert_eq!(read.text("translation.en").unwrap(), ["Hello", "Night"]);
        assert_eq!(read.text("label").unwrap(), ["Sports", "World"]);
        assert_eq!(
            read.column("label").unwrap().class_names().unwrap(),
            ["World", "Sports"]
        );
        assert_eq!(read.bytes("image").unwrap(), [vec![1, 2, 3], vec![]]);
        assert_eq!(
            read.column("captions").unwrap().values(),
            &Values::Lists(vec![vec!["a".into(), "b".into()], vec![]])
        );
    }
}
