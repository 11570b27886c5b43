//! Parquet engine: the schema is in the file, so one pass over record batches decides each row
//! (null in any column, including a float NaN, or duplicate on parsed values) and writes the
//! survivors, batch by batch, to train and test Parquet files with the same schema.
//!
//! It reads what `pd.read_parquet` gives: the index columns named by pandas' schema metadata
//! are the DataFrame's index, not data, so they take no part in `dropna`/`drop_duplicates` (they
//! are still written out, so the outputs keep the index); a dictionary column (a pandas
//! Categorical) compares by its values; every value of a null-typed column is null; temporal
//! and decimal values compare by their stored value whatever their time zone or precision.

use std::collections::HashSet;
use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt64Type};
use arrow_array::{Array, ArrayRef, BooleanArray};
use arrow_buffer::{Buffer, NullBuffer};
use arrow_schema::{DataType, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::{ColumnInfo, EngineOutput, Limits, PrepareError, RowKey, Splitter, Verdict};
use super::{sha256_file, table_full};
use crate::config::{ColumnType, DatasetConfig};
use crate::event::Counts;

const BATCH: usize = 64 * 1024;

fn unreadable(e: impl std::fmt::Display) -> PrepareError {
    PrepareError::reject("unreadable", format!("unreadable Parquet: {e}"), None, None)
}

fn write_failed(p: &Path) -> impl Fn(parquet::errors::ParquetError) -> PrepareError + '_ {
    move |e| PrepareError::Io {
        path: p.to_owned(),
        source: std::io::Error::other(e),
    }
}

pub(super) fn prepare(
    cfg: &DatasetConfig,
    input: &Path,
    train: &Path,
    test: &Path,
    limits: &Limits,
) -> Result<EngineOutput, PrepareError> {
    let content_sha256 = sha256_file(input)?;
    let file = File::open(input).map_err(PrepareError::io(input))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(unreadable)?;
    let schema = builder.schema().clone();
    let index = pandas_index_columns(&schema);
    check_columns(cfg, &schema, &index)?;
    let data_cols: Vec<usize> = (0..schema.fields().len())
        .filter(|i| !index.contains(schema.field(*i).name()))
        .collect();
    let reader = builder.with_batch_size(BATCH).build().map_err(unreadable)?;

    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let open = |p: &Path| -> Result<ArrowWriter<File>, PrepareError> {
        let f = File::create(p).map_err(PrepareError::io(p))?;
        ArrowWriter::try_new(f, schema.clone(), Some(props.clone())).map_err(write_failed(p))
    };
    let mut train_w = open(train)?;
    let mut test_w = open(test)?;

    let mut split = Splitter::new(cfg.test_fraction, limits.max_table_bytes).map_err(table_full)?;
    let mut key = RowKey::default();
    let mut counts = Counts::default();
    for batch in reader {
        let batch = batch.map_err(unreadable)?;
        let cols = data_cols
            .iter()
            .map(|i| Column::new(batch.column(*i)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(unreadable)?;
        let n = batch.num_rows();
        let mut to_train = Vec::with_capacity(n);
        let mut to_test = Vec::with_capacity(n);
        for row in 0..n {
            counts.input += 1;
            key.clear();
            let complete = cols.iter().all(|c| c.push(row, &mut key));
            let verdict = if complete {
                Some(split.decide(key.hash()).map_err(table_full)?)
            } else {
                None
            };
            match verdict {
                None => counts.dropped_nulls += 1,
                Some(Verdict::Duplicate) => counts.dropped_duplicates += 1,
                Some(Verdict::Train) => counts.train += 1,
                Some(Verdict::Test) => counts.test += 1,
            }
            to_train.push(verdict == Some(Verdict::Train));
            to_test.push(verdict == Some(Verdict::Test));
        }
        for (mask, w, p) in [
            (to_train, &mut train_w, train),
            (to_test, &mut test_w, test),
        ] {
            let part = arrow_select::filter::filter_record_batch(&batch, &BooleanArray::from(mask))
                .map_err(|e| PrepareError::Io {
                    path: p.to_owned(),
                    source: std::io::Error::other(e),
                })?;
            if part.num_rows() > 0 {
                w.write(&part).map_err(write_failed(p))?;
            }
        }
    }
    train_w.close().map_err(write_failed(train))?;
    test_w.close().map_err(write_failed(test))?;
    let schema = data_cols
        .iter()
        .map(|i| {
            let f = schema.field(*i);
            ColumnInfo {
                name: f.name().clone(),
                dtype: f.data_type().to_string(),
            }
        })
        .collect();
    Ok(EngineOutput {
        content_sha256,
        schema,
        counts,
    })
}

/// The physical index columns pandas recorded in the schema's `pandas` metadata
/// (`index_columns`: a column name, or a description of a RangeIndex that is not stored).
fn pandas_index_columns(schema: &Schema) -> HashSet<String> {
    schema
        .metadata()
        .get("pandas")
        .and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok())
        .and_then(|v| {
            v.get("index_columns")?.as_array().map(|cols| {
                cols.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// The type a column's values have: a dictionary's value type, or the type itself.
fn value_type(dt: &DataType) -> &DataType {
    match dt {
        DataType::Dictionary(_, v) => value_type(v),
        other => other,
    }
}

fn check_columns(
    cfg: &DatasetConfig,
    schema: &Schema,
    index: &HashSet<String>,
) -> Result<(), PrepareError> {
    let mut seen = HashSet::new();
    for f in schema.fields() {
        if !seen.insert(f.name().as_str()) {
            return Err(PrepareError::reject(
                "duplicate_column",
                format!("the file names column {:?} twice", f.name()),
                Some(f.name()),
                None,
            ));
        }
        if !index.contains(f.name()) && nested(f.data_type()) {
            return Err(PrepareError::reject(
                "unsupported_type",
                format!(
                    "column {:?} holds nested values ({}); rows with them cannot be compared for duplicates (pandas cannot either)",
                    f.name(),
                    f.data_type()
                ),
                Some(f.name()),
                None,
            ));
        }
    }
    for col in cfg.required_columns() {
        let field = match schema.field_with_name(col) {
            Ok(f) if !index.contains(col) => f,
            _ => {
                let names: Vec<&str> = schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .filter(|n| !index.contains(*n))
                    .collect();
                return Err(PrepareError::reject(
                    "missing_column",
                    format!(
                        "required column {col:?} is missing (the file has: {})",
                        names.join(", ")
                    ),
                    Some(col),
                    None,
                ));
            }
        };
        let Some(declared) = cfg.columns.get(col) else {
            continue;
        };
        let dt = value_type(field.data_type());
        let ok = match declared {
            ColumnType::Int => dt.is_integer(),
            ColumnType::Float => dt.is_floating() || dt.is_integer(),
            ColumnType::Bool => dt == &DataType::Boolean,
            ColumnType::String => matches!(
                dt,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ),
        };
        if !ok {
            return Err(PrepareError::reject(
                "wrong_type",
                format!(
                    "column {col:?} must be {} but the file stores it as {}",
                    format!("{declared:?}").to_lowercase(),
                    field.data_type()
                ),
                Some(col),
                None,
            ));
        }
    }
    Ok(())
}

fn nested(dt: &DataType) -> bool {
    matches!(
        value_type(dt),
        DataType::List(_)
            | DataType::LargeList(_)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::FixedSizeList(..)
            | DataType::Struct(_)
            | DataType::Map(..)
            | DataType::Union(..)
            | DataType::RunEndEncoded(..)
    )
}

/// A column of one batch, viewed through the accessor its type needs for the row key.
struct Column {
    array: ArrayRef,
    nulls: Option<NullBuffer>,
    view: Access,
    /// For fixed-width views: the values buffer and the array's offset into it.
    fixed: Option<(Buffer, usize)>,
}

enum Access {
    Int,
    UInt,
    Float,
    Bool,
    Utf8,
    LargeUtf8,
    Utf8View,
    Binary,
    LargeBinary,
    BinaryView,
    FixedBinary,
    /// Fixed-width values (dates, times, timestamps, durations, decimals, intervals): compared
    /// by their stored bytes, which within one column are equal exactly when the values are.
    Fixed(usize),
    /// Every value is null.
    Null,
}

impl Column {
    fn new(a: &ArrayRef) -> Result<Column, arrow_schema::ArrowError> {
        let dt = a.data_type();
        let (array, view) = match dt {
            DataType::Dictionary(_, v) => {
                // A Categorical compares by its values, not its codes.
                return Column::new(&arrow_cast::cast(a, v)?);
            }
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                (arrow_cast::cast(a, &DataType::Int64)?, Access::Int)
            }
            DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
                (arrow_cast::cast(a, &DataType::UInt64)?, Access::UInt)
            }
            DataType::Float16 | DataType::Float32 | DataType::Float64 => {
                (arrow_cast::cast(a, &DataType::Float64)?, Access::Float)
            }
            DataType::Boolean => (a.clone(), Access::Bool),
            DataType::Utf8 => (a.clone(), Access::Utf8),
            DataType::LargeUtf8 => (a.clone(), Access::LargeUtf8),
            DataType::Utf8View => (a.clone(), Access::Utf8View),
            DataType::Binary => (a.clone(), Access::Binary),
            DataType::LargeBinary => (a.clone(), Access::LargeBinary),
            DataType::BinaryView => (a.clone(), Access::BinaryView),
            DataType::FixedSizeBinary(_) => (a.clone(), Access::FixedBinary),
            DataType::Null => (a.clone(), Access::Null),
            other => match other.primitive_width() {
                Some(w) => (a.clone(), Access::Fixed(w)),
                None => {
                    return Err(arrow_schema::ArrowError::NotYetImplemented(format!(
                        "values of type {other}"
                    )));
                }
            },
        };
        let fixed = match view {
            Access::Fixed(_) => {
                let data = array.to_data();
                data.buffers().first().map(|b| (b.clone(), data.offset()))
            }
            _ => None,
        };
        Ok(Column {
            nulls: array.logical_nulls(),
            array,
            view,
            fixed,
        })
    }

    /// Appends the row's value to the key; false when it is null (or a float NaN).
    fn push(&self, row: usize, key: &mut RowKey) -> bool {
        if self.nulls.as_ref().is_some_and(|n| n.is_null(row)) {
            return false;
        }
        let a = &self.array;
        match self.view {
            Access::Int => key.int(a.as_primitive::<Int64Type>().value(row)),
            Access::UInt => key.uint(a.as_primitive::<UInt64Type>().value(row)),
            Access::Float => {
                let v = a.as_primitive::<Float64Type>().value(row);
                if v.is_nan() {
                    return false;
                }
                key.num(v);
            }
            Access::Bool => key.boolean(a.as_boolean().value(row)),
            Access::Utf8 => key.bytes(a.as_string::<i32>().value(row).as_bytes()),
            Access::LargeUtf8 => key.bytes(a.as_string::<i64>().value(row).as_bytes()),
            Access::Utf8View => key.bytes(a.as_string_view().value(row).as_bytes()),
            Access::Binary => key.bytes(a.as_binary::<i32>().value(row)),
            Access::LargeBinary => key.bytes(a.as_binary::<i64>().value(row)),
            Access::BinaryView => key.bytes(a.as_binary_view().value(row)),
            Access::FixedBinary => key.bytes(a.as_fixed_size_binary().value(row)),
            Access::Fixed(w) => {
                let Some((values, offset)) = &self.fixed else {
                    return false;
                };
                let start = (offset + row) * w;
                match values.get(start..start + w) {
                    Some(bytes) => key.bytes(bytes),
                    None => return false,
                }
            }
            Access::Null => return false,
        }
        true
    }
}
