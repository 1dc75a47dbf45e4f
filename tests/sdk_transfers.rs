//! The SDK's upload and download paths against an in-process cluster (real coordinator,
//! real datanodes, real SQLite and disks, gRPC over loopback), with faults made by the
//! kit: downloads fail over from a hung and a corrupt replica, every replica bad is an
//! integrity failure, range reads are byte-exact across chunk boundaries, uploads
//! complete a pipeline without a node cut off, a write quorum that cannot be met is
//! `QuorumNotMet` with nothing committed, and an upload outlives a coordinator restart.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dfsd::chunk::ChunkId;
use dfsd::client::{ClientError, PutOptions, ReadRange};
use testkit::{eventually, random_bytes, InProcCluster};

const MIB: usize = 1 << 20;

fn one_mib_chunks() -> PutOptions {
    PutOptions {
        chunk_size: Some(MIB as u64),
        ..PutOptions::default()
    }
}

/// The ids of `data`'s chunks at 1 MiB.
fn chunk_ids(data: &[u8]) -> Vec<ChunkId> {
    data.chunks(MIB).map(ChunkId::of).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn downloads_fail_over_from_a_hung_and_a_corrupt_replica_to_the_good_one() {
    let c = InProcCluster::start(3).await;
    let data = random_bytes(4 * MIB + 12_345, 1);
    let put = c
        .client()
        .put(&data[..], "/f", &one_mib_chunks())
        .await
        .unwrap();
    assert_eq!(put.chunks, 5);
    let ids = chunk_ids(&data);
    for id in &ids {
        assert_eq!(c.holders(id), vec![0, 1, 2], "chunk {id}");
    }

    // Node 0 hangs (no answer, nothing closed); node 1's copies rot on disk. Only node 2
    // can serve, wherever the coordinator lists it.
    c.pause_node(0);
    for id in &ids {
        c.corrupt_replica(1, id);
    }
    let mut cfg = c.client_config();
    cfg.connect_timeout = Duration::from_secs(1);
    cfg.transfer_timeout = Duration::from_secs(2);
    let client = dfsd::client::Client::connect(&cfg, None).unwrap();
    // Paused, node 0 answers nothing and closes nothing: a call to it fails only at its
    // deadline (a closed port would fail at once). Node 1 still answers.
    let t = std::time::Instant::now();
    let ping = client
        .ping_datanode(&c.nodes[0].addr, Duration::from_millis(500))
        .await;
    assert!(ping.is_err(), "a paused node answered");
    assert!(t.elapsed() >= Duration::from_millis(500), "{ping:?}");
    client
        .ping_datanode(&c.nodes[1].addr, Duration::from_secs(3))
        .await
        .unwrap();
    let mut back = Vec::new();
    let r = client
        .get("/f", &mut back, ReadRange::default())
        .await
        .unwrap();
    assert!(back == data, "the bytes read back differ");
    assert_eq!((r.bytes, r.chunks_fetched), (data.len() as u64, 5));
    assert!(r.replicas_skipped <= 2 * 5, "{r:?}");
    c.reconnect(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chunk_whose_every_replica_is_corrupt_is_an_integrity_failure() {
    let c = InProcCluster::start(2).await;
    let data = random_bytes(300_000, 2);
    c.client()
        .put(&data[..], "/rotten", &one_mib_chunks())
        .await
        .unwrap();
    let id = ChunkId::of(&data);
    for i in c.holders(&id) {
        c.corrupt_replica(i, &id);
    }
    let mut out = Vec::new();
    let e = c
        .client()
        .get("/rotten", &mut out, ReadRange::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Integrity(_)), "{e:?}");
    assert!(out.is_empty(), "no unverified byte is written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn range_reads_are_byte_exact_across_chunk_boundaries() {
    let c = InProcCluster::start(2).await;
    let data = random_bytes(3 * MIB + MIB / 2, 3);
    let size = data.len() as u64;
    let client = c.client();
    client
        .put(&data[..], "/ranged", &one_mib_chunks())
        .await
        .unwrap();
    let m = MIB as u64;
    // (offset, length, chunks the range touches)
    let cases: [(u64, Option<u64>, usize); 8] = [
        (0, None, 4),
        (0, Some(1), 1),
        (m - 10, Some(20), 2),
        (m, Some(m), 1),
        (2 * m + m / 2 - 1, Some(m + 2), 2),
        (1, Some(3 * m), 4),
        (size - 5, None, 1),
        (size - 5, Some(1_000_000), 1),
    ];
    for (offset, length, chunks) in cases {
        let mut out = Vec::new();
        let r = client
            .get("/ranged", &mut out, ReadRange { offset, length })
            .await
            .unwrap();
        let end = length.map_or(size, |l| (offset + l).min(size));
        let want = &data[offset as usize..end as usize];
        assert!(out == want, "range {offset}+{length:?}: wrong bytes");
        assert_eq!(r.bytes, want.len() as u64, "range {offset}+{length:?}");
        assert_eq!(r.chunks_fetched, chunks, "range {offset}+{length:?}");
    }
    // At the end: nothing to read; past it: refused.
    let mut out = Vec::new();
    let r = client
        .get(
            "/ranged",
            &mut out,
            ReadRange {
                offset: size,
                length: None,
            },
        )
        .await
        .unwrap();
    assert_eq!((r.bytes, r.chunks_fetched, out.len()), (0, 0, 0));
    let e = client
        .get(
            "/ranged",
            &mut out,
            ReadRange {
                offset: size + 1,
                length: None,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Invalid(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_completes_its_pipelines_without_a_node_cut_off() {
    let c = InProcCluster::start(4).await;
    // The coordinator still counts node 0 alive (it is suspect only after 2 s of
    // silence), so with four replicas asked of four nodes every pipeline includes it.
    c.cut_off(0);
    let data = random_bytes(3 * MIB + 77, 4);
    let opts = PutOptions {
        replication: 4,
        write_quorum: 3,
        ..one_mib_chunks()
    };
    let client = c.client();
    let put = client.put(&data[..], "/f", &opts).await.unwrap();
    assert_eq!(put.chunks, 4);
    for id in chunk_ids(&data) {
        assert_eq!(c.holders(&id), vec![1, 2, 3], "chunk {id}");
    }
    let mut back = Vec::new();
    client
        .get("/f", &mut back, ReadRange::default())
        .await
        .unwrap();
    assert!(back == data, "the bytes read back differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_quorum_that_cannot_be_met_is_quorum_not_met_and_commits_nothing() {
    let c = InProcCluster::start(3).await;
    c.cut_off(0);
    let opts = PutOptions {
        replication: 3,
        write_quorum: 3,
        ..one_mib_chunks()
    };
    let client = c.client();
    let data = random_bytes(2 * MIB, 5);
    let e = client.put(&data[..], "/q", &opts).await.unwrap_err();
    assert!(matches!(e, ClientError::QuorumNotMet(_)), "{e:?}");
    let e = client.stat("/q").await.unwrap_err();
    assert!(matches!(e, ClientError::NotFound(_)), "{e:?}");
    // The same upload with a quorum the two reachable nodes can meet is committed.
    let opts = PutOptions {
        write_quorum: 2,
        ..opts
    };
    let put = client.put(&data[..], "/q", &opts).await.unwrap();
    assert_eq!(put.entry.size, data.len() as u64);
}

/// Log output captured for the test (the SDK logs each retry).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn contains(&self, s: &str) -> bool {
        String::from_utf8_lossy(&self.0.lock().unwrap()).contains(s)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_retries_while_the_coordinator_restarts_and_completes() {
    let logs = Captured::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("dfsd::client=warn")
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .init();
    let mut c = InProcCluster::start(3).await;
    let data = random_bytes(3 * MIB, 6);
    // The input arrives in two parts: the first chunk, then (after the coordinator went
    // down) the rest.
    let (mut input_tx, input) = tokio::io::duplex(4 * MIB);
    let client = c.client();
    let put = tokio::spawn(async move {
        let mut input = input;
        client.put(&mut input, "/r", &one_mib_chunks()).await
    });
    use tokio::io::AsyncWriteExt;
    input_tx.write_all(&data[..MIB]).await.unwrap();
    let first = ChunkId::of(&data[..MIB]);
    eventually("the first chunk stored", Duration::from_secs(20), || {
        let stored = c.holders(&first).len() == 3;
        async move { stored }
    })
    .await;

    c.kill_coordinator().await;
    input_tx.write_all(&data[MIB..]).await.unwrap();
    drop(input_tx);
    eventually(
        "the upload retrying against the stopped coordinator",
        Duration::from_secs(20),
        || {
            let seen = logs.contains("the coordinator is unreachable; retrying");
            async move { seen }
        },
    )
    .await;
    c.start_coordinator().await;

    let put = put.await.unwrap().unwrap();
    assert_eq!((put.chunks, put.entry.size), (3, data.len() as u64));
    let mut back = Vec::new();
    c.client()
        .get("/r", &mut back, ReadRange::default())
        .await
        .unwrap();
    assert!(back == data, "the bytes read back differ");
}
