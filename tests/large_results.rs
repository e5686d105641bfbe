//! Large results over real TCP: the response cap, and streaming with retries only before
//! the first row.

mod support;

use mssql_resilience::error::ErrorKind;
use mssql_resilience::sql::{work, SqlRequest};
use mssql_resilience::{Outcome, RequestContext, Stack};
use mssql_testkit::tds::{DropPoint, Trigger};
use support::*;

const ROWS: usize = 300;
const NOTE_CHARS: usize = 100;

async fn setup(regions: &Backend, extra: &str) -> Stack {
    let config = regions.config(extra, 1, |c| {
        c.breaker.minimum_calls = 10;
    });
    let stack = Stack::builder(config).probes(false).build().unwrap();
    stack
        .call(exec(
            "ddl",
            "CREATE TABLE big (id INT NOT NULL PRIMARY KEY, note NVARCHAR(200) NOT NULL)",
            vec![],
        ))
        .await
        .unwrap();
    let note = "n".repeat(NOTE_CHARS);
    let values: Vec<String> = (1..=ROWS).map(|i| format!("({i}, N'{note}')")).collect();
    stack
        .call(exec(
            "fill",
            &format!("INSERT INTO big (id, note) VALUES {}", values.join(", ")),
            vec![],
        ))
        .await
        .unwrap();
    stack
}

fn all_rows() -> SqlRequest {
    read("all_rows", "SELECT id, note FROM big ORDER BY id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_past_the_row_cap_fails_once_with_a_clear_error() {
    let regions = backend().await;
    let stack = setup(&regions, "[results]\nmax_rows = 100\n").await;
    let err = stack.call(all_rows()).await.unwrap_err();
    assert_eq!(
        err.kind(),
        &ErrorKind::ResponseTooLarge {
            limit: "rows",
            max: 100
        }
    );
    assert_eq!(err.attempts(), 1, "a capped response is not retried: {err}");
    let text = err.to_string();
    assert!(text.contains("more than 100 rows"), "{text}");
    assert!(text.contains("results.max_rows"), "{text}");
    // Under the cap, the same stack answers.
    let response = stack
        .call(read(
            "some_rows",
            "SELECT id, note FROM big WHERE id <= 100 ORDER BY id",
        ))
        .await
        .unwrap();
    assert_eq!(response.first().unwrap().rows.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_past_the_byte_cap_fails_with_a_clear_error() {
    let regions = backend().await;
    // 300 rows of 100 characters and an INT: about 34 KB counted.
    let stack = setup(&regions, "[results]\nmax_bytes = 16384\n").await;
    let err = stack.call(all_rows()).await.unwrap_err();
    assert_eq!(
        err.kind(),
        &ErrorKind::ResponseTooLarge {
            limit: "bytes",
            max: 16384
        }
    );
    assert!(err.to_string().contains("results.max_bytes"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reads_past_the_cap_in_order() {
    let regions = backend().await;
    let stack = setup(&regions, "[results]\nmax_rows = 10\n").await;
    let mut stream = stack.stream_with_buffer(all_rows(), 8);
    let mut ids = Vec::new();
    while let Some(row) = stream.next().await {
        let row = row.unwrap();
        assert_eq!(row.try_get::<&str>("note").unwrap().len(), NOTE_CHARS);
        ids.push(row.try_get::<i32>("id").unwrap());
    }
    assert_eq!(ids, (1..=ROWS as i32).collect::<Vec<_>>());
    assert!(stream.next().await.is_none(), "the end is sticky");
    // Mapping the whole stream.
    let mut stream = stack.stream(all_rows());
    let pairs: Vec<(i32, String)> = stream.map_all().await.unwrap();
    assert_eq!(pairs.len(), ROWS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_fails_before_its_first_row_is_retried() {
    let regions = testkit().await;
    let stack = setup(&regions, "").await;
    let before = regions.primary().server.counters().rpcs;
    // The first response is cut after 8 bytes: inside the packet header, before any row.
    regions
        .primary()
        .faults()
        .drop_responses(DropPoint::AfterBytes(8), Trigger::Next(1));
    let mut stream = stack.stream(all_rows());
    let mut rows = 0;
    while let Some(row) = stream.next().await {
        row.unwrap();
        rows += 1;
    }
    assert_eq!(rows, ROWS, "every row, once");
    assert_eq!(
        regions.primary().server.counters().rpcs - before,
        2,
        "sent twice: the first attempt handed no row over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_fails_after_handing_rows_over_is_not_resent() {
    let regions = testkit().await;
    let stack = setup(&regions, "").await;
    let before = regions.primary().server.counters().rpcs;
    // Every row arrives, then the connection closes before the final DONE.
    regions
        .primary()
        .faults()
        .drop_responses(DropPoint::BeforeFinalDone, Trigger::Next(1));
    let mut stream = stack.stream_with_buffer(all_rows(), 4);
    let mut rows = 0;
    let err = loop {
        match stream.next().await {
            Some(Ok(_)) => rows += 1,
            Some(Err(e)) => break e,
            None => panic!("the stream ended without its error after {rows} rows"),
        }
    };
    assert_eq!(rows, ROWS, "the rows handed over still reach the caller");
    assert!(
        matches!(err.kind(), ErrorKind::StreamInterrupted { rows } if *rows == ROWS as u64),
        "{err}"
    );
    assert_eq!(err.outcome(), Outcome::Ambiguous);
    assert!(err.to_string().contains("not re-sent"), "{err}");
    assert!(stream.next().await.is_none());
    assert_eq!(
        regions.primary().server.counters().rpcs - before,
        1,
        "never re-sent once a row was handed over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_queries_stream() {
    let regions = testkit().await;
    let stack = setup(&regions, "").await;
    let mut stream = stack.stream(exec("not_a_query", "DELETE FROM big", vec![]));
    let err = stream.next().await.unwrap().unwrap_err();
    assert_eq!(err.outcome(), Outcome::NotSent);
    assert!(format!("{err:?}").contains("only a query"), "{err:?}");
    assert!(stream.next().await.is_none());
    // Nothing was deleted.
    assert_eq!(
        scalar(&stack, "SELECT COUNT(*) FROM big").await,
        ROWS as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_of_work_returns_its_own_type() {
    let regions = backend().await;
    let stack = setup(&regions, "").await;
    let (count, first): (i64, String) = stack
        .run(
            RequestContext::read("count_and_first"),
            work(|client| {
                Box::pin(async move {
                    let count = client
                        .simple_query("SELECT COUNT(*) FROM big")
                        .await?
                        .into_row()
                        .await?
                        .and_then(|r| {
                            r.try_get::<i32, _>(0)
                                .ok()
                                .flatten()
                                .map(i64::from)
                                .or_else(|| r.try_get::<i64, _>(0).ok().flatten())
                        })
                        .unwrap_or(-1);
                    let first = client
                        .query("SELECT note FROM big WHERE id = @P1", &[&1i32])
                        .await?
                        .into_row()
                        .await?
                        .and_then(|r| r.get::<&str, _>(0).map(str::to_owned))
                        .unwrap_or_default();
                    Ok((count, first))
                })
            }),
        )
        .await
        .unwrap();
    assert_eq!(count, ROWS as i64);
    assert_eq!(first, "n".repeat(NOTE_CHARS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_stream_is_never_run_twice_at_once() {
    // The first row comes after the attempt bound (1 s), and the caller reads slowly. A
    // second attempt racing the first (the second chance an idempotent read gets on its
    // last region) would stream its rows into the same buffer: every row must arrive
    // exactly once, from one execution.
    let regions = testkit().await;
    let stack = setup(&regions, "").await;
    let stack = {
        drop(stack);
        let config = regions.config("", 1, |c| {
            c.breaker.minimum_calls = 10;
            c.timeouts.total = std::time::Duration::from_secs(10);
        });
        Stack::builder(config).probes(false).build().unwrap()
    };
    let before = regions.primary().server.counters().rpcs;
    regions
        .primary()
        .faults()
        .set_query_delay(std::time::Duration::from_millis(1_200));
    let mut stream = stack.stream_with_buffer(all_rows(), 4);
    let mut ids = Vec::new();
    while let Some(row) = stream.next().await {
        ids.push(row.unwrap().try_get::<i32>("id").unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(4)).await;
    }
    assert_eq!(
        ids,
        (1..=ROWS as i32).collect::<Vec<_>>(),
        "every row once, in order"
    );
    assert_eq!(
        regions.primary().server.counters().rpcs - before,
        1,
        "a stream is never raced by a second attempt"
    );
}
