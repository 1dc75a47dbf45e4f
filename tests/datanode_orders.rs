//! A datanode's answers to the coordinator's orders (replicate a chunk, delete chunks),
//! sent straight to real datanodes of an in-process cluster with tokens signed by the
//! cluster's own key: bad sources are skipped, the new replica is recorded by the real
//! coordinator, and deletion respects recent acknowledgements.

use std::time::Duration;

use dfsd::chunk::ChunkId;
use dfsd::client::PutOptions;
use dfsd::proto::pb;
use dfsd::security::token::{Op, TokenKey};
use testkit::{eventually, random_bytes, InProcCluster, InProcNode, InProcOpts};
use tonic::transport::Channel;
use tonic::Code;

fn datanode(addr: &str) -> pb::datanode_client::DatanodeClient<Channel> {
    pb::datanode_client::DatanodeClient::new(
        dfsd::net::channel(addr, Duration::from_secs(3), None).unwrap(),
    )
}

fn order(
    key: &TokenKey,
    id: &ChunkId,
    size: usize,
    sources: Vec<pb::NodeAddr>,
) -> pb::ReplicateChunkRequest {
    pb::ReplicateChunkRequest {
        chunk_id: id.to_hex(),
        size: size as u64,
        sources,
        token: key.sign(Op::Replicate, &[*id], Duration::from_secs(600)),
        read_token: key.sign(Op::Read, &[*id], Duration::from_secs(600)),
    }
}

/// The node ids the coordinator lists as holding the one chunk of `path`.
async fn recorded_holders(c: &InProcCluster, path: &str) -> Vec<String> {
    let ch = dfsd::net::channel(&c.coordinator_addr, Duration::from_secs(3), None).unwrap();
    let r = pb::coordinator_client::CoordinatorClient::new(ch)
        .get_file(pb::GetFileRequest {
            path: path.into(),
            start_chunk: 0,
            max_chunks: 1,
        })
        .await
        .unwrap()
        .into_inner();
    r.chunks[0]
        .replicas
        .iter()
        .map(|n| n.node_id.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_skips_bad_sources_and_deletion_respects_recent_acks() {
    let mut opts = InProcOpts::default();
    // No maintenance round during the test: it would trim the third replica made here.
    opts.coordinator.maintenance_interval = Duration::from_secs(86_400);
    let c = InProcCluster::start_with(opts).await;
    let data = random_bytes(700_000, 7);
    let put = PutOptions {
        replication: 2,
        write_quorum: 2,
        ..PutOptions::default()
    };
    c.client().put(&data[..], "/f", &put).await.unwrap();
    let id = ChunkId::of(&data);
    let held = c.holders(&id);
    assert_eq!(held.len(), 2);
    let (a, b) = (&c.nodes[held[0]], &c.nodes[held[1]]);
    let dest_i = (0..3).find(|i| !held.contains(i)).unwrap();
    let dest = &c.nodes[dest_i];
    let src = |n: &InProcNode| pb::NodeAddr {
        node_id: n.id.clone(),
        addr: n.addr.clone(),
        public_addr: String::new(),
    };
    // A's copy rots (same length, wrong bytes): its reads no longer match the id.
    c.corrupt_replica(held[0], &id);
    let dead = pb::NodeAddr {
        node_id: "dn-dead".into(),
        addr: "http://127.0.0.1:1".into(),
        public_addr: String::new(),
    };
    let key = c.token_key();

    let resp = datanode(&dest.addr)
        .replicate_chunk(order(&key, &id, data.len(), vec![dead, src(a), src(b)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.source, b.id,
        "the unreachable and the corrupt source are skipped"
    );
    assert_eq!(
        std::fs::read(c.chunk_file(dest_i, &id).unwrap()).unwrap(),
        data
    );
    // The new replica reached the coordinator's records.
    let cluster = &c;
    eventually("dest's replica on record", Duration::from_secs(20), || {
        let want = dest.id.clone();
        async move { recorded_holders(cluster, "/f").await.contains(&want) }
    })
    .await;

    // Ordered again: already stored, answered at once.
    let again = datanode(&dest.addr)
        .replicate_chunk(order(&key, &id, data.len(), vec![src(a)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.source, dest.id);
    // The wrong size for a stored, intact chunk is the order's mistake.
    let e = datanode(&dest.addr)
        .replicate_chunk(order(&key, &id, 5, vec![src(b)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Nobody has it: NotFound, naming the sources tried.
    let missing = ChunkId::of(b"nobody has this");
    let e = datanode(&dest.addr)
        .replicate_chunk(order(&key, &missing, 15, vec![src(b)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains(&b.id), "{}", e.message());
    let mut bad = order(&key, &missing, 15, vec![src(b)]);
    bad.chunk_id = "../etc/passwd".into();
    let e = datanode(&dest.addr).replicate_chunk(bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Deletion: the fresh replica is protected, an invalid id refuses the whole order.
    let del = |ids: Vec<String>, protect_secs| {
        let parsed: Vec<ChunkId> = ids.iter().filter_map(|i| i.parse().ok()).collect();
        pb::DeleteChunksRequest {
            token: key.sign(Op::Delete, &parsed, Duration::from_secs(600)),
            chunk_ids: ids,
            protect_secs,
        }
    };
    let dest_file = c.chunk_file(dest_i, &id).unwrap();
    let e = datanode(&dest.addr)
        .delete_chunks(del(vec![id.to_hex(), "nope".into()], 0))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(dest_file.exists());
    let r = datanode(&dest.addr)
        .delete_chunks(del(vec![id.to_hex()], 3600))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.deleted.len(), r.kept.clone()), (0, vec![id.to_hex()]));
    assert!(dest_file.exists());
    let r = datanode(&dest.addr)
        .delete_chunks(del(vec![id.to_hex(), missing.to_hex()], 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.deleted, vec![id.to_hex(), missing.to_hex()]);
    assert_eq!(r.freed_bytes, data.len() as u64);
    assert!(!dest_file.exists());
}
