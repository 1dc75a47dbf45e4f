//! Choosing datanodes for new replicas, the one rule for uploads, repair and drain:
//! [`eligible`] says which nodes may take a replica (alive, with room, not already
//! holding or refused by the caller), [`choose`] ranks them: distinct nodes, picked at
//! random with a weight proportional to free space, so fuller nodes fill more slowly
//! without any node being starved.

use rand::Rng;

use super::{NodeState, NodeView};
use crate::model::NodeEndpoint;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub node: NodeEndpoint,
    pub free_bytes: u64,
}

/// The nodes that may take a new replica of `size` bytes: alive (never suspect, dead or
/// draining), with at least `size` bytes free, and not `skip`ped by the caller (nodes
/// that hold the chunk already, that failed in a pipeline, or that are busy).
pub fn eligible<'a>(
    nodes: impl IntoIterator<Item = &'a (NodeView, NodeState)>,
    size: u64,
    skip: impl Fn(&str) -> bool,
) -> Vec<Candidate> {
    nodes
        .into_iter()
        .filter(|(v, s)| *s == NodeState::Alive && v.stats.free_bytes >= size && !skip(&v.id))
        .map(|(v, _)| Candidate {
            node: v.endpoint(),
            free_bytes: v.stats.free_bytes,
        })
        .collect()
}

/// Picks up to `count` distinct candidates, weighted by free bytes.
pub fn choose<R: Rng>(rng: &mut R, candidates: &[Candidate], count: usize) -> Vec<Candidate> {
    let mut pool: Vec<&Candidate> = candidates.iter().collect();
    let mut out = Vec::with_capacity(count);
    while out.len() < count && !pool.is_empty() {
        // Weight in MiB (at least 1) so huge disks don't overflow and empty ones still count.
        let weights: Vec<u64> = pool.iter().map(|c| (c.free_bytes >> 20).max(1)).collect();
        let total: u64 = weights.iter().sum();
        let mut pick = rng.random_range(0..total);
        let mut idx = 0;
        for (i, w) in weights.iter().enumerate() {
            if pick < *w {
                idx = i;
                break;
            }
            pick -= w;
        }
        out.push(pool.swap_remove(idx).clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn cand(id: &str, free_gib: u64) -> Candidate {
        Candidate {
            node: NodeEndpoint {
                id: id.into(),
                addr: id.into(),
                public_addr: String::new(),
            },
            free_bytes: free_gib << 30,
        }
    }

    #[test]
    fn picks_distinct_nodes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let cands = vec![cand("a", 1), cand("b", 1), cand("c", 1)];
        for _ in 0..100 {
            let got = choose(&mut rng, &cands, 3);
            let mut ids: Vec<_> = got.iter().map(|c| c.node.id.clone()).collect();
            ids.sort();
            assert_eq!(ids, vec!["a", "b", "c"]);
        }
        assert_eq!(choose(&mut rng, &cands, 5).len(), 3);
    }

    #[test]
    fn prefers_free_space() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let cands = vec![cand("big", 90), cand("small", 10)];
        let big = (0..2000)
            .filter(|_| choose(&mut rng, &cands, 1)[0].node.id == "big")
            .count();
        assert!((1700..1900).contains(&big), "big chosen {big} of 2000");
    }
}
