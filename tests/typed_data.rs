//! Typed data through the whole stack over real TCP: every common SQL Server type as a
//! parameter and back as a column (min, max, NULL), and rows mapped into a struct.

mod support;

use std::fmt::Debug;

use mssql_resilience::chrono::{
    DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone,
};
use mssql_resilience::error::ErrorKind;
use mssql_resilience::rust_decimal::Decimal;
use mssql_resilience::sql::{FromRow, FromSqlValue, Param, Reason, Row, RowError, Value};
use mssql_resilience::tiberius::numeric::Numeric;
use mssql_resilience::uuid::Uuid;
use mssql_resilience::{RequestContext, SqlRequest, Stack};
use support::*;

async fn stack(regions: &Backend) -> Stack {
    let config = regions.config("", 1, |c| c.breaker.minimum_calls = 10);
    Stack::builder(config).probes(false).build().unwrap()
}

/// `SELECT @P1` with `param`, read back as `T`.
async fn echo<T>(stack: &Stack, param: Param) -> T
where
    T: for<'a> FromSqlValue<'a> + Debug,
{
    let what = format!("{param:?}");
    let response = stack
        .call(SqlRequest::query(
            RequestContext::read("echo"),
            "SELECT @P1 AS v",
            [param],
        ))
        .await
        .unwrap_or_else(|e| panic!("SELECT {what}: {e}"));
    let row = response.first_row().expect("one row");
    row.try_get::<T>("v")
        .unwrap_or_else(|e| panic!("SELECT {what}: {e}"))
}

async fn round_trip<T>(stack: &Stack, values: &[T])
where
    T: Clone + PartialEq + Debug + Into<Param> + for<'a> FromSqlValue<'a>,
    Option<T>: Into<Param>,
{
    for value in values {
        let back: T = echo(stack, value.clone().into()).await;
        assert_eq!(&back, value);
    }
    let null: Option<T> = echo(stack, None::<T>.into()).await;
    assert_eq!(null, None, "NULL of {}", std::any::type_name::<T>());
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn time(h: u32, m: u32, s: u32, nanos: u32) -> NaiveTime {
    NaiveTime::from_hms_nano_opt(h, m, s, nanos).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_with_its_extremes_and_null() {
    let regions = backend().await;
    let stack = stack(&regions).await;
    round_trip(&stack, &[u8::MIN, u8::MAX]).await;
    round_trip(&stack, &[i16::MIN, i16::MAX]).await;
    round_trip(&stack, &[i32::MIN, i32::MAX]).await;
    round_trip(&stack, &[i64::MIN, i64::MAX]).await;
    round_trip(&stack, &[f32::MIN, f32::MAX, f32::MIN_POSITIVE, 0.1f32]).await;
    round_trip(&stack, &[f64::MIN, f64::MAX, f64::MIN_POSITIVE, 0.1]).await;
    round_trip(&stack, &[false, true]).await;
    // rust_decimal: 28 digits.
    round_trip(
        &stack,
        &[
            Decimal::MAX,
            Decimal::MIN,
            Decimal::new(-12345, 2),
            Decimal::new(1, 28),
        ],
    )
    .await;
    // NUMERIC(38, s): all 38 digits, exactly.
    let nines: i128 = 99_999_999_999_999_999_999_999_999_999_999_999_999;
    round_trip(
        &stack,
        &[
            Numeric::new_with_scale(nines, 0),
            Numeric::new_with_scale(-nines, 0),
            Numeric::new_with_scale(nines, 10),
            Numeric::new_with_scale(-1, 37),
        ],
    )
    .await;
    round_trip(
        &stack,
        &[
            String::new(),
            "plain".to_owned(),
            "Ünïcødé ✓ 漢字 🦀".to_owned(),
            "x".repeat(5000),
        ],
    )
    .await;
    round_trip(&stack, &[Vec::new(), vec![0u8, 255, 1, 2], vec![7u8; 9000]]).await;
    round_trip(
        &stack,
        &[
            Uuid::nil(),
            Uuid::max(),
            Uuid::parse_str("6F9619FF-8B86-D011-B42D-00C04FC964FF").unwrap(),
        ],
    )
    .await;
    round_trip(
        &stack,
        &[date(1, 1, 1), date(9999, 12, 31), date(2024, 2, 29)],
    )
    .await;
    round_trip(
        &stack,
        &[
            time(0, 0, 0, 0),
            time(23, 59, 59, 999_999_900),
            time(12, 0, 0, 100),
        ],
    )
    .await;
    round_trip(
        &stack,
        &[
            date(1, 1, 1).and_time(time(0, 0, 0, 0)),
            date(9999, 12, 31).and_time(time(23, 59, 59, 999_999_900)),
        ],
    )
    .await;
    let plus_0530 = FixedOffset::east_opt(5 * 3600 + 1800).unwrap();
    let minus_14 = FixedOffset::west_opt(14 * 3600).unwrap();
    let dto: Vec<DateTime<FixedOffset>> = vec![
        plus_0530
            .from_local_datetime(&date(2024, 2, 29).and_time(time(12, 34, 56, 123_456_700)))
            .unwrap(),
        minus_14
            .from_local_datetime(&date(1, 1, 1).and_time(time(0, 0, 0, 0)))
            .unwrap(),
        FixedOffset::east_opt(0)
            .unwrap()
            .from_local_datetime(&date(9999, 12, 31).and_time(time(23, 59, 59, 999_999_900)))
            .unwrap(),
    ];
    for value in &dto {
        let back: DateTime<FixedOffset> = echo(&stack, (*value).into()).await;
        assert_eq!(back, *value);
        assert_eq!(back.offset(), value.offset(), "the offset is kept");
    }
    let null: Option<DateTime<FixedOffset>> =
        echo(&stack, None::<DateTime<FixedOffset>>.into()).await;
    assert_eq!(null, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datetime_xml_and_custom_parameters() {
    let regions = backend().await;
    let stack = stack(&regions).await;
    // DATETIME: 1753 to 9999, rounded to 1/300 s as SQL Server stores it.
    for (sent, expected) in [
        (
            date(1753, 1, 1).and_time(time(0, 0, 0, 0)),
            date(1753, 1, 1).and_time(time(0, 0, 0, 0)),
        ),
        (
            date(9999, 12, 31).and_time(time(23, 59, 59, 997_000_000)),
            date(9999, 12, 31).and_time(time(23, 59, 59, 996_666_666)),
        ),
        (
            date(2024, 2, 29).and_time(time(1, 2, 3, 10_000_000)),
            date(2024, 2, 29).and_time(time(1, 2, 3, 10_000_000)),
        ),
    ] {
        let back: NaiveDateTime = echo(&stack, Param::datetime(sent)).await;
        let diff = (back - expected).num_microseconds().unwrap().abs();
        assert!(diff <= 1, "DATETIME {sent} came back as {back}");
    }
    let null: Option<NaiveDateTime> = echo(&stack, Param::DateTime(None)).await;
    assert_eq!(null, None);
    // Out of DATETIME's range: refused before sending, naming the parameter.
    let err = stack
        .call(SqlRequest::query(
            RequestContext::read("echo"),
            "SELECT @P1",
            [Param::datetime(date(1700, 1, 1).and_time(time(0, 0, 0, 0)))],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Conversion);
    assert!(
        err.to_string().contains("parameter @P1 (DATETIME)"),
        "{err}"
    );
    assert_eq!(err.outcome(), mssql_resilience::Outcome::NotSent);

    let xml: String = echo(&stack, Param::xml("<order id=\"1\"><note>x</note></order>")).await;
    assert_eq!(xml, "<order id=\"1\"><note>x</note></order>");
    let null: Option<String> = echo(&stack, Param::Xml(None)).await;
    assert_eq!(null, None);

    // A user type implementing tiberius's ToSql.
    struct Cents(i64);
    impl mssql_resilience::tiberius::ToSql for Cents {
        fn to_sql(&self) -> mssql_resilience::tiberius::ColumnData<'_> {
            mssql_resilience::tiberius::ColumnData::I64(Some(self.0))
        }
    }
    let back: i64 = echo(&stack, Param::custom(Cents(12_345))).await;
    assert_eq!(back, 12_345);
}

/// Every type in one row.
#[derive(Debug, PartialEq)]
struct Everything {
    id: i32,
    tiny: u8,
    small: i16,
    big: i64,
    real: f32,
    float: f64,
    flag: bool,
    amount: Decimal,
    wide: Numeric,
    price: Decimal,
    note: Option<String>,
    sku: String,
    blob: Vec<u8>,
    guid: Uuid,
    day: NaiveDate,
    at: NaiveTime,
    stamp: NaiveDateTime,
    zoned: DateTime<FixedOffset>,
    legacy: NaiveDateTime,
    doc: String,
}

impl FromRow for Everything {
    fn from_row(row: &Row) -> Result<Self, RowError> {
        Ok(Everything {
            id: row.try_get("id")?,
            tiny: row.try_get("tiny")?,
            small: row.try_get("small")?,
            big: row.try_get("big")?,
            real: row.try_get("real_v")?,
            float: row.try_get("float_v")?,
            flag: row.try_get("flag")?,
            amount: row.try_get("amount")?,
            wide: row.try_get("wide")?,
            price: row.try_get("price")?,
            note: row.try_get("note")?,
            sku: row.try_get("sku")?,
            blob: row.try_get("blob")?,
            guid: row.try_get("guid")?,
            day: row.try_get("day")?,
            at: row.try_get("at_time")?,
            stamp: row.try_get("stamp")?,
            zoned: row.try_get("zoned")?,
            legacy: row.try_get("legacy")?,
            doc: row.try_get("doc")?,
        })
    }
}

const EVERYTHING: &str = "CREATE TABLE everything (\
    id INT NOT NULL PRIMARY KEY, tiny TINYINT NOT NULL, small SMALLINT NOT NULL, \
    big BIGINT NOT NULL, real_v REAL NOT NULL, float_v FLOAT NOT NULL, flag BIT NOT NULL, \
    amount DECIMAL(18, 2) NOT NULL, wide DECIMAL(38, 4) NOT NULL, price MONEY NOT NULL, \
    note NVARCHAR(200) NULL, sku VARCHAR(20) NOT NULL, blob VARBINARY(100) NOT NULL, \
    guid UNIQUEIDENTIFIER NOT NULL, day DATE NOT NULL, at_time TIME NOT NULL, \
    stamp DATETIME2 NOT NULL, zoned DATETIMEOFFSET NOT NULL, legacy DATETIME NOT NULL, \
    doc XML NOT NULL)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_map_into_a_struct_with_every_type() {
    let regions = backend().await;
    let stack = stack(&regions).await;
    stack.call(exec("ddl", EVERYTHING, vec![])).await.unwrap();
    let expected = Everything {
        id: 1,
        tiny: 200,
        small: -300,
        big: 9_000_000_000,
        real: 1.5,
        float: -2.25,
        flag: true,
        amount: Decimal::new(123_456_789_012_345_678, 2),
        wide: Numeric::new_with_scale(12_345_678_901_234_567_890_123_456_789_012_345_678, 4),
        price: Decimal::new(123_456_789, 4),
        note: Some("Ünïcødé note".to_owned()),
        sku: "AB-1234".to_owned(),
        blob: vec![1, 2, 3, 0, 255],
        guid: Uuid::parse_str("6F9619FF-8B86-D011-B42D-00C04FC964FF").unwrap(),
        day: date(2024, 2, 29),
        at: time(23, 59, 59, 999_999_900),
        stamp: date(1, 1, 1).and_time(time(0, 0, 0, 100)),
        zoned: FixedOffset::east_opt(-(8 * 3600))
            .unwrap()
            .from_local_datetime(&date(2023, 9, 15).and_time(time(8, 30, 0, 0)))
            .unwrap(),
        legacy: date(1999, 12, 31).and_time(time(23, 59, 59, 0)),
        doc: "<a>1</a>".to_owned(),
    };
    let e = &expected;
    let params = mssql_resilience::params![
        e.id,
        e.tiny,
        e.small,
        e.big,
        e.real,
        e.float,
        e.flag,
        e.amount,
        e.wide,
        e.price,
        e.note.clone(),
        // A VARCHAR column filled from an NVARCHAR parameter: the INSERT converts the value.
        e.sku.clone(),
        e.blob.clone(),
        e.guid,
        e.day,
        e.at,
        e.stamp,
        e.zoned,
        Param::datetime(e.legacy),
        Param::xml(e.doc.clone()),
    ];
    stack
        .call(exec(
            "insert_everything",
            "INSERT INTO everything (id, tiny, small, big, real_v, float_v, flag, amount, wide, \
             price, note, sku, blob, guid, day, at_time, stamp, zoned, legacy, doc) VALUES \
             (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8, @P9, @P10, @P11, @P12, @P13, @P14, \
             @P15, @P16, @P17, @P18, @P19, @P20)",
            params,
        ))
        .await
        .unwrap();
    let rows: Vec<Everything> = stack
        .query_as(
            RequestContext::read("read_everything"),
            "SELECT id, tiny, small, big, real_v, float_v, flag, amount, wide, price, note, \
             sku, blob, guid, day, at_time, stamp, zoned, legacy, doc FROM everything",
            [],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0], e);

    // The dynamic view holds the same values, without loss.
    let response = stack
        .call(read(
            "everything_values",
            "SELECT amount, wide, price, guid, day, stamp, zoned, doc, sku FROM everything",
        ))
        .await
        .unwrap();
    let row = response.first_row().unwrap();
    assert_eq!(
        row.value("amount"),
        Some(Value::Decimal(Numeric::new_with_scale(
            123_456_789_012_345_678,
            2
        )))
    );
    assert_eq!(
        row.value("price"),
        Some(Value::Decimal(Numeric::new_with_scale(123_456_789, 4)))
    );
    assert_eq!(row.value("guid"), Some(Value::Guid(e.guid)));
    assert_eq!(row.value("day"), Some(Value::Date(e.day)));
    assert_eq!(row.value("stamp"), Some(Value::DateTime(e.stamp)));
    assert_eq!(row.value("zoned"), Some(Value::DateTimeOffset(e.zoned)));
    assert_eq!(row.value("sku"), Some(Value::Text("AB-1234".into())));

    // A wrong type names the column and both types, never the value.
    let err = stack
        .query_as::<(i32,)>(
            RequestContext::read("wrong_type"),
            "SELECT note FROM everything",
            [],
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Conversion);
    let text = err.to_string();
    assert!(
        text.contains("column `note` (NVARCHAR) cannot be read as i32"),
        "{text}"
    );
    assert!(!text.contains("Ünïcødé"), "the value stays out: {text}");
    let reason = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<RowError>())
        .map(|e| e.reason);
    assert_eq!(reason, Some(Reason::WrongType));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn varchar_parameters_write_and_find_varchar_rows() {
    // No fault injection: also runs against a real server with MSSQL_TEST_URL.
    let backend = backend().await;
    let stack = stack(&backend).await;
    let _ = stack.call(exec("ddl", "DROP TABLE skus", vec![])).await;
    stack
        .call(exec(
            "ddl",
            "CREATE TABLE skus (sku VARCHAR(20) NOT NULL PRIMARY KEY, note VARCHAR(40) NULL, qty INT NOT NULL)",
            vec![],
        ))
        .await
        .unwrap();
    // Sent as `EXEC sp_executesql @P1, @P2, @P3, …` with the VARCHAR declared by us.
    let inserted = stack
        .call(SqlRequest::execute(
            RequestContext::write("add_sku"),
            "INSERT INTO skus (sku, note, qty) VALUES (@P1, @P2, @P3)",
            [Param::varchar("AB-123"), Param::varchar("café"), 7.into()],
        ))
        .await
        .unwrap();
    assert_eq!(inserted.total_rows_affected(), 1);
    stack
        .call(SqlRequest::execute(
            RequestContext::write("add_sku"),
            "INSERT INTO skus (sku, note, qty) VALUES (@P1, @P2, @P3)",
            [Param::varchar("CD-456"), Param::VarChar(None), (-2).into()],
        ))
        .await
        .unwrap();
    // Found by a VARCHAR parameter (a seek on a VARCHAR key on SQL Server).
    let found = stack
        .call(SqlRequest::query(
            RequestContext::read("get_sku"),
            "SELECT sku, note, qty FROM skus WHERE sku = @P1",
            [Param::varchar("AB-123")],
        ))
        .await
        .unwrap();
    let row = found.first_row().expect("the row");
    assert_eq!(row.try_get::<String>("sku").unwrap(), "AB-123");
    assert_eq!(row.try_get::<String>("note").unwrap(), "café");
    assert_eq!(row.try_get::<i32>("qty").unwrap(), 7);
    let other = stack
        .call(SqlRequest::query(
            RequestContext::read("get_sku"),
            "SELECT note, qty FROM skus WHERE sku = @P1",
            [Param::varchar("CD-456")],
        ))
        .await
        .unwrap();
    let row = other.first_row().expect("the row");
    assert_eq!(row.try_get::<Option<String>>("note").unwrap(), None);
    assert_eq!(row.try_get::<i32>("qty").unwrap(), -2);
}
