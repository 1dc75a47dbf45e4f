//! Repair benchmark: `cargo bench --bench repair` (or `just bench-repair`).
//!
//! A 4-node local cluster with the DEFAULT failure timeouts (heartbeat 2 s, suspect 6 s,
//! dead 30 s) stores enough data at replication 3 that one datanode holds about 1 GiB of
//! replicas. That node is SIGKILLed; the benchmark reports the seconds until the
//! coordinator marks it suspect and dead (detection), the seconds until every chunk is
//! back to 3 live replicas (full redundancy), and the repair throughput.
//!
//! `DFSD_BENCH_REPAIR_MIB` sets how much the victim should hold (default 1024).

use std::time::{Duration, Instant};

use testkit::{Opts, TestCluster};

const MIB: u64 = 1024 * 1024;

fn main() -> anyhow::Result<()> {
    let want_mib: u64 = std::env::var("DFSD_BENCH_REPAIR_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let env = [
        ("DFSD_COORDINATOR__HEARTBEAT_INTERVAL", "2s"),
        ("DFSD_COORDINATOR__SUSPECT_AFTER", "6s"),
        ("DFSD_COORDINATOR__DEAD_AFTER", "30s"),
        ("DFSD_DATANODE__SCRUB_START_DELAY", "1h"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut c = TestCluster::start_with(Opts {
        nodes: 4,
        replication: 3,
        env,
    });

    // With 4 nodes at replication 3 each node holds about 3/4 of the data.
    let total_mib = want_mib * 4 / 3;
    let local = c.dir.path().join("data");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&local)?;
        for i in 0..total_mib.div_ceil(64) {
            f.write_all(&testkit::random_bytes((64 * MIB) as usize, i))?;
        }
    }
    eprintln!("storing {total_mib} MiB at replication 3 on 4 datanodes...");
    let out = c.cli(&["put", local.to_str().unwrap(), "/repair-bench"]);
    anyhow::ensure!(
        out.status.success(),
        "put failed: {}",
        testkit::stderr(&out)
    );
    std::fs::remove_file(&local)?;

    let held = |i: usize| -> u64 {
        c.chunk_files(i)
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum()
    };
    let victim = (0..4).max_by_key(|&i| held(i)).unwrap();
    let victim_bytes = held(victim);
    let victim_id = std::fs::read_to_string(c.node_dir(victim).join("node_id"))?
        .trim()
        .to_string();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let client = {
        let _g = rt.enter();
        c.client()
    };
    let state_of = |client: &dfsd::client::Client| -> Option<dfsd::model::NodeState> {
        rt.block_on(client.nodes())
            .unwrap_or_default()
            .into_iter()
            .find(|n| n.node_id == victim_id)
            .and_then(|n| n.state)
    };

    eprintln!(
        "SIGKILL of node {victim} ({victim_id}) holding {:.0} MiB",
        victim_bytes as f64 / MIB as f64
    );
    let t0 = Instant::now();
    c.kill_node(victim);
    let mut suspect_at = None;
    let dead_at;
    loop {
        let s = state_of(&client);
        if suspect_at.is_none() && s == Some(dfsd::model::NodeState::Suspect) {
            suspect_at = Some(t0.elapsed());
        }
        if s == Some(dfsd::model::NodeState::Dead) {
            dead_at = t0.elapsed();
            break;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(120),
            "node never marked dead"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let full_at;
    loop {
        let f = rt.block_on(client.fsck("/", false))?;
        if f.under_replicated_chunks == 0 && f.missing_chunks == 0 {
            full_at = t0.elapsed();
            break;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(1800),
            "never back to full redundancy"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = rt.block_on(client.status())?;
    let repair_secs = (full_at - dead_at).as_secs_f64();
    println!();
    println!("dfsd repair benchmark (4 datanodes, replication 3, default timeouts)");
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_model()
    );
    println!(
        "victim held:             {:>8.0} MiB in replicas",
        victim_bytes as f64 / MIB as f64
    );
    println!(
        "marked suspect after:    {:>8.1} s",
        suspect_at.map(|d| d.as_secs_f64()).unwrap_or(f64::NAN)
    );
    println!(
        "marked dead after:       {:>8.1} s (detection)",
        dead_at.as_secs_f64()
    );
    println!(
        "full redundancy after:   {:>8.1} s from the kill, {:.1} s after detection",
        full_at.as_secs_f64(),
        repair_secs
    );
    println!(
        "re-replicated:           {:>8.0} MiB in {} chunk copies",
        status.repair_bytes_done as f64 / MIB as f64,
        status.repairs_done
    );
    println!(
        "repair throughput:       {:>8.1} MB/s",
        status.repair_bytes_done as f64 / 1e6 / repair_secs.max(1e-3)
    );
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
