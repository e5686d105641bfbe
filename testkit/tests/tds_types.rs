//! Every common SQL Server type through the TDS server both ways — RPC parameters in,
//! COLMETADATA/ROW out — with the real tiberius client: minimum, maximum and NULL
//! values, 38-digit decimals, dates at both ends of their range, result columns typed
//! as declared, and CAST / NEWID / concatenation / length checks.

mod tds_common;

use tds_common::{batch, connect, start, TestClient};
use tiberius::numeric::Numeric;
use tiberius::time::chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use tiberius::xml::XmlData;
use tiberius::{ColumnType, Row, ToSql, Uuid};

const TABLE: &str = "CREATE TABLE alltypes (
    id INT PRIMARY KEY, ti TINYINT, si SMALLINT, i INT, bi BIGINT, r REAL, f FLOAT, b BIT,
    d DECIMAL(38,10), d2 DECIMAL(18,2), m MONEY, sm SMALLMONEY, nv NVARCHAR(100),
    v VARCHAR(20), vb VARBINARY(50), g UNIQUEIDENTIFIER, dt DATE, tm TIME(7),
    dt2 DATETIME2(7), dto DATETIMEOFFSET(7), dtm DATETIME, sdt SMALLDATETIME, x XML)";

const INSERT: &str = "INSERT INTO alltypes (id, ti, si, i, bi, r, f, b, d, d2, m, sm, nv, v, vb, g, dt, tm, dt2, dto, dtm, sdt, x)
    VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8, @P9, @P10, @P11, @P12, @P13, @P14, @P15, @P16, @P17, @P18, @P19, @P20, @P21, @P22, @P23)";

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn time(h: u32, m: u32, s: u32, nanos: u32) -> NaiveTime {
    NaiveTime::from_hms_nano_opt(h, m, s, nanos).unwrap()
}

/// One row's parameters.
struct Values {
    id: i32,
    ti: u8,
    si: i16,
    i: i32,
    bi: i64,
    r: f32,
    f: f64,
    b: bool,
    d: Numeric,
    d2: Numeric,
    m: Numeric,
    sm: Numeric,
    nv: String,
    v: String,
    vb: Vec<u8>,
    g: Uuid,
    dt: NaiveDate,
    tm: NaiveTime,
    dt2: NaiveDateTime,
    dto: DateTime<FixedOffset>,
    dtm: NaiveDateTime,
    sdt: NaiveDateTime,
    x: XmlData,
}

const D38: i128 = 99_999_999_999_999_999_999_999_999_999_999_999_999;

fn min_values() -> Values {
    Values {
        id: 1,
        ti: 0,
        si: i16::MIN,
        i: i32::MIN,
        bi: i64::MIN,
        r: f32::MIN,
        f: f64::MIN,
        b: false,
        d: Numeric::new_with_scale(-D38, 10),
        d2: Numeric::new_with_scale(-999_999_999_999_999_999, 2),
        m: Numeric::new_with_scale(i64::MIN as i128, 4),
        sm: Numeric::new_with_scale(i32::MIN as i128, 4),
        nv: String::new(),
        v: String::new(),
        vb: Vec::new(),
        g: Uuid::nil(),
        dt: date(1, 1, 1),
        tm: time(0, 0, 0, 0),
        dt2: date(1, 1, 1).and_time(time(0, 0, 0, 0)),
        dto: DateTime::parse_from_rfc3339("0001-01-01T00:00:00+00:00").unwrap(),
        dtm: date(1753, 1, 1).and_time(time(0, 0, 0, 0)),
        sdt: date(1900, 1, 1).and_time(time(0, 0, 0, 0)),
        x: XmlData::new("<a/>"),
    }
}

fn max_values() -> Values {
    Values {
        id: 2,
        ti: 255,
        si: i16::MAX,
        i: i32::MAX,
        bi: i64::MAX,
        r: f32::MAX,
        f: f64::MAX,
        b: true,
        d: Numeric::new_with_scale(D38, 10),
        d2: Numeric::new_with_scale(999_999_999_999_999_999, 2),
        m: Numeric::new_with_scale(i64::MAX as i128, 4),
        sm: Numeric::new_with_scale(i32::MAX as i128, 4),
        nv: "é€日本".repeat(25),
        v: "café crème €".into(),
        vb: vec![0xFF; 50],
        g: Uuid::parse_str("6f9619ff-8b86-d011-b42d-00c04fc964ff").unwrap(),
        dt: date(9999, 12, 31),
        tm: time(23, 59, 59, 999_999_900),
        dt2: date(9999, 12, 31).and_time(time(23, 59, 59, 999_999_900)),
        dto: DateTime::parse_from_rfc3339("2024-02-29T13:45:56.1234567-08:00").unwrap(),
        dtm: date(9999, 12, 31).and_time(time(23, 59, 59, 997_000_000)),
        sdt: date(2079, 6, 6).and_time(time(23, 59, 0, 0)),
        x: XmlData::new("<order id=\"1\"><note>ünïcode</note></order>"),
    }
}

async fn insert(c: &mut TestClient, v: &Values) {
    let params: [&dyn ToSql; 23] = [
        &v.id, &v.ti, &v.si, &v.i, &v.bi, &v.r, &v.f, &v.b, &v.d, &v.d2, &v.m, &v.sm, &v.nv, &v.v,
        &v.vb, &v.g, &v.dt, &v.tm, &v.dt2, &v.dto, &v.dtm, &v.sdt, &v.x,
    ];
    let res = c.execute(INSERT, &params).await.unwrap();
    assert_eq!(res.total(), 1);
}

async fn select(c: &mut TestClient, id: i32) -> Row {
    c.query("SELECT * FROM alltypes WHERE id = @P1", &[&id])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .expect("one row")
}

fn check(row: &Row, v: &Values) {
    assert_eq!(row.get::<u8, _>("ti"), Some(v.ti));
    assert_eq!(row.get::<i16, _>("si"), Some(v.si));
    assert_eq!(row.get::<i32, _>("i"), Some(v.i));
    assert_eq!(row.get::<i64, _>("bi"), Some(v.bi));
    assert_eq!(row.get::<f32, _>("r"), Some(v.r));
    assert_eq!(row.get::<f64, _>("f"), Some(v.f));
    assert_eq!(row.get::<bool, _>("b"), Some(v.b));
    assert_eq!(row.get::<Numeric, _>("d"), Some(v.d));
    assert_eq!(row.get::<Numeric, _>("d2"), Some(v.d2));
    // tiberius reads MONEY as a float.
    assert_eq!(row.get::<f64, _>("m"), Some(f64::from(v.m)));
    assert_eq!(row.get::<f64, _>("sm"), Some(f64::from(v.sm)));
    assert_eq!(row.get::<&str, _>("nv"), Some(v.nv.as_str()));
    assert_eq!(row.get::<&str, _>("v"), Some(v.v.as_str()));
    assert_eq!(row.get::<&[u8], _>("vb"), Some(v.vb.as_slice()));
    assert_eq!(row.get::<Uuid, _>("g"), Some(v.g));
    assert_eq!(row.get::<NaiveDate, _>("dt"), Some(v.dt));
    assert_eq!(row.get::<NaiveTime, _>("tm"), Some(v.tm));
    assert_eq!(row.get::<NaiveDateTime, _>("dt2"), Some(v.dt2));
    assert_eq!(row.get::<DateTime<FixedOffset>, _>("dto"), Some(v.dto));
    assert_eq!(
        row.get::<DateTime<FixedOffset>, _>("dto")
            .map(|d| d.offset().local_minus_utc()),
        Some(v.dto.offset().local_minus_utc())
    );
    // DATETIME keeps 1/300 s: .997 is 299/300 s, which tiberius reads as .996666666
    // (from a real server too).
    let dtm = row.get::<NaiveDateTime, _>("dtm").unwrap();
    assert!(
        (dtm - v.dtm).num_milliseconds().abs() <= 1,
        "{dtm} vs {}",
        v.dtm
    );
    assert_eq!(row.get::<NaiveDateTime, _>("sdt"), Some(v.sdt));
    assert_eq!(
        row.get::<&XmlData, _>("x").map(|x| x.to_string()),
        Some(v.x.to_string())
    );
}

#[tokio::test]
async fn every_type_round_trips_at_its_limits_and_as_null() {
    let server = start().await;
    let mut c = connect(&server).await;
    c.execute(TABLE, &[]).await.unwrap();
    let (lo, hi) = (min_values(), max_values());
    insert(&mut c, &lo).await;
    insert(&mut c, &hi).await;
    c.execute("INSERT INTO alltypes (id) VALUES (3)", &[])
        .await
        .unwrap();
    check(&select(&mut c, 1).await, &lo);
    check(&select(&mut c, 2).await, &hi);

    // Result columns carry the declared types.
    let row = select(&mut c, 3).await;
    let types: Vec<ColumnType> = row.columns().iter().map(|c| c.column_type()).collect();
    use ColumnType as T;
    assert_eq!(
        types,
        vec![
            T::Int4,
            T::Int1,
            T::Int2,
            T::Int4,
            T::Int8,
            T::Float4,
            T::Float8,
            T::Bitn,
            T::Decimaln,
            T::Decimaln,
            T::Money,
            T::Money,
            T::NVarchar,
            T::BigVarChar,
            T::BigVarBin,
            T::Guid,
            T::Daten,
            T::Timen,
            T::Datetime2,
            T::DatetimeOffsetn,
            T::Datetimen,
            T::Datetimen,
            T::Xml
        ]
    );
    // NULL in every column.
    assert_eq!(row.get::<u8, _>("ti"), None);
    assert_eq!(row.get::<Numeric, _>("d"), None);
    assert_eq!(row.get::<Uuid, _>("g"), None);
    assert_eq!(row.get::<NaiveDate, _>("dt"), None);
    assert_eq!(row.get::<NaiveDateTime, _>("dt2"), None);
    assert_eq!(row.get::<DateTime<FixedOffset>, _>("dto"), None);
    assert_eq!(row.get::<&str, _>("v"), None);
    assert_eq!(row.get::<&XmlData, _>("x"), None);
    for i in 1..row.len() {
        assert!(
            row.try_get::<&str, _>(i).is_err() || row.get::<&str, _>(i).is_none(),
            "column {i} is NULL"
        );
    }

    // Parameters compare with stored values of their type.
    let n = c
        .query(
            "SELECT COUNT(*) FROM alltypes WHERE g = @P1 AND dt2 = @P2 AND d = @P3",
            &[&hi.g, &hi.dt2, &hi.d],
        )
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap()
        .get::<i32, _>(0);
    assert_eq!(n, Some(1));
    server.shutdown().await;
}

#[tokio::test]
async fn decimal_precision_and_scale_follow_the_column() {
    let server = start().await;
    let mut c = connect(&server).await;
    batch(
        &mut c,
        "CREATE TABLE amounts (id INT, amount DECIMAL(18,2), rate NUMERIC(9,4))
         INSERT INTO amounts VALUES (1, 12.5, 0.12345), (2, -0.01, 99999.9999)",
    )
    .await
    .unwrap();
    let rows = batch(&mut c, "SELECT amount, rate FROM amounts ORDER BY id")
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        rows[0].get::<Numeric, _>(0),
        Some(Numeric::new_with_scale(1250, 2))
    );
    // 0.12345 rounds to the column's scale on the way in... as SQL Server stores it.
    assert_eq!(
        rows[0].get::<Numeric, _>(1),
        Some(Numeric::new_with_scale(1235, 4))
    );
    assert_eq!(
        rows[1].get::<Numeric, _>(0),
        Some(Numeric::new_with_scale(-1, 2))
    );
    // A value that does not fit the precision is refused on write: 8115.
    let err = c
        .execute(
            "INSERT INTO amounts VALUES (3, @P1, NULL)",
            &[&Numeric::new_with_scale(1_000_000_000_000_000_000, 2)],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), 8115);
    server.shutdown().await;
}

fn code(e: &tiberius::error::Error) -> u32 {
    match e {
        tiberius::error::Error::Server(t) => t.code(),
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test]
async fn casts_give_the_value_or_sql_servers_error() {
    let server = start().await;
    let mut c = connect(&server).await;
    let row = batch(
        &mut c,
        "SELECT CAST('2024-02-29 13:45:56.1234567' AS DATETIME2) AS a,
                CAST('2024-02-29' AS DATE) AS b,
                CAST('123.456' AS DECIMAL(10,2)) AS c,
                CAST(1 AS BIT) AS d,
                CONVERT(UNIQUEIDENTIFIER, '6f9619ff-8b86-d011-b42d-00c04fc964ff') AS e,
                NEWID() AS f,
                N'a' + N'b' AS g,
                CAST('12345678901234567890.123456789' AS DECIMAL(38,9)) AS h,
                TRY_CAST('nope' AS INT) AS i",
    )
    .await
    .unwrap()
    .remove(0)
    .remove(0);
    assert_eq!(
        row.get::<NaiveDateTime, _>("a"),
        Some(date(2024, 2, 29).and_time(time(13, 45, 56, 123_456_700)))
    );
    assert_eq!(row.get::<NaiveDate, _>("b"), Some(date(2024, 2, 29)));
    assert_eq!(
        row.get::<Numeric, _>("c"),
        Some(Numeric::new_with_scale(12346, 2))
    );
    assert_eq!(row.get::<bool, _>("d"), Some(true));
    assert_eq!(
        row.get::<Uuid, _>("e")
            .map(|u| u.to_string().to_uppercase()),
        Some("6F9619FF-8B86-D011-B42D-00C04FC964FF".to_string())
    );
    assert!(row.get::<Uuid, _>("f").is_some());
    assert_eq!(row.get::<&str, _>("g"), Some("ab"));
    assert_eq!(
        row.get::<Numeric, _>("h"),
        Some(Numeric::new_with_scale(
            12_345_678_901_234_567_890_123_456_789,
            9
        ))
    );
    assert_eq!(row.get::<i32, _>("i"), None);
    // NEWID() as text is the canonical dashed upper-case form.
    let g = batch(&mut c, "SELECT CAST(NEWID() AS NVARCHAR(36))")
        .await
        .unwrap()[0][0]
        .get::<&str, _>(0)
        .unwrap()
        .to_string();
    assert_eq!(g.len(), 36);
    assert_eq!(g.matches('-').count(), 4);
    assert_eq!(g, g.to_uppercase());

    for (sql, number) in [
        ("SELECT CAST('2024-02-30' AS DATE)", 241),
        ("SELECT CAST('abc' AS DECIMAL(10,2))", 8114),
        ("SELECT CAST('123456' AS DECIMAL(5,2))", 8115),
        ("SELECT CAST('abc' AS INT)", 245),
        ("SELECT CAST('abc' AS BIT)", 245),
        ("SELECT CAST('x' AS UNIQUEIDENTIFIER)", 8169),
        ("SELECT CAST(1 AS GEOGRAPHY)", 243),
    ] {
        let err = batch(&mut c, sql).await.unwrap_err();
        assert_eq!(code(&err), number, "{sql}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn text_longer_than_the_column_is_refused_with_2628() {
    let server = start().await;
    let mut c = connect(&server).await;
    c.execute(
        "CREATE TABLE notes (id INT, body NVARCHAR(100), code VARCHAR(5))",
        &[],
    )
    .await
    .unwrap();
    let long = "x".repeat(10_000);
    let err = c
        .execute(
            "INSERT INTO notes (id, body) VALUES (1, @P1)",
            &[&long.as_str()],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), 2628);
    let tiberius::error::Error::Server(t) = &err else {
        unreachable!()
    };
    assert_eq!(
        t.message(),
        format!(
            "String or binary data would be truncated in table '{}.dbo.notes', column 'body'. Truncated value: '{}'.",
            server.database(),
            "x".repeat(100)
        )
    );
    let err = batch(&mut c, "INSERT INTO notes (id, code) VALUES (2, 'abcdef')")
        .await
        .unwrap_err();
    assert_eq!(code(&err), 2628);
    c.execute("INSERT INTO notes (id, body) VALUES (3, N'ok')", &[])
        .await
        .unwrap();
    let err = c
        .execute(
            "UPDATE notes SET body = @P1 WHERE id = 3",
            &[&long.as_str()],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), 2628);
    let rows = batch(&mut c, "SELECT COUNT(*) FROM notes").await.unwrap();
    assert_eq!(rows[0][0].get::<i32, _>(0), Some(1));
    server.shutdown().await;
}
