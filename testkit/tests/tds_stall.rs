//! Stall faults: part of a result arrives, then nothing more, so timeouts mid-result
//! are exercised.

mod tds_common;

use futures_util::TryStreamExt;
use mssql_testkit::tds::{StallFault, StallPoint, Trigger};
use std::time::Duration;
use tds_common::{batch, connect, start, TestClient};
use tiberius::QueryItem;

async fn setup(c: &mut TestClient) {
    batch(
        c,
        "CREATE TABLE big (id INT NOT NULL PRIMARY KEY); INSERT INTO big (id) VALUES (1), (2), (3), (4), (5)",
    )
    .await
    .unwrap();
}

/// A generous bound for what must arrive (a broken server fails instead of hanging).
const ARRIVES: Duration = Duration::from_secs(10);
/// How long to watch for what must not arrive.
const STALLED: Duration = Duration::from_millis(200);

#[tokio::test]
async fn rows_arrive_then_the_result_stalls_until_the_client_cancels() {
    let server = start().await;
    let mut c = connect(&server).await;
    setup(&mut c).await;
    server.faults().stall_responses(
        StallFault::new(StallPoint::AfterRows(2), Trigger::Next(1)).matching("FROM big"),
    );
    {
        let mut stream =
            tokio::time::timeout(ARRIVES, c.query("SELECT id FROM big ORDER BY id", &[]))
                .await
                .unwrap()
                .unwrap();
        let mut ids = Vec::new();
        while ids.len() < 2 {
            match tokio::time::timeout(ARRIVES, stream.try_next())
                .await
                .unwrap()
                .unwrap()
            {
                Some(QueryItem::Row(r)) => ids.push(r.get::<i32, _>(0).unwrap()),
                Some(QueryItem::Metadata(_)) => {}
                None => panic!("the result ended early"),
            }
        }
        assert_eq!(ids, [1, 2]);
        let next = tokio::time::timeout(STALLED, stream.try_next()).await;
        assert!(next.is_err(), "nothing after the second row: {next:?}");
    }
    assert_eq!(server.counters().responses_stalled, 1);
    // The client cancels: the server answers DONE(ATTN) and the connection is usable.
    tokio::time::timeout(ARRIVES, c.cancel_query())
        .await
        .unwrap()
        .unwrap();
    let rows = batch(&mut c, "SELECT COUNT(*) FROM big").await.unwrap();
    assert_eq!(rows[0][0].get::<i32, _>(0), Some(5));
    assert_eq!(server.counters().attentions, 1);
}

#[tokio::test]
async fn a_stall_inside_a_packet_holds_the_connection_until_the_client_leaves() {
    let server = start().await;
    let mut c = connect(&server).await;
    setup(&mut c).await;
    server.faults().stall_responses(StallFault::new(
        StallPoint::AfterBytes(20),
        Trigger::Next(1),
    ));
    let r = tokio::time::timeout(STALLED, batch(&mut c, "SELECT id FROM big")).await;
    assert!(r.is_err(), "the response never completes");
    assert_eq!(server.counters().connections_open, 1, "held, not closed");
    drop(c);
    for _ in 0..1000 {
        if server.counters().connections_open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.counters().connections_open, 0);
    // Later requests are unaffected (the trigger was used up).
    let mut c = connect(&server).await;
    let rows = batch(&mut c, "SELECT COUNT(*) FROM big").await.unwrap();
    assert_eq!(rows[0][0].get::<i32, _>(0), Some(5));
}

#[tokio::test]
async fn a_write_behind_a_stalled_answer_has_committed() {
    let server = start().await;
    let mut c = connect(&server).await;
    setup(&mut c).await;
    server.faults().stall_responses(
        StallFault::new(StallPoint::AfterRows(0), Trigger::Next(1)).matching("INSERT"),
    );
    let r = tokio::time::timeout(STALLED, c.execute("INSERT INTO big (id) VALUES (6)", &[])).await;
    assert!(r.is_err());
    drop(c);
    let mut other = connect(&server).await;
    let rows = batch(&mut other, "SELECT COUNT(*) FROM big").await.unwrap();
    assert_eq!(rows[0][0].get::<i32, _>(0), Some(6));
}
