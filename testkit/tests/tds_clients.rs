//! What other SQL Server clients need on connect, seen through tiberius: login to
//! `master`, the metadata probes SQLAlchemy and ODBC tools run, and
//! `EXEC sp_executesql` inside a batch.

mod tds_common;

/// Name, data type, nullability, character length, precision, scale.
type ColumnInfo = (
    String,
    String,
    String,
    Option<i32>,
    Option<i32>,
    Option<i32>,
);

use tds_common::{batch, connect_with, start};

#[tokio::test]
async fn login_to_master_lands_in_the_servers_database() {
    let server = start().await;
    let mut c = connect_with(server.addr(), server.user(), server.password(), "master")
        .await
        .expect("master is accepted");
    let rows = batch(&mut c, "SELECT DB_NAME() AS db; USE master; USE [master]")
        .await
        .unwrap();
    assert_eq!(rows[0][0].get::<&str, _>("db"), Some(server.database()));
    let err = batch(&mut c, "USE nosuchdb").await.unwrap_err();
    match err {
        tiberius::error::Error::Server(e) => assert_eq!(e.code(), 911),
        other => panic!("expected 911, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn first_connect_probes_answer_as_sql_server_2022() {
    let server = start().await;
    let mut c = connect_with(server.addr(), server.user(), server.password(), "master")
        .await
        .unwrap();
    batch(
        &mut c,
        "CREATE TABLE orders (id INT IDENTITY(1,1) PRIMARY KEY, amount DECIMAL(18,2) NOT NULL, note NVARCHAR(200) NULL, sku VARCHAR(20))",
    )
    .await
    .unwrap();
    let sets = batch(
        &mut c,
        "SELECT CAST(SERVERPROPERTY('ProductVersion') AS VARCHAR) AS v, CAST(SERVERPROPERTY('EngineEdition') AS INT) AS e
         SELECT schema_name() AS s, @@OPTIONS AS o
         SELECT CAST('test max support' AS NVARCHAR(max)) AS m
         SELECT 1 FROM fn_listextendedproperty(default, default, default, default, default, default, default)
         SELECT name FROM sys.system_views WHERE name IN ('dm_exec_sessions', 'dm_pdw_nodes_exec_sessions')
         SELECT CASE transaction_isolation_level WHEN 2 THEN 'READ COMMITTED' END AS l FROM sys.dm_exec_sessions WHERE session_id = @@SPID
         SELECT t.name AS t, s.name AS s FROM sys.tables t JOIN sys.schemas s ON s.schema_id = t.schema_id
         SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM INFORMATION_SCHEMA.TABLES
         SELECT COLUMN_NAME, DATA_TYPE, IS_NULLABLE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE
           FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = 'orders' ORDER BY ORDINAL_POSITION",
    )
    .await
    .unwrap();
    assert_eq!(sets[0][0].get::<&str, _>("v"), Some("16.0.4135.4"));
    assert_eq!(sets[0][0].get::<i32, _>("e"), Some(3));
    assert_eq!(sets[1][0].get::<&str, _>("s"), Some("dbo"));
    assert_eq!(sets[1][0].get::<i32, _>("o"), Some(5432));
    assert_eq!(sets[2][0].get::<&str, _>("m"), Some("test max support"));
    assert!(sets[3].is_empty());
    assert_eq!(sets[4][0].get::<&str, _>(0), Some("dm_exec_sessions"));
    assert_eq!(sets[5][0].get::<&str, _>("l"), Some("READ COMMITTED"));
    assert_eq!(sets[6].len(), 1);
    assert_eq!(sets[6][0].get::<&str, _>("t"), Some("orders"));
    assert_eq!(sets[6][0].get::<&str, _>("s"), Some("dbo"));
    assert_eq!(sets[7][0].get::<&str, _>("TABLE_TYPE"), Some("BASE TABLE"));
    let cols: Vec<ColumnInfo> = sets[8]
        .iter()
        .map(|r| {
            (
                r.get::<&str, _>(0).unwrap().to_string(),
                r.get::<&str, _>(1).unwrap().to_string(),
                r.get::<&str, _>(2).unwrap().to_string(),
                r.get::<i32, _>(3),
                r.get::<i32, _>(4),
                r.get::<i32, _>(5),
            )
        })
        .collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        cols,
        vec![
            (s("id"), s("int"), s("NO"), None, Some(10), Some(0)),
            (s("amount"), s("decimal"), s("NO"), None, Some(18), Some(2)),
            (s("note"), s("nvarchar"), s("YES"), Some(200), None, None),
            (s("sku"), s("varchar"), s("YES"), Some(20), None, None),
        ]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn exec_sp_executesql_inside_a_batch() {
    let server = start().await;
    let mut c = connect_with(server.addr(), server.user(), server.password(), "master")
        .await
        .unwrap();
    let sets = batch(
        &mut c,
        "CREATE TABLE kv (k INT PRIMARY KEY, v NVARCHAR(10))
         EXEC sp_executesql N'INSERT INTO kv (k, v) VALUES (@k, @v)', N'@k int, @v nvarchar(10)', @k = 1, @v = N'one'
         EXECUTE sys.sp_executesql N'SELECT v FROM kv WHERE k = @k', N'@k int', 1",
    )
    .await
    .unwrap();
    assert_eq!(sets.last().unwrap()[0].get::<&str, _>(0), Some("one"));
    let err = batch(&mut c, "EXEC sp_executesql N'SELECT @missing'")
        .await
        .unwrap_err();
    match err {
        tiberius::error::Error::Server(e) => assert_eq!(e.code(), 137),
        other => panic!("expected 137, got {other:?}"),
    }
    server.shutdown().await;
}
