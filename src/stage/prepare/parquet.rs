//! Parquet engine: the schema is in the file, so one pass over record batches decides each row
//! (null in any column, including a float NaN, or duplicate on parsed values) and writes the
//! survivors, batch by batch, to train and test Parquet files with the same schema.

use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt64Type};
use arrow_array::{Array, ArrayRef, BooleanArray};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::{ColumnInfo, EngineOutput, PrepareError, RowKey, Splitter, Verdict, sha256_file};
use crate::config::{ColumnType, DatasetConfig};
use crate::event::Counts;

const BATCH: usize = 64 * 1024;

fn unreadable(e: impl std::fmt::Display) -> PrepareError {
    PrepareError::reject("unreadable", format!("unreadable Parquet: {e}"), None, None)
}

pub(super) fn prepare(
    cfg: &DatasetConfig,
    input: &Path,
    train: &Path,
    test: &Path,
) -> Result<EngineOutput, PrepareError> {
    let content_sha256 = sha256_file(input)?;
    let file = File::open(input).map_err(PrepareError::io(input))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(unreadable)?;
    let schema = builder.schema().clone();
    check_columns(cfg, &schema)?;
    let reader = builder.with_batch_size(BATCH).build().map_err(unreadable)?;

    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let open = |p: &Path| -> Result<ArrowWriter<File>, PrepareError> {
        let f = File::create(p).map_err(PrepareError::io(p))?;
        ArrowWriter::try_new(f, schema.clone(), Some(props.clone())).map_err(|e| PrepareError::Io {
            path: p.to_owned(),
            source: std::io::Error::other(e),
        })
    };
    let mut train_w = open(train)?;
    let mut test_w = open(test)?;
    let write_err = |p: &Path| {
        let p = p.to_owned();
        move |e: parquet::errors::ParquetError| PrepareError::Io {
            path: p,
            source: std::io::Error::other(e),
        }
    };

    let mut split = Splitter::new(cfg.test_fraction);
    let mut key = RowKey::default();
    let mut counts = Counts::default();
    for batch in reader {
        let batch = batch.map_err(unreadable)?;
        let cols = batch
            .columns()
            .iter()
            .map(Column::new)
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
                Some(split.decide(key.hash()))
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
                w.write(&part).map_err(write_err(p))?;
            }
        }
    }
    train_w.close().map_err(write_err(train))?;
    test_w.close().map_err(write_err(test))?;
    let schema = schema
        .fields()
        .iter()
        .map(|f| ColumnInfo {
            name: f.name().clone(),
            dtype: f.data_type().to_string(),
        })
        .collect();
    Ok(EngineOutput {
        content_sha256,
        schema,
        counts,
    })
}

fn check_columns(cfg: &DatasetConfig, schema: &Schema) -> Result<(), PrepareError> {
    for col in cfg.required_columns() {
        let Ok(field) = schema.field_with_name(col) else {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(PrepareError::reject(
                "missing_column",
                format!(
                    "required column {col:?} is missing (the file has: {})",
                    names.join(", ")
                ),
                Some(col),
                None,
            ));
        };
        let Some(declared) = cfg.columns.get(col) else {
            continue;
        };
        let dt = field.data_type();
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
                format!("column {col:?} must be {declared:?} but the file stores it as {dt}")
                    .to_lowercase(),
                Some(col),
                None,
            ));
        }
    }
    Ok(())
}

/// A column viewed through the accessor its type needs for the row key.
enum Column<'a> {
    Int(ArrayRef),
    UInt(ArrayRef),
    Float(ArrayRef),
    Bool(&'a BooleanArray),
    Utf8(&'a dyn Array),
    Other(&'a dyn Array, ArrayFormatter<'a>),
}

impl<'a> Column<'a> {
    fn new(a: &'a ArrayRef) -> Result<Column<'a>, arrow_schema::ArrowError> {
        let dt = a.data_type();
        Ok(match dt {
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                Column::Int(arrow_cast::cast(a, &DataType::Int64)?)
            }
            DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
                Column::UInt(arrow_cast::cast(a, &DataType::UInt64)?)
            }
            DataType::Float16 | DataType::Float32 | DataType::Float64 => {
                Column::Float(arrow_cast::cast(a, &DataType::Float64)?)
            }
            DataType::Boolean => Column::Bool(a.as_boolean()),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Column::Utf8(a.as_ref()),
            _ => Column::Other(
                a.as_ref(),
                ArrayFormatter::try_new(a.as_ref(), &FormatOptions::default())?,
            ),
        })
    }

    /// Appends the row's value to the key; false when it is null (or a float NaN).
    fn push(&self, row: usize, key: &mut RowKey) -> bool {
        match self {
            Column::Int(a) => {
                let a = a.as_primitive::<Int64Type>();
                a.is_valid(row) && {
                    key.int(a.value(row));
                    true
                }
            }
            Column::UInt(a) => {
                let a = a.as_primitive::<UInt64Type>();
                a.is_valid(row) && {
                    key.uint(a.value(row));
                    true
                }
            }
            Column::Float(a) => {
                let a = a.as_primitive::<Float64Type>();
                a.is_valid(row) && !a.value(row).is_nan() && {
                    key.num(a.value(row));
                    true
                }
            }
            Column::Bool(a) => {
                a.is_valid(row) && {
                    key.boolean(a.value(row));
                    true
                }
            }
            Column::Utf8(a) => {
                a.is_valid(row) && {
                    let v: &str = match a.data_type() {
                        DataType::Utf8 => a.as_string::<i32>().value(row),
                        DataType::LargeUtf8 => a.as_string::<i64>().value(row),
                        _ => a.as_string_view().value(row),
                    };
                    key.bytes(v.as_bytes());
                    true
                }
            }
            Column::Other(a, f) => {
                a.is_valid(row) && {
                    key.bytes(f.value(row).to_string().as_bytes());
                    true
                }
            }
        }
    }
}
