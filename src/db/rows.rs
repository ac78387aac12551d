//! Rows to JSON, faithfully: integers stay integers, decimals become exact
//! strings, dates and times ISO 8601, NULL null, text as UTF-8.
//!
//! A result is kept as column names plus rows of values (not objects), so a
//! join with two `name` columns loses nothing, and the cached JSON decodes to
//! exactly the [`ResultSet`] a database read returns.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::mysql::MySqlRow;
use sqlx::postgres::PgRow;
use sqlx::{Column, Row, TypeInfo, ValueRef};

use super::DbError;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl ResultSet {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

fn unsupported(column: &str, type_name: &str) -> DbError {
    DbError::Query(format!(
        "column '{column}' has type {type_name}, which the workshop cannot turn into JSON; cast it to text in the query"
    ))
}

fn decode_error(column: &str, error: sqlx::Error) -> DbError {
    DbError::Query(format!("cannot read column '{column}': {error}"))
}

pub(crate) fn float(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or_else(|| Value::String(value.to_string()), Value::Number)
}

pub(crate) fn bytes(raw: Vec<u8>) -> Value {
    match String::from_utf8(raw) {
        Ok(text) => Value::String(text),
        Err(e) => {
            let hex: String = e.into_bytes().iter().map(|b| format!("{b:02x}")).collect();
            Value::String(format!("\\x{hex}"))
        }
    }
}

pub(crate) fn date(value: NaiveDate) -> Value {
    Value::String(value.format("%Y-%m-%d").to_string())
}

pub(crate) fn datetime(value: NaiveDateTime) -> Value {
    Value::String(value.format("%Y-%m-%dT%H:%M:%S%.f").to_string())
}

pub(crate) fn timestamp(value: DateTime<Utc>) -> Value {
    Value::String(value.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

fn time(value: NaiveTime) -> Value {
    Value::String(value.format("%H:%M:%S%.f").to_string())
}

pub(crate) fn decimal(value: Decimal) -> Value {
    Value::String(value.to_string())
}

fn columns<R: Row>(rows: &[R]) -> Vec<String> {
    rows.first()
        .map(|row| row.columns().iter().map(|c| c.name().to_string()).collect())
        .unwrap_or_default()
}

pub fn from_mysql(rows: &[MySqlRow]) -> Result<ResultSet, DbError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut values = Vec::with_capacity(row.len());
        for (i, column) in row.columns().iter().enumerate() {
            values.push(mysql_value(row, i, column.name())?);
        }
        out.push(values);
    }
    Ok(ResultSet {
        columns: columns(rows),
        rows: out,
    })
}

fn mysql_value(row: &MySqlRow, i: usize, name: &str) -> Result<Value, DbError> {
    let raw = row.try_get_raw(i).map_err(|e| decode_error(name, e))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let type_name = raw.type_info().name().to_string();
    let err = |e| decode_error(name, e);
    Ok(match type_name.as_str() {
        "BOOLEAN" => Value::Bool(row.try_get::<bool, _>(i).map_err(err)?),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => Value::from(row.try_get::<i64, _>(i).map_err(err)?),
        t if t.ends_with("UNSIGNED") => Value::from(row.try_get::<u64, _>(i).map_err(err)?),
        "YEAR" => Value::from(row.try_get::<u16, _>(i).map_err(err)?),
        "BIT" => Value::from(row.try_get::<u64, _>(i).map_err(err)?),
        "DECIMAL" => decimal(row.try_get::<Decimal, _>(i).map_err(err)?),
        "FLOAT" => float(f64::from(row.try_get::<f32, _>(i).map_err(err)?)),
        "DOUBLE" => float(row.try_get::<f64, _>(i).map_err(err)?),
        "DATE" => date(row.try_get::<NaiveDate, _>(i).map_err(err)?),
        "DATETIME" => datetime(row.try_get::<NaiveDateTime, _>(i).map_err(err)?),
        "TIMESTAMP" => timestamp(row.try_get::<DateTime<Utc>, _>(i).map_err(err)?),
        "TIME" => match row.try_get::<NaiveTime, _>(i) {
            Ok(t) => time(t),
            // Durations outside 00:00..24:00 are valid MySQL TIME values.
            Err(_) => Value::String(
                row.try_get::<sqlx::mysql::types::MySqlTime, _>(i)
                    .map_err(err)?
                    .to_string(),
            ),
        },
        "JSON" => row.try_get::<Value, _>(i).map_err(err)?,
        "CHAR" | "VARCHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" => {
            match row.try_get::<String, _>(i) {
                Ok(text) => Value::String(text),
                Err(_) => bytes(row.try_get::<Vec<u8>, _>(i).map_err(err)?),
            }
        }
        "BINARY" | "VARBINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" | "GEOMETRY" => {
            bytes(row.try_get::<Vec<u8>, _>(i).map_err(err)?)
        }
        "NULL" => Value::Null,
        other => match row.try_get::<String, _>(i) {
            Ok(text) => Value::String(text),
            Err(_) => return Err(unsupported(name, other)),
        },
    })
}

pub fn from_postgres(rows: &[PgRow]) -> Result<ResultSet, DbError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut values = Vec::with_capacity(row.len());
        for (i, column) in row.columns().iter().enumerate() {
            values.push(postgres_value(row, i, column.name())?);
        }
        out.push(values);
    }
    Ok(ResultSet {
        columns: columns(rows),
        rows: out,
    })
}

fn postgres_value(row: &PgRow, i: usize, name: &str) -> Result<Value, DbError> {
    let raw = row.try_get_raw(i).map_err(|e| decode_error(name, e))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let type_name = raw.type_info().name().to_string();
    let err = |e| decode_error(name, e);
    Ok(match type_name.as_str() {
        "BOOL" => Value::Bool(row.try_get::<bool, _>(i).map_err(err)?),
        "INT2" => Value::from(row.try_get::<i16, _>(i).map_err(err)?),
        "INT4" => Value::from(row.try_get::<i32, _>(i).map_err(err)?),
        "INT8" => Value::from(row.try_get::<i64, _>(i).map_err(err)?),
        "OID" => Value::from(row.try_get::<sqlx::postgres::types::Oid, _>(i).map_err(err)?.0),
        "NUMERIC" => decimal(row.try_get::<Decimal, _>(i).map_err(err)?),
        "FLOAT4" => float(f64::from(row.try_get::<f32, _>(i).map_err(err)?)),
        "FLOAT8" => float(row.try_get::<f64, _>(i).map_err(err)?),
        "DATE" => date(row.try_get::<NaiveDate, _>(i).map_err(err)?),
        "TIMESTAMP" => datetime(row.try_get::<NaiveDateTime, _>(i).map_err(err)?),
        "TIMESTAMPTZ" => timestamp(row.try_get::<DateTime<Utc>, _>(i).map_err(err)?),
        "TIME" => time(row.try_get::<NaiveTime, _>(i).map_err(err)?),
        "JSON" | "JSONB" => row.try_get::<Value, _>(i).map_err(err)?,
        "BYTEA" => bytes(row.try_get::<Vec<u8>, _>(i).map_err(err)?),
        // sqlx calls bpchar (CHAR(n)) "CHAR", and the one-byte internal type "\"CHAR\"".
        "TEXT" | "VARCHAR" | "CHAR" | "NAME" | "UNKNOWN" => Value::String(row.try_get::<String, _>(i).map_err(err)?),
        "\"CHAR\"" => Value::String(char::from(row.try_get::<i8, _>(i).map_err(err)? as u8).to_string()),
        "VOID" => Value::Null,
        other => return Err(unsupported(name, other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_set_survives_a_json_round_trip_unchanged() {
        let set = ResultSet {
            columns: vec!["id".into(), "price".into(), "when".into(), "note".into(), "name".into()],
            rows: vec![vec![
                Value::from(3797),
                decimal("19.90".parse().unwrap()),
                datetime(
                    NaiveDate::from_ymd_opt(2024, 5, 1)
                        .unwrap()
                        .and_hms_opt(7, 30, 0)
                        .unwrap(),
                ),
                Value::Null,
                Value::String("Zürich 🛫 'quoted'".into()),
            ]],
        };
        let text = serde_json::to_string(&set).unwrap();
        let back: ResultSet = serde_json::from_str(&text).unwrap();
        assert_eq!(back, set);
        assert!(text.contains("\"19.90\""), "{text}");
        assert!(text.contains("\"2024-05-01T07:30:00\""), "{text}");
    }

    #[test]
    fn invalid_utf8_bytes_become_hex() {
        assert_eq!(bytes(vec![0xff, 0x00]), Value::String("\\xff00".into()));
        assert_eq!(bytes(b"ok".to_vec()), Value::String("ok".into()));
    }
}
