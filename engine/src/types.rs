//! SQL data types as the engine sees them.
//!
//! A `DataType` is attached to every column of a schema and to every bound expression; values
//! (`crate::value::Value`) carry no type of their own beyond their variant, so the type is what
//! decides how a value is rendered (a DECIMAL's scale, a TIMESTAMP's precision).

use std::fmt;
use std::sync::Arc;

/// A Flink SQL type. Nullability is not tracked: every column may hold NULL, as in Flink's
/// default for source tables.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    /// The type of an untyped `NULL` literal, before coercion gives it a real type.
    Null,
    Boolean,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Float,
    Double,
    /// DECIMAL(precision, scale), precision 1..=38.
    Decimal(u8, u8),
    /// CHAR(n): fixed length, as Flink pads it.
    Char(u32),
    /// VARCHAR(n); STRING is VARCHAR(2147483647).
    Varchar(u32),
    Date,
    /// TIME(p); values are milliseconds of the day.
    Time(u8),
    /// TIMESTAMP(p) WITHOUT TIME ZONE; values are milliseconds since the epoch.
    Timestamp(u8),
    /// TIMESTAMP_LTZ(p) (WITH LOCAL TIME ZONE); values are milliseconds since the epoch, UTC.
    TimestampLtz(u8),
    /// INTERVAL DAY TO SECOND family; values are milliseconds.
    IntervalDayTime,
    /// INTERVAL YEAR TO MONTH family; values are months.
    IntervalYearMonth,
    /// ROW<name type, ...>: a structured value of named fields, in order.
    Row(Arc<[Field]>),
}

/// The length Flink gives `STRING`.
pub const STRING_MAX: u32 = i32::MAX as u32;

impl DataType {
    /// `STRING`, i.e. `VARCHAR(2147483647)`.
    pub const STRING: DataType = DataType::Varchar(STRING_MAX);

    pub fn is_numeric(&self) -> bool {
        matches!(
            self,
            DataType::TinyInt
                | DataType::SmallInt
                | DataType::Int
                | DataType::BigInt
                | DataType::Float
                | DataType::Double
                | DataType::Decimal(..)
        )
    }

    pub fn is_integer(&self) -> bool {
        matches!(
            self,
            DataType::TinyInt | DataType::SmallInt | DataType::Int | DataType::BigInt
        )
    }

    pub fn is_string(&self) -> bool {
        matches!(self, DataType::Char(_) | DataType::Varchar(_))
    }

    /// TIMESTAMP or TIMESTAMP_LTZ of any precision.
    pub fn is_timestamp(&self) -> bool {
        matches!(self, DataType::Timestamp(_) | DataType::TimestampLtz(_))
    }

    /// ROW of any fields.
    pub fn is_row(&self) -> bool {
        matches!(self, DataType::Row(_))
    }

    /// The fields of a ROW type; none for any other type.
    pub fn row_fields(&self) -> &[Field] {
        match self {
            DataType::Row(fields) => fields,
            _ => &[],
        }
    }

    pub fn is_interval(&self) -> bool {
        matches!(
            self,
            DataType::IntervalDayTime | DataType::IntervalYearMonth
        )
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataType::Null => write!(f, "NULL"),
            DataType::Boolean => write!(f, "BOOLEAN"),
            DataType::TinyInt => write!(f, "TINYINT"),
            DataType::SmallInt => write!(f, "SMALLINT"),
            DataType::Int => write!(f, "INT"),
            DataType::BigInt => write!(f, "BIGINT"),
            DataType::Float => write!(f, "FLOAT"),
            DataType::Double => write!(f, "DOUBLE"),
            DataType::Decimal(p, s) => write!(f, "DECIMAL({p}, {s})"),
            DataType::Char(n) => write!(f, "CHAR({n})"),
            DataType::Varchar(n) if *n == STRING_MAX => write!(f, "STRING"),
            DataType::Varchar(n) => write!(f, "VARCHAR({n})"),
            DataType::Date => write!(f, "DATE"),
            DataType::Time(p) => write!(f, "TIME({p})"),
            DataType::Timestamp(p) => write!(f, "TIMESTAMP({p})"),
            DataType::TimestampLtz(p) => write!(f, "TIMESTAMP_LTZ({p})"),
            DataType::IntervalDayTime => write!(f, "INTERVAL SECOND(3)"),
            DataType::IntervalYearMonth => write!(f, "INTERVAL MONTH"),
            DataType::Row(fields) => {
                // Flink's summary form: ROW<`name` TYPE, ...>.
                write!(f, "ROW<")?;
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "`{}` {}", field.name.replace('`', "``"), field.data_type)?;
                }
                write!(f, ">")
            }
        }
    }
}

/// A named, typed column (or field of a ROW).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Field {
    pub name: String,
    pub data_type: DataType,
}

impl Field {
    pub fn new(name: impl Into<String>, data_type: DataType) -> Self {
        Field {
            name: name.into(),
            data_type,
        }
    }
}

/// The columns of a stream, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schema {
    pub fields: Vec<Field>,
}

impl Schema {
    pub fn new(fields: Vec<Field>) -> Self {
        Schema { fields }
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Position of a column, compared case-insensitively as Flink's default identifiers are not.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name).or_else(|| {
            self.fields
                .iter()
                .position(|f| f.name.eq_ignore_ascii_case(name))
        })
    }

    pub fn types(&self) -> Vec<DataType> {
        self.fields.iter().map(|f| f.data_type.clone()).collect()
    }
}
