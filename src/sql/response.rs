use tiberius::ColumnData;

/// One materialized value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// Any integer type.
    Int(i64),
    /// `FLOAT` / `REAL`.
    Float(f64),
    /// `BIT`.
    Bool(bool),
    /// Character data.
    Text(String),
    /// Binary data.
    Bytes(Vec<u8>),
    /// Any other type (decimal, date/time, GUID, XML), in its display form.
    Other(String),
}

impl Value {
    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// The float, if this is one (integers convert).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(v) => Some(*v),
            Value::Int(v) => Some(*v as f64),
            _ => None,
        }
    }

    /// The text, if this is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(v) => Some(v),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(v) => Some(*v),
            _ => None,
        }
    }

    /// Whether this is `NULL`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub(crate) fn from_column(data: &ColumnData<'_>) -> Value {
        fn or_null<T>(v: &Option<T>, f: impl FnOnce(&T) -> Value) -> Value {
            v.as_ref().map_or(Value::Null, f)
        }
        match data {
            ColumnData::U8(v) => or_null(v, |v| Value::Int(i64::from(*v))),
            ColumnData::I16(v) => or_null(v, |v| Value::Int(i64::from(*v))),
            ColumnData::I32(v) => or_null(v, |v| Value::Int(i64::from(*v))),
            ColumnData::I64(v) => or_null(v, |v| Value::Int(*v)),
            ColumnData::F32(v) => or_null(v, |v| Value::Float(f64::from(*v))),
            ColumnData::F64(v) => or_null(v, |v| Value::Float(*v)),
            ColumnData::Bit(v) => or_null(v, |v| Value::Bool(*v)),
            ColumnData::String(v) => or_null(v, |v| Value::Text(v.to_string())),
            ColumnData::Binary(v) => or_null(v, |v| Value::Bytes(v.to_vec())),
            ColumnData::Numeric(v) => or_null(v, |v| Value::Other(v.to_string())),
            ColumnData::Guid(v) => or_null(v, |v| Value::Other(v.to_string())),
            other => Value::Other(format!("{other:?}")),
        }
    }
}

/// One result set: column names and rows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResultSet {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<Value>>,
}

impl ResultSet {
    /// The value at `row`, `column` (by name), if present.
    pub fn get(&self, row: usize, column: &str) -> Option<&Value> {
        let index = self.columns.iter().position(|c| c == column)?;
        self.rows.get(row)?.get(index)
    }
}

/// A materialized response.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SqlResponse {
    /// Result sets of a query (empty for `execute`).
    pub result_sets: Vec<ResultSet>,
    /// Rows affected per statement of an `execute` (empty for a query).
    pub rows_affected: Vec<u64>,
    /// True when an [idempotency key](crate::idempotency) found the write already done
    /// and this is its recorded outcome.
    pub replayed: bool,
}

impl SqlResponse {
    /// The first result set, if any.
    pub fn first(&self) -> Option<&ResultSet> {
        self.result_sets.first()
    }

    /// The first column of the first row of the first result set.
    pub fn scalar(&self) -> Option<&Value> {
        self.first()?.rows.first()?.first()
    }

    /// Total rows affected.
    pub fn total_rows_affected(&self) -> u64 {
        self.rows_affected.iter().sum()
    }
}
