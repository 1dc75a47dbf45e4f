//! An upload outlives the coordinator forgetting it: receipts are bound to the access key,
//! not to the upload, so a client whose upload vanished (a coordinator restart, an idle
//! sweep) begins a new one, reports what it stored, and finishes the same put.

use std::time::Duration;

use bytes::Bytes;
use dfsd::client::{Client, PutOptions, ReadRange};
use testkit::admin;
use testkit::{random_bytes, wait_until, TestCluster};
use tokio::sync::mpsc;

const MIB: usize = 1 << 20;

/// A put fed from a channel, so the test decides when the input moves on. Returns the
/// sender and the task running the put.
fn slow_put(
    client: Client,
    path: &'static str,
) -> (
    mpsc::Sender<std::io::Result<Bytes>>,
    tokio::task::JoinHandle<dfsd::client::PutReport>,
) {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(1);
    let reader = tokio_util::io::StreamReader::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let task = tokio::spawn(async move {
        let opts = PutOptions {
            chunk_size: Some(MIB as u64),
            ..Default::default()
        };
        client.put(reader, path, &opts).await.unwrap()
    });
    (tx, task)
}

/// Chunk files held by every datanode together.
fn chunk_files(c: &TestCluster) -> usize {
    (0..c.nodes.len()).map(|i| c.chunk_files(i).len()).sum()
}

async fn read(client: &Client, path: &str) -> Vec<u8> {
    let mut got = Vec::new();
    client
        .get(path, &mut got, ReadRange::default())
        .await
        .unwrap();
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn a_put_carries_on_across_a_coordinator_restart() {
    let mut c = TestCluster::start(3);
    let client = c.client();
    let data = random_bytes(8 * MIB, 51);
    let (tx, task) = slow_put(client.clone(), "/restart/f");
    // Half the file goes in, and is stored (3 replicas of 4 chunks; a fifth chunk may be
    // read ahead and stored too).
    tx.send(Ok(Bytes::copy_from_slice(&data[..4 * MIB])))
        .await
        .unwrap();
    wait_until("the first half stored", Duration::from_secs(30), || {
        chunk_files(&c) >= 12
    });
    c.kill_coordinator();
    c.start_coordinator();
    c.wait_alive(3);
    // The rest: the client finds its upload unknown, begins a new one and finishes.
    tx.send(Ok(Bytes::copy_from_slice(&data[4 * MIB..])))
        .await
        .unwrap();
    drop(tx);
    let report = task.await.unwrap();
    assert_eq!(report.chunks, 8);
    assert_eq!(
        report.bytes_sent,
        data.len() as u64,
        "nothing was sent twice"
    );
    assert!(read(&c.client(), "/restart/f").await == data);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_put_carries_on_after_its_idle_upload_was_swept() {
    let c = admin::cluster(
        3,
        &[
            ("DFSD_COORDINATOR__UPLOAD_IDLE_TIMEOUT", "1s"),
            ("DFSD_COORDINATOR__GC_GRACE", "1h"),
        ],
    );
    let metrics = admin::admin_addr(&c, "coordinator");
    let client = c.client();
    let data = random_bytes(6 * MIB, 52);
    let (tx, task) = slow_put(client.clone(), "/idle/f");
    tx.send(Ok(Bytes::copy_from_slice(&data[..3 * MIB])))
        .await
        .unwrap();
    wait_until("the first chunks stored", Duration::from_secs(30), || {
        chunk_files(&c) >= 6
    });
    // The client stalls long enough for the coordinator to drop its upload.
    wait_until("the idle upload swept", Duration::from_secs(30), || {
        admin::val(&admin::scrape(&metrics), "dfsd_uploads_open") == 0.0
    });
    tx.send(Ok(Bytes::copy_from_slice(&data[3 * MIB..])))
        .await
        .unwrap();
    drop(tx);
    let report = task.await.unwrap();
    assert_eq!(report.chunks, 6);
    assert!(read(&client, "/idle/f").await == data);
    wait_until("no upload left open", Duration::from_secs(10), || {
        admin::val(&admin::scrape(&metrics), "dfsd_uploads_open") == 0.0
    });
}
