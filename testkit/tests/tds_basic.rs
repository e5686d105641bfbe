//! Login, batches, result sets, parameters and transactions against the TDS test
//! server, using the real tiberius client over loopback TCP.

mod tds_common;

use tds_common::{batch, connect, connect_with, start, PASSWORD, USER};

#[tokio::test]
async fn login_and_select_one() {
    let server = start().await;
    let mut c = connect(&server).await;
    let rows = batch(&mut c, "SELECT 1").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0].get::<i32, _>(0), Some(1));
    assert_eq!(server.counters().logins, 1);
    assert_eq!(server.counters().connections_open, 1);
    drop(c);
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_password_is_18456() {
    let server = start().await;
    let Err(err) = connect_with(server.addr(), USER, "nope", server.database()).await else {
        panic!("login must fail");
    };
    match err {
        tiberius::error::Error::Server(e) => {
            assert_eq!(e.code(), 18456);
            assert_eq!(e.class(), 14);
            assert_eq!(e.message(), format!("Login failed for user '{USER}'."));
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    let Err(err) = connect_with(server.addr(), USER, PASSWORD, "otherdb").await else {
        panic!("unknown database must fail");
    };
    match err {
        tiberius::error::Error::Server(e) => assert_eq!(e.code(), 4060),
        other => panic!("expected a server error, got {other:?}"),
    }
    assert_eq!(server.counters().failed_logins, 2);
    assert_eq!(server.counters().logins, 0);
}

#[tokio::test]
async fn batch_with_several_result_sets_and_types() {
    let server = start().await;
    let mut c = connect(&server).await;
    let sets = batch(
        &mut c,
        "CREATE TABLE dbo.items (id INT IDENTITY(1,1) PRIMARY KEY, name NVARCHAR(50) NOT NULL, qty INT NULL, big BIGINT, price FLOAT, active BIT, notes NVARCHAR(MAX))
         INSERT INTO items (name, qty, big, price, active, notes) VALUES (N'apple', 3, 5000000000, 1.25, 1, N'crisp'), ('pear', NULL, NULL, NULL, 0, NULL)
         SELECT id, name, qty, big, price, active, notes FROM items ORDER BY id;
         SELECT COUNT(*) AS n FROM items
         SELECT TOP (1) name FROM [dbo].[items] ORDER BY id DESC",
    )
    .await
    .unwrap();
    assert_eq!(sets.len(), 3);
    let rows = &sets[0];
    assert_eq!(rows.len(), 2);
    let r = &rows[0];
    assert_eq!(r.get::<i32, _>("id"), Some(1));
    assert_eq!(r.get::<&str, _>("name"), Some("apple"));
    assert_eq!(r.get::<i32, _>("qty"), Some(3));
    assert_eq!(r.get::<i64, _>("big"), Some(5_000_000_000));
    assert_eq!(r.get::<f64, _>("price"), Some(1.25));
    assert_eq!(r.get::<bool, _>("active"), Some(true));
    assert_eq!(r.get::<&str, _>("notes"), Some("crisp"));
    let r = &rows[1];
    assert_eq!(r.get::<&str, _>("name"), Some("pear"));
    assert_eq!(r.get::<i32, _>("qty"), None);
    assert_eq!(r.get::<i64, _>("big"), None);
    assert_eq!(r.get::<f64, _>("price"), None);
    assert_eq!(r.get::<bool, _>("active"), Some(false));
    assert_eq!(r.get::<&str, _>("notes"), None);
    assert_eq!(sets[1][0].get::<i32, _>("n"), Some(2));
    assert_eq!(sets[2][0].get::<&str, _>(0), Some("pear"));
    let cols: Vec<String> = sets[0][0]
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    assert_eq!(
        cols,
        ["id", "name", "qty", "big", "price", "active", "notes"]
    );
}

#[tokio::test]
async fn execute_reports_row_counts_per_statement() {
    let server = start().await;
    let mut c = connect(&server).await;
    c.execute("CREATE TABLE t (a INT)", &[]).await.unwrap();
    let res = c
        .execute(
            "INSERT INTO t VALUES (1), (2); UPDATE t SET a = a + 1 WHERE a > 1; DELETE FROM t",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(res.rows_affected(), &[2, 1, 2]);
    let res = c
        .execute("SET NOCOUNT ON; INSERT INTO t VALUES (1)", &[])
        .await
        .unwrap();
    assert_eq!(res.total(), 0, "NOCOUNT suppresses DONE_COUNT");
}

#[tokio::test]
async fn parameters_of_every_supported_type_round_trip() {
    let server = start().await;
    let mut c = connect(&server).await;
    c.execute(
        "CREATE TABLE p (i INT, b BIGINT, f FLOAT, flag BIT, s NVARCHAR(100), long NVARCHAR(MAX), n INT, ns NVARCHAR(10))",
        &[],
    )
    .await
    .unwrap();
    let long: String = "αβγ-0123456789".repeat(1000).chars().take(10_000).collect();
    assert_eq!(long.chars().count(), 10_000);
    let none_i: Option<i32> = None;
    let none_s: Option<&str> = None;
    let res = c
        .execute(
            "INSERT INTO p (i, b, f, flag, s, long, n, ns) VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8)",
            &[&42i32, &9_000_000_000i64, &2.5f64, &true, &"hello ünïcode", &long.as_str(), &none_i, &none_s],
        )
        .await
        .unwrap();
    assert_eq!(res.rows_affected(), &[1]);
    let row = c
        .query(
            "SELECT i, b, f, flag, s, long, n, ns FROM p WHERE i = @P1 AND s = @P2",
            &[&42i32, &"hello ünïcode"],
        )
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .expect("one row");
    assert_eq!(row.get::<i32, _>("i"), Some(42));
    assert_eq!(row.get::<i64, _>("b"), Some(9_000_000_000));
    assert_eq!(row.get::<f64, _>("f"), Some(2.5));
    assert_eq!(row.get::<bool, _>("flag"), Some(true));
    assert_eq!(row.get::<&str, _>("s"), Some("hello ünïcode"));
    assert_eq!(row.get::<&str, _>("long"), Some(long.as_str()));
    assert_eq!(row.get::<i32, _>("n"), None);
    assert_eq!(row.get::<&str, _>("ns"), None);
    // Parameters echoed back as expressions (an all-NULL expression column is INT,
    // as `SELECT NULL` is in SQL Server).
    let row = c
        .query(
            "SELECT @P1 AS a, @P2 AS b, @P3 AS c",
            &[&none_i, &long.as_str(), &false],
        )
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .expect("one row");
    assert_eq!(row.get::<i32, _>("a"), None);
    assert_eq!(row.get::<&str, _>("b"), Some(long.as_str()));
    // A BIT parameter comes back as BIT, as in SQL Server.
    assert_eq!(row.get::<bool, _>("c"), Some(false));
    assert!(server.counters().rpcs >= 3);
}

#[tokio::test]
async fn large_results_span_many_packets() {
    let server = start().await;
    let mut c = connect(&server).await;
    c.execute(
        "CREATE TABLE big (id INT PRIMARY KEY, v NVARCHAR(200))",
        &[],
    )
    .await
    .unwrap();
    let mut sql = String::from("INSERT INTO big (id, v) VALUES ");
    for i in 0..2000 {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&format!("({i}, N'value number {i} {}')", "x".repeat(100)));
    }
    let res = c.execute(sql.as_str(), &[]).await.unwrap();
    assert_eq!(res.total(), 2000);
    let rows = batch(&mut c, "SELECT id, v FROM big ORDER BY id")
        .await
        .unwrap();
    assert_eq!(rows[0].len(), 2000);
    assert_eq!(rows[0][1999].get::<i32, _>(0), Some(1999));
    assert!(rows[0][1999]
        .get::<&str, _>(1)
        .unwrap()
        .starts_with("value number 1999 "));
}

#[tokio::test]
async fn transactions_commit_and_roll_back() {
    let server = start().await;
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    a.execute(
        "CREATE TABLE acct (id INT PRIMARY KEY, v NVARCHAR(10))",
        &[],
    )
    .await
    .unwrap();
    batch(
        &mut a,
        "BEGIN TRAN; INSERT INTO acct VALUES (1, 'gone'); ROLLBACK",
    )
    .await
    .unwrap();
    let n = batch(&mut b, "SELECT COUNT(*) FROM acct").await.unwrap();
    assert_eq!(n[0][0].get::<i32, _>(0), Some(0));

    batch(&mut a, "BEGIN TRANSACTION").await.unwrap();
    a.execute("INSERT INTO acct VALUES (@P1, @P2)", &[&2i32, &"kept"])
        .await
        .unwrap();
    let tc = batch(&mut a, "SELECT @@TRANCOUNT").await.unwrap();
    assert_eq!(tc[0][0].get::<i32, _>(0), Some(1));
    batch(&mut a, "COMMIT TRAN").await.unwrap();
    let rows = batch(&mut b, "SELECT v FROM acct WHERE id = 2")
        .await
        .unwrap();
    assert_eq!(rows[0][0].get::<&str, _>(0), Some("kept"));

    // Transaction-manager requests (what tiberius and python-tds use).
    a.begin_transaction().await.unwrap();
    a.execute("INSERT INTO acct VALUES (3, 'tm')", &[])
        .await
        .unwrap();
    a.rollback_transaction().await.unwrap();
    a.begin_transaction().await.unwrap();
    a.execute("INSERT INTO acct VALUES (4, 'tm')", &[])
        .await
        .unwrap();
    a.commit_transaction().await.unwrap();
    let rows = batch(&mut b, "SELECT id FROM acct ORDER BY id")
        .await
        .unwrap();
    let ids: Vec<i32> = rows[0].iter().filter_map(|r| r.get::<i32, _>(0)).collect();
    assert_eq!(ids, [2, 4]);

    // An open transaction dies with its connection.
    batch(&mut a, "BEGIN TRAN; INSERT INTO acct VALUES (5, 'lost')")
        .await
        .unwrap();
    drop(a);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.counters().connections_open > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let rows = batch(&mut b, "SELECT COUNT(*) FROM acct WHERE id = 5")
        .await
        .unwrap();
    assert_eq!(rows[0][0].get::<i32, _>(0), Some(0));
    let err = batch(&mut b, "COMMIT").await.unwrap_err();
    assert!(
        matches!(err, tiberius::error::Error::Server(ref e) if e.code() == 3902),
        "{err:?}"
    );
}

#[tokio::test]
async fn system_functions() {
    let server = start().await;
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    let rows = batch(
        &mut a,
        "SELECT @@VERSION; SELECT DB_NAME(); SELECT @@SPID; SELECT DATABASEPROPERTYEX(DB_NAME(), 'Updateability')",
    )
    .await
    .unwrap();
    assert!(rows[0][0]
        .get::<&str, _>(0)
        .unwrap()
        .starts_with("Microsoft SQL Server"));
    assert_eq!(rows[1][0].get::<&str, _>(0), Some("testdb"));
    let spid_a = rows[2][0].get::<i32, _>(0).unwrap();
    assert!(spid_a > 0);
    assert_eq!(rows[3][0].get::<&str, _>(0), Some("READ_WRITE"));
    let rows = batch(&mut b, "SELECT @@SPID").await.unwrap();
    assert_ne!(rows[0][0].get::<i32, _>(0).unwrap(), spid_a);

    let rows = batch(
        &mut a,
        "IF OBJECT_ID('dbo.ident') IS NULL CREATE TABLE ident (id INT IDENTITY(1,1) PRIMARY KEY, v NVARCHAR(10));
         IF OBJECT_ID('dbo.ident') IS NULL CREATE TABLE ident (id INT IDENTITY(1,1) PRIMARY KEY, v NVARCHAR(10));
         INSERT INTO ident (v) VALUES ('a'); INSERT INTO ident (v) VALUES ('b');
         SELECT CAST(SCOPE_IDENTITY() AS INT) AS id",
    )
    .await
    .unwrap();
    assert_eq!(rows.last().unwrap()[0].get::<i32, _>("id"), Some(2));
    let row = a
        .query(
            "INSERT INTO ident (v) VALUES (@P1); SELECT SCOPE_IDENTITY()",
            &[&"c"],
        )
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<i32, _>(0), Some(3));
    let row = a
        .query(
            "INSERT INTO ident (v) OUTPUT INSERTED.id, INSERTED.v VALUES (@P1)",
            &[&"d"],
        )
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<i32, _>("id"), Some(4));
    assert_eq!(row.get::<&str, _>("v"), Some("d"));
}

#[tokio::test]
async fn waitfor_delay_waits() {
    let server = start().await;
    let mut c = connect(&server).await;
    let started = tokio::time::Instant::now();
    let rows = batch(&mut c, "WAITFOR DELAY '00:00:00.300'; SELECT 7")
        .await
        .unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(rows[0][0].get::<i32, _>(0), Some(7));
}

#[tokio::test]
async fn attention_cancels_a_running_waitfor() {
    let server = start().await;
    let mut c = connect(&server).await;
    // The request is written before the (short) timeout drops the future; the server
    // is then busy in a 60 s WAITFOR that only an attention can end.
    let timed_out = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        c.simple_query("WAITFOR DELAY '00:01:00'; SELECT 1"),
    )
    .await
    .is_err();
    assert!(timed_out, "the WAITFOR must still be running");
    tokio::time::timeout(std::time::Duration::from_secs(30), c.cancel_query())
        .await
        .expect("the attention is acknowledged long before the WAITFOR ends")
        .unwrap();
    let rows = batch(&mut c, "SELECT 2").await.unwrap();
    assert_eq!(rows[0][0].get::<i32, _>(0), Some(2));
    assert_eq!(server.counters().attentions, 1);
}

#[tokio::test]
async fn errors_carry_sql_server_numbers() {
    let server = start().await;
    let mut c = connect(&server).await;
    c.execute(
        "CREATE TABLE parent (id INT PRIMARY KEY, name NVARCHAR(20) NOT NULL UNIQUE);
         CREATE TABLE child (id INT PRIMARY KEY, parent_id INT NOT NULL REFERENCES parent(id), qty INT CHECK (qty > 0))",
        &[],
    )
    .await
    .unwrap();
    c.execute("INSERT INTO parent VALUES (1, 'one')", &[])
        .await
        .unwrap();
    let cases: &[(&str, u32)] = &[
        ("SELECT * FROM missing_table", 208),
        ("SELECT missing_col FROM parent", 207),
        ("SELEC 1", 102),
        ("SELECT 'unterminated", 105),
        ("INSERT INTO parent VALUES (1, 'dup')", 2627),
        ("INSERT INTO parent VALUES (2, 'one')", 2627),
        ("INSERT INTO parent (id) VALUES (3)", 515),
        ("INSERT INTO child VALUES (1, 99, 1)", 547),
        ("INSERT INTO child VALUES (1, 1, 0)", 547),
        ("CREATE TABLE parent (x INT)", 2714),
        ("DROP TABLE missing_table", 3701),
        ("EXEC sp_who", 2812),
        ("SELECT @P1", 137),
    ];
    for (sql, code) in cases {
        let err = batch(&mut c, sql).await.unwrap_err();
        match err {
            tiberius::error::Error::Server(e) => assert_eq!(e.code(), *code, "{sql}: {e:?}"),
            other => panic!("{sql}: expected a server error, got {other:?}"),
        }
        // The session stays usable after an error.
        let ok = batch(&mut c, "SELECT 1").await.unwrap();
        assert_eq!(ok[0][0].get::<i32, _>(0), Some(1));
    }
}

#[tokio::test]
async fn garbage_on_the_wire_closes_only_that_session() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start().await;
    for junk in [
        &b"\x12\x01\x00\x02\x00\x00\x00\x00"[..],
        &b"\x10\x01\x00\x10\x00\x00\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff"[..],
        &b"GET / HTTP/1.1\r\n\r\n"[..],
    ] {
        let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        s.write_all(junk).await.unwrap();
        let mut buf = Vec::new();
        // The server closes the connection (possibly after nothing at all).
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    }
    let mut c = connect(&server).await;
    assert_eq!(
        batch(&mut c, "SELECT 1").await.unwrap()[0][0].get::<i32, _>(0),
        Some(1)
    );
}

#[tokio::test]
async fn tsql_surface() {
    let server = start().await;
    let mut c = connect(&server).await;
    let sets = batch(
        &mut c,
        "USE testdb
         CREATE TABLE IF NOT EXISTS s (id INT NOT NULL PRIMARY KEY NONCLUSTERED, at DATETIME2 DEFAULT GETDATE(), n NVARCHAR(20)) ON [PRIMARY]
         INSERT s (id, n) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, NULL)
         SELECT id FROM s WITH (NOLOCK) ORDER BY id OFFSET 1 ROWS FETCH NEXT 2 ROWS ONLY
         SELECT ISNULL(n, 'none') AS n, LEN(n) AS l FROM s WHERE id = 4
         IF EXISTS (SELECT 1 FROM s WHERE id = 1) BEGIN SELECT 'yes' AS answer END ELSE SELECT 'no' AS answer
         IF OBJECT_ID('missing') IS NOT NULL SELECT 'wrong' ELSE BEGIN SELECT 'right' AS answer; SELECT 2 AS two END
         CREATE TABLE #tmp (v INT); INSERT INTO #tmp VALUES (5); SELECT v FROM #tmp
         SELECT COUNT(*) FROM s WHERE at IS NOT NULL
         BEGIN TRAN; BEGIN TRAN; SELECT @@TRANCOUNT AS tc; COMMIT; SELECT @@TRANCOUNT AS tc; ROLLBACK; SELECT @@TRANCOUNT AS tc
         TRUNCATE TABLE s
         SELECT COUNT(*) FROM s
         PRINT 'printed'",
    )
    .await
    .unwrap();
    let ids: Vec<i32> = sets[0].iter().filter_map(|r| r.get::<i32, _>(0)).collect();
    assert_eq!(ids, [2, 3]);
    assert_eq!(sets[1][0].get::<&str, _>("n"), Some("none"));
    assert_eq!(sets[1][0].get::<i32, _>("l"), None);
    assert_eq!(sets[2][0].get::<&str, _>("answer"), Some("yes"));
    assert_eq!(sets[3][0].get::<&str, _>("answer"), Some("right"));
    assert_eq!(sets[4][0].get::<i32, _>("two"), Some(2));
    assert_eq!(sets[5][0].get::<i32, _>("v"), Some(5));
    assert_eq!(sets[6][0].get::<i32, _>(0), Some(4));
    let tcs: Vec<i32> = sets[7..10]
        .iter()
        .map(|s| s[0].get::<i32, _>("tc").unwrap())
        .collect();
    assert_eq!(tcs, [2, 1, 0]);
    assert_eq!(sets[10][0].get::<i32, _>(0), Some(0));
    // #temp tables belong to the session.
    let mut other = connect(&server).await;
    let err = batch(&mut other, "SELECT * FROM #tmp").await.unwrap_err();
    assert!(
        matches!(err, tiberius::error::Error::Server(ref e) if e.code() == 208),
        "{err:?}"
    );
    for (sql, code, msg) in [
        (
            "RAISERROR('custom failure', 16, 1)",
            50000,
            "custom failure",
        ),
        ("THROW 50001, 'thrown', 1", 50001, "thrown"),
        (
            "USE otherdb",
            911,
            "Database 'otherdb' does not exist. Make sure that the name is entered correctly.",
        ),
    ] {
        match batch(&mut c, sql).await.unwrap_err() {
            tiberius::error::Error::Server(e) => {
                assert_eq!((e.code(), e.message()), (code, msg), "{sql}");
            }
            other => panic!("{sql}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_sessions() {
    let server = start().await;
    let mut setup = connect(&server).await;
    setup
        .execute(
            "CREATE TABLE conc (owner INT, seq INT, note NVARCHAR(50))",
            &[],
        )
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for owner in 0..32i32 {
        let (addr, db) = (server.addr(), server.database().to_string());
        tasks.push(tokio::spawn(async move {
            let mut c = connect_with(addr, USER, PASSWORD, &db).await.unwrap();
            for seq in 0..10i32 {
                c.execute(
                    "INSERT INTO conc (owner, seq, note) VALUES (@P1, @P2, @P3)",
                    &[&owner, &seq, &format!("owner {owner}").as_str()],
                )
                .await
                .unwrap();
            }
            let row = c
                .query("SELECT COUNT(*) FROM conc WHERE owner = @P1", &[&owner])
                .await
                .unwrap()
                .into_row()
                .await
                .unwrap()
                .unwrap();
            assert_eq!(row.get::<i32, _>(0), Some(10));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rows = batch(&mut setup, "SELECT COUNT(*) FROM conc")
        .await
        .unwrap();
    assert_eq!(rows[0][0].get::<i32, _>(0), Some(320));
    assert_eq!(server.counters().logins, 33);
}
