//! [`MetaStore`] over SQLite: each operation runs its statements on the writer (changes)
//! or on a reader of the pool (reads), on the blocking pool.

use std::collections::{HashMap, HashSet};

use super::{access, buckets, cluster, events, maintenance, namespace, security, SqliteStore};
use crate::chunk::ChunkId;
use crate::meta::{MetaStore, Reseal, Result};
use crate::model::{
    BucketRecord, ChunkHealth, CommitRequest, ComposeRequest, Doomed, EntryInfo, EventRecord,
    FileChunk, FileReport, Inode, InventoryItem, MkdirOptions, NodeRecord, NodeStatsRecord,
    Reconciled, Resealed, RevokedCert, StoreCounts,
};
use crate::path::DfsPath;
use crate::security::keys::AccessKey;

#[async_trait::async_trait]
impl MetaStore for SqliteStore {
    async fn resolve(&self, path: &DfsPath) -> Result<Option<Inode>> {
        let path = path.clone();
        self.read(move |c| namespace::resolve(c, &path)).await
    }

    async fn stat(&self, path: &DfsPath) -> Result<EntryInfo> {
        let path = path.clone();
        self.read(move |c| namespace::stat(c, &path)).await
    }

    async fn list(
        &self,
        dir: &DfsPath,
        start_after: &str,
        limit: usize,
    ) -> Result<(Vec<EntryInfo>, bool)> {
        let (dir, after) = (dir.clone(), start_after.to_string());
        self.read(move |c| namespace::list(c, &dir, &after, limit))
            .await
    }

    async fn mkdir(&self, path: &DfsPath, opts: MkdirOptions, now_ms: i64) -> Result<EntryInfo> {
        let path = path.clone();
        self.write(move |c| namespace::mkdir(c, &path, &opts, now_ms))
            .await
    }

    async fn delete(
        &self,
        path: &DfsPath,
        recursive: bool,
        expected_version: Option<u64>,
    ) -> Result<(u64, u64)> {
        let path = path.clone();
        self.write(move |c| namespace::delete(c, &path, recursive, expected_version))
            .await
    }

    async fn rename(&self, src: &DfsPath, dst: &DfsPath, now_ms: i64) -> Result<EntryInfo> {
        let (src, dst) = (src.clone(), dst.clone());
        self.write(move |c| namespace::rename(c, &src, &dst, now_ms))
            .await
    }

    async fn commit(&self, req: CommitRequest, now_ms: i64) -> Result<EntryInfo> {
        self.write(move |c| namespace::commit_file(c, &req, now_ms))
            .await
    }

    async fn compose(&self, req: ComposeRequest, now_ms: i64) -> Result<EntryInfo> {
        self.write(move |c| namespace::compose(c, &req, now_ms))
            .await
    }

    async fn file_chunks(&self, path: &DfsPath) -> Result<(EntryInfo, Vec<FileChunk>)> {
        let path = path.clone();
        self.read(move |c| namespace::file_chunks(c, &path)).await
    }

    async fn readable_chunks(
        &self,
        ids: Vec<ChunkId>,
        scope: Option<DfsPath>,
    ) -> Result<HashSet<ChunkId>> {
        self.read(move |c| access::readable_chunks(c, &ids, scope.as_ref()))
            .await
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRecord>> {
        self.read(|c| cluster::list_nodes(c)).await
    }

    async fn upsert_node(
        &self,
        id: &str,
        addr: &str,
        public_addr: &str,
        stats: NodeStatsRecord,
        now_ms: i64,
    ) -> Result<()> {
        let (id, addr, public) = (id.to_string(), addr.to_string(), public_addr.to_string());
        self.write(move |c| cluster::upsert_node(c, &id, &addr, &public, stats, now_ms))
            .await
    }

    async fn update_node_stats(
        &self,
        id: &str,
        stats: NodeStatsRecord,
        now_ms: i64,
    ) -> Result<bool> {
        let id = id.to_string();
        self.write(move |c| cluster::update_node_stats(c, &id, stats, now_ms))
            .await
    }

    async fn set_draining(&self, id: &str, draining: bool) -> Result<bool> {
        let id = id.to_string();
        self.write(move |c| maintenance::set_draining(c, &id, draining))
            .await
    }

    async fn delete_node(&self, id: &str) -> Result<bool> {
        let id = id.to_string();
        self.write(move |c| cluster::delete_node(c, &id)).await
    }

    async fn record_replicas(
        &self,
        node: &str,
        chunks: Vec<(ChunkId, u64)>,
        now_ms: i64,
    ) -> Result<()> {
        let node = node.to_string();
        self.write(move |c| cluster::record_replicas(c, &node, &chunks, now_ms))
            .await
    }

    async fn remove_replicas(&self, replicas: Vec<(ChunkId, String)>) -> Result<()> {
        self.write(move |c| cluster::remove_replicas(c, &replicas))
            .await
    }

    async fn replicas_of(&self, ids: Vec<ChunkId>) -> Result<HashMap<ChunkId, Vec<String>>> {
        self.read(move |c| cluster::replicas_of(c, &ids)).await
    }

    async fn chunk_sizes(&self, ids: Vec<ChunkId>) -> Result<HashMap<ChunkId, u64>> {
        self.read(move |c| cluster::chunk_sizes(c, &ids)).await
    }

    async fn chunks_on_node(&self, node: &str) -> Result<Vec<ChunkId>> {
        let node = node.to_string();
        self.read(move |c| maintenance::chunks_on_node(c, &node))
            .await
    }

    async fn replica_counts(&self) -> Result<HashMap<String, u64>> {
        self.read(|c| maintenance::replica_counts(c)).await
    }

    async fn chunk_health(&self) -> Result<Vec<ChunkHealth>> {
        self.read(|c| maintenance::chunk_health(c)).await
    }

    async fn gc_claim(
        &self,
        cutoff_ms: i64,
        limit: usize,
        protected: HashSet<ChunkId>,
    ) -> Result<Vec<Doomed>> {
        self.write(move |c| maintenance::gc_claim(c, cutoff_ms, limit, &protected))
            .await
    }

    async fn touch_chunks(&self, ids: Vec<ChunkId>, now_ms: i64) -> Result<HashSet<ChunkId>> {
        self.write(move |c| maintenance::touch_chunks_checked(c, &ids, now_ms))
            .await
    }

    async fn reconcile_inventory(
        &self,
        node: &str,
        inventory: HashMap<ChunkId, InventoryItem>,
        started_ms: i64,
        grace_secs: u64,
        now_ms: i64,
    ) -> Result<Reconciled> {
        let node = node.to_string();
        self.write(move |c| {
            maintenance::reconcile_inventory(c, &node, &inventory, started_ms, grace_secs, now_ms)
        })
        .await
    }

    async fn counts(&self) -> Result<StoreCounts> {
        self.read(|c| maintenance::counts(c)).await
    }

    async fn files_under(&self, path: &DfsPath, limit: usize) -> Result<(Vec<FileReport>, bool)> {
        let path = path.clone();
        self.read(move |c| maintenance::files_under(c, &path, limit))
            .await
    }

    async fn insert_events(&self, evs: Vec<EventRecord>, keep: u32) -> Result<Vec<u64>> {
        self.write(move |c| events::insert_events(c, &evs, keep))
            .await
    }

    async fn events_after(
        &self,
        after_id: u64,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<EventRecord>> {
        self.read(move |c| events::list_events(c, after_id, since_ms, limit))
            .await
    }

    async fn recent_events(&self, n: usize) -> Result<Vec<EventRecord>> {
        self.read(move |c| events::recent_events(c, n)).await
    }

    async fn insert_key(&self, key: &AccessKey) -> Result<()> {
        let key = key.clone();
        self.write(move |c| security::insert_key(c, &key)).await
    }

    async fn list_keys(&self) -> Result<Vec<AccessKey>> {
        self.read(|c| security::list_keys(c)).await
    }

    async fn revoke_key(&self, id: &str, now_ms: i64) -> Result<AccessKey> {
        let id = id.to_string();
        self.write(move |c| security::revoke_key(c, &id, now_ms))
            .await
    }

    async fn revoke_cert(&self, rec: &RevokedCert) -> Result<(RevokedCert, bool)> {
        let rec = rec.clone();
        self.write(move |c| security::revoke_cert(c, &rec)).await
    }

    async fn list_revoked_certs(&self) -> Result<Vec<RevokedCert>> {
        self.read(|c| security::list_revoked_certs(c)).await
    }

    async fn bucket(&self, path: &DfsPath) -> Result<BucketRecord> {
        let path = path.clone();
        self.read(move |c| buckets::get_bucket(c, &path)).await
    }

    async fn set_bucket(
        &self,
        path: &DfsPath,
        public_read: Option<bool>,
        cors: Option<Option<String>>,
    ) -> Result<BucketRecord> {
        let path = path.clone();
        self.write(move |c| buckets::set_bucket(c, &path, public_read, cors))
            .await
    }

    async fn public_buckets(&self) -> Result<HashSet<String>> {
        self.read(|c| buckets::public_buckets(c)).await
    }

    async fn legacy_cluster_secrets(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.write(|c| security::legacy_cluster_secrets(c)).await
    }

    async fn secret_fingerprints(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.write(|c| security::secret_fingerprints(c)).await
    }

    async fn record_secret_fingerprints(&self, prints: &[(&str, Vec<u8>)]) -> Result<()> {
        self.with_writer(|c| security::record_secret_fingerprints(c, prints))
    }

    async fn rotate_cluster_secrets(
        &self,
        reseal: &mut Reseal<'_>,
        prints: &[(&str, Vec<u8>)],
    ) -> Result<Resealed> {
        // Borrows from the caller, so it runs on the caller's thread: start-up only, with
        // nothing else waiting for the writer.
        self.with_writer(|c| security::rotate_cluster_secrets(c, reseal, prints))
    }

    async fn checkpoint_truncate(&self) -> Result<()> {
        self.write(|c| security::checkpoint_truncate(c)).await
    }
}
