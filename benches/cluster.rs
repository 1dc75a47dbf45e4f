//! Cluster benchmark: `cargo bench --bench cluster` (or `just bench`).
//!
//! Starts a real local cluster (one coordinator and 3 datanodes as separate `dfsd`
//! processes on loopback, replication 2) with the integration-test harness, then measures:
//!
//! * put and get of one large random file (1 GiB by default) through the CLI binary, in
//!   MB/s (10^6 bytes per second), the download checked against the source's SHA-256;
//! * 2000 puts of distinct 4 KiB files from one client process through the SDK, one at a
//!   time and from 16 concurrent tasks, in files/s;
//! * peak RSS of the client and of the datanodes (and the coordinator) in each phase;
//! * when python3 has boto3 (and for the CLI rows, `aws` is on PATH): the same through
//!   the S3 gateway (HTTPS, a readwrite key) with benches/s3_bench.py: PutObject of the
//!   large file in one request, GetObject of it (hashed and checked), `aws s3 cp` up
//!   (multipart, 8 MiB parts, 10 threads) and down, and 2000 PutObjects of 4 KiB one at a
//!   time and from 16 threads, with the gateway's peak RSS in each phase. Run with
//!   `DFSD_BENCH_SIZE_MIB=5120` to see the gateway's memory stay flat for 5 GiB objects.
//!
//! `DFSD_BENCH_SIZE_MIB` sets the large file's size (default 1024) for a quick run.
//! Arguments are ignored: `cargo bench` passes `--bench`, and there is nothing to choose.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use sha2::{Digest, Sha256};

use dfsd::client::{Client, PutOptions};
use testkit::{random_bytes, Opts, TestCluster};

const MIB: u64 = 1024 * 1024;
/// The large file is generated and hashed in pieces of this size, so the benchmark itself
/// never holds more than one piece in memory.
const PIECE: u64 = 64 * MIB;
const SMALL_FILES: usize = 2000;
const SMALL_SIZE: usize = 4096;
const SMALL_TASKS: usize = 16;

/// One line of the results table. Memory figures are KiB; None = not measured.
struct Row {
    phase: String,
    time: Duration,
    rate: String,
    client_kib: Option<u64>,
    datanode_kib: Option<u64>,
    coordinator_kib: Option<u64>,
    gateway_kib: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    let size_mib = bench_size_mib()?;
    let size = size_mib * MIB;

    progress("starting a cluster: 1 coordinator, 3 datanodes, replication 2");
    let cluster = TestCluster::start_with(Opts {
        nodes: 3,
        replication: 2,
        ..Opts::default()
    });
    let procs = Procs::of(&cluster);
    let mut rows = Vec::new();

    // --- Large file through the CLI --------------------------------------------------
    let dir = cluster.dir.path();
    let source = dir.join("big.bin");
    progress(&format!(
        "writing {size_mib} MiB of random bytes to {}",
        source.display()
    ));
    let source_sha = write_random_file(&source, size)?;
    let label = size_label(size_mib);

    let cli_row = |name: &str, args: &[&str], stdout: Option<File>| -> anyhow::Result<Row> {
        progress(name);
        let (run, phase) = procs.measure(|| run_cli(&cluster, args, stdout));
        let run = run?;
        let rate = format!("{:.1} MB/s", size as f64 / 1e6 / run.time.as_secs_f64());
        Ok(phase.row(name.into(), run.time, rate, Some(run.max_rss_kib)))
    };
    let src = source.to_str().context("temp dir path is not UTF-8")?;
    rows.push(cli_row(
        &format!("put {label} (CLI, from file)"),
        &["put", src, "/bench/big"],
        None,
    )?);

    let copy = dir.join("big.copy");
    let dst = copy.to_str().context("temp dir path is not UTF-8")?;
    rows.push(cli_row(
        &format!("get {label} (CLI, to file)"),
        &["get", "/bench/big", dst],
        None,
    )?);
    ensure!(
        sha256_file(&copy)? == source_sha,
        "downloaded file's SHA-256 differs from the source's"
    );
    // The copy has served its purpose; deleting it keeps the temp dir's footprint down.
    std::fs::remove_file(&copy)?;

    let null = File::create("/dev/null")?;
    rows.push(cli_row(
        &format!("get {label} (CLI, to stdout)"),
        &["get", "/bench/big", "-"],
        Some(null),
    )?);

    // --- Small files through the SDK, from this process --------------------------------
    // Every file gets distinct bytes, and each run its own seed (far from the large file's
    // seeds 0, 1, ...): identical content would be deduplicated by the coordinator and no
    // bytes would travel, which flatters the result.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Creating a client spawns its connection tasks, which needs the runtime's context.
    let client = {
        let _ctx = rt.enter();
        cluster.client()
    };
    for (tasks, seed) in [(1, 1 << 32), (SMALL_TASKS, 2 << 32)] {
        let data = Arc::new(random_bytes(SMALL_FILES * SMALL_SIZE, seed));
        let remote_dir = format!("/bench/small-{tasks}");
        let how = if tasks == 1 {
            "sequential".to_string()
        } else {
            format!("{tasks} tasks")
        };
        progress(&format!(
            "{SMALL_FILES} puts of {} KiB, {how}",
            SMALL_SIZE / 1024
        ));
        // This process is the client here, so its own peak is reset like the servers'.
        let own_reset = reset_peak_rss("self");
        let (time, phase) =
            procs.measure(|| rt.block_on(put_small(&client, &remote_dir, &data, tasks)));
        let time = time?;
        let own_peak = if own_reset {
            peak_rss_kib("self")
        } else {
            None
        };
        rt.block_on(check_small(&client, &remote_dir, &data))?;
        rows.push(phase.row(
            format!(
                "{SMALL_FILES} x {} KiB puts (SDK, {how})",
                SMALL_SIZE / 1024
            ),
            time,
            format!("{:.0} files/s", SMALL_FILES as f64 / time.as_secs_f64()),
            own_peak,
        ));
    }

    // --- The same through the S3 gateway ------------------------------------------------
    if testkit::python_has_boto3() {
        s3_phases(
            &cluster,
            &procs,
            &source,
            &source_sha,
            size,
            &label,
            &mut rows,
        )?;
    } else {
        progress("skipping the S3 phases: python3 cannot import boto3 (pip install boto3 awscli)");
    }

    print_report(size_mib, &procs, &rows);
    Ok(())
}

/// The S3 rows: a gateway in front of the cluster, driven by benches/s3_bench.py.
fn s3_phases(
    cluster: &TestCluster,
    procs: &Procs,
    source: &Path,
    source_sha: &[u8; 32],
    size: u64,
    label: &str,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    progress("starting an S3 gateway");
    let gw = testkit::start_gateway(cluster, "");
    let gw_pid = gw.child.id().to_string();
    let key = cluster.create_key("bench-s3", "readwrite", "/");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/s3_bench.py");
    let has_aws = std::process::Command::new("aws")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let big = |what: &str| format!("{what} {label}");
    let mut phases = vec![
        ("put-big", big("PutObject"), Rate::Bytes),
        ("get-big", big("GetObject"), Rate::Bytes),
    ];
    if has_aws {
        phases.push(("cli-up", big("aws s3 cp up (multipart)"), Rate::Bytes));
        phases.push(("cli-down", big("aws s3 cp down"), Rate::Bytes));
    }
    phases.push((
        "small-1",
        format!("{SMALL_FILES} x 4 KiB PutObject, sequential"),
        Rate::Files,
    ));
    phases.push((
        "small-16",
        format!("{SMALL_FILES} x 4 KiB PutObject, 16 threads"),
        Rate::Files,
    ));
    for (phase, name, rate) in phases {
        progress(&name);
        reset_peak_rss(&gw_pid);
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(&script)
            .env("S3_ENDPOINT", &gw.endpoint)
            .env("S3_KEY", &key.0)
            .env("S3_SECRET", &key.1)
            .env("BIG_FILE", source)
            .env("BIG_SHA256", hex::encode(source_sha))
            .env("SMALL_N", SMALL_FILES.to_string())
            .env("PHASE", phase)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL");
        if let Some(sec) = &cluster.secure {
            cmd.env("S3_CA_BUNDLE", sec.ca());
        }
        let (out, peaks) = procs.measure(|| cmd.output());
        let out = out.context("run python3")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success(),
            "S3 phase {phase} failed:\n{stdout}\n{}\n--- gateway log\n{}",
            String::from_utf8_lossy(&out.stderr),
            gw.log()
        );
        let secs: f64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("seconds "))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("S3 phase {phase}: no timing in {stdout:?}"))?;
        let time = Duration::from_secs_f64(secs);
        let rate = match rate {
            Rate::Bytes => format!("{:.1} MB/s", size as f64 / 1e6 / secs),
            Rate::Files => format!("{:.0} files/s", SMALL_FILES as f64 / secs),
        };
        let mut row = peaks.row(name, time, rate, None);
        row.gateway_kib = peak_rss_kib(&gw_pid);
        rows.push(row);
    }
    Ok(())
}

enum Rate {
    Bytes,
    Files,
}

/// The large file's size in MiB: `DFSD_BENCH_SIZE_MIB`, default 1024. Must be called
/// before any other thread or child process starts.
fn bench_size_mib() -> anyhow::Result<u64> {
    let Ok(v) = std::env::var("DFSD_BENCH_SIZE_MIB") else {
        return Ok(1024);
    };
    // dfsd reads every DFSD_* variable as configuration and rejects unknown keys, so the
    // cluster and CLI processes must not inherit this one. Nothing else runs yet, so
    // changing the environment is safe here.
    std::env::remove_var("DFSD_BENCH_SIZE_MIB");
    v.trim()
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .with_context(|| format!("DFSD_BENCH_SIZE_MIB={v:?}: expected a positive integer"))
}

fn progress(msg: &str) {
    eprintln!("[bench] {msg}");
}

fn size_label(mib: u64) -> String {
    if mib.is_multiple_of(1024) {
        format!("{} GiB", mib / 1024)
    } else {
        format!("{mib} MiB")
    }
}

/// Writes `size` pseudo-random bytes to `path` and returns their SHA-256.
fn write_random_file(path: &Path, size: u64) -> anyhow::Result<[u8; 32]> {
    let mut f = File::create(path)?;
    let mut hasher = Sha256::new();
    let mut written = 0;
    let mut seed = 0;
    while written < size {
        let piece = random_bytes(PIECE.min(size - written) as usize, seed);
        hasher.update(&piece);
        f.write_all(&piece)?;
        written += piece.len() as u64;
        seed += 1;
    }
    // Flush the dirty pages now, or the kernel writes them back during the put and the
    // datanodes' fsyncs wait behind a gigabyte that is not theirs.
    f.sync_all()?;
    Ok(hasher.finalize().into())
}

fn sha256_file(path: &Path) -> anyhow::Result<[u8; 32]> {
    let mut f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 4 * MIB as usize];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buf[..n]);
    }
}

struct CliRun {
    time: Duration,
    max_rss_kib: u64,
}

/// Runs the CLI against the cluster, timed from spawn to exit. The child is reaped with
/// wait4 because its rusage is the only way to get the peak RSS of a process that is gone.
fn run_cli(cluster: &TestCluster, args: &[&str], stdout: Option<File>) -> anyhow::Result<CliRun> {
    let log = cluster.dir.path().join("cli.log");
    // The CLI must talk to this cluster only (its TLS settings and key), whatever the
    // caller's environment says.
    let mut cmd = cluster.cli_command();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(stdout.map_or_else(Stdio::null, Stdio::from))
        .stderr(File::create(&log)?);

    // Linux carries the spawning process's peak RSS into the child's ru_maxrss (exec
    // records the old address space's high-water mark, and that is ours). Resetting our
    // peak first brings that floor down to our current RSS, a few MiB.
    reset_peak_rss("self");
    let start = Instant::now();
    let child = cmd.spawn().context("spawn dfsd")?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain old data, so all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own unreaped child, and both out-pointers are valid.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).context("wait4");
        }
    }
    let time = start.elapsed();
    // Already reaped; dropping the handle neither waits nor kills.
    drop(child);

    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!(
            "dfsd {} failed (wait status {status}):\n{}",
            args.join(" "),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    // On Linux ru_maxrss is in KiB.
    let max_rss_kib = usage.ru_maxrss as u64;
    if peak_rss_kib("self").is_some_and(|own| max_rss_kib <= own) {
        progress(&format!(
            "note: the client's peak RSS is no more than this process's ({max_rss_kib} KiB), so it is an upper bound"
        ));
    }
    Ok(CliRun { time, max_rss_kib })
}

/// Puts `data` as SMALL_SIZE-byte files under `dir` from `tasks` concurrent tasks that
/// share one client; returns the wall-clock time.
async fn put_small(
    client: &Client,
    dir: &str,
    data: &Arc<Vec<u8>>,
    tasks: usize,
) -> anyhow::Result<Duration> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (client, data, next, dir) =
            (client.clone(), data.clone(), next.clone(), dir.to_string());
        set.spawn(async move {
            let opts = PutOptions::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= SMALL_FILES {
                    return anyhow::Ok(());
                }
                let body = &data[i * SMALL_SIZE..(i + 1) * SMALL_SIZE];
                client
                    .put(body, &format!("{dir}/{i:05}"), &opts)
                    .await
                    .with_context(|| format!("put {dir}/{i:05}"))?;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(start.elapsed())
}

/// Checks (untimed) that every small file exists and spot-checks a few contents.
async fn check_small(client: &Client, dir: &str, data: &[u8]) -> anyhow::Result<()> {
    let listed = client.list(dir).await?.len();
    ensure!(
        listed == SMALL_FILES,
        "{dir}: {listed} files listed, expected {SMALL_FILES}"
    );
    for i in [0, SMALL_FILES / 2, SMALL_FILES - 1] {
        let mut got = Vec::new();
        client
            .get(&format!("{dir}/{i:05}"), &mut got, Default::default())
            .await?;
        ensure!(
            got == data[i * SMALL_SIZE..(i + 1) * SMALL_SIZE],
            "{dir}/{i:05}: wrong bytes"
        );
    }
    Ok(())
}

/// The server processes whose memory is watched.
struct Procs {
    datanodes: Vec<u32>,
    coordinator: u32,
    /// Whether peaks could be reset between phases; if not, readings are cumulative.
    resettable: bool,
}

/// Server peaks over one phase, in KiB.
struct PhasePeaks {
    datanode: Option<u64>,
    coordinator: Option<u64>,
}

impl PhasePeaks {
    fn row(&self, phase: String, time: Duration, rate: String, client_kib: Option<u64>) -> Row {
        Row {
            phase,
            time,
            rate,
            client_kib,
            datanode_kib: self.datanode,
            coordinator_kib: self.coordinator,
            gateway_kib: None,
        }
    }
}

impl Procs {
    fn of(cluster: &TestCluster) -> Procs {
        let datanodes: Vec<u32> = cluster.nodes.iter().flatten().map(|p| p.pid()).collect();
        let coordinator = cluster
            .coordinator
            .as_ref()
            .expect("coordinator running")
            .pid();
        let resettable = datanodes
            .iter()
            .chain([&coordinator])
            .all(|pid| reset_peak_rss(&pid.to_string()));
        Procs {
            datanodes,
            coordinator,
            resettable,
        }
    }

    /// Runs one phase and returns its result with the servers' peak RSS during it.
    fn measure<T>(&self, phase: impl FnOnce() -> T) -> (T, PhasePeaks) {
        if self.resettable {
            for pid in self.datanodes.iter().chain([&self.coordinator]) {
                reset_peak_rss(&pid.to_string());
            }
        }
        let out = phase();
        let peaks = PhasePeaks {
            datanode: self
                .datanodes
                .iter()
                .filter_map(|p| peak_rss_kib(&p.to_string()))
                .max(),
            coordinator: peak_rss_kib(&self.coordinator.to_string()),
        };
        (out, peaks)
    }
}

/// Peak resident set (VmHWM) of a process in KiB, since it started or its last reset.
/// `pid` is a number or "self".
fn peak_rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Resets a process's VmHWM to its current RSS (Linux 4.0+), so that the next reading
/// covers only what follows rather than the whole life of a long-running server.
fn reset_peak_rss(pid: &str) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_else(|_| "unknown".into())
}

fn total_memory() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let kib: u64 = s
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            Some(format!("{:.1} GiB", kib as f64 / (1024.0 * 1024.0)))
        })
        .unwrap_or_else(|| "unknown".into())
}

fn print_report(size_mib: u64, procs: &Procs, rows: &[Row]) {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!("dfsd cluster benchmark");
    println!(
        "  machine : {nproc} CPUs, {}, {} RAM, {}",
        cpu_model(),
        total_memory(),
        kernel()
    );
    println!(
        "  cluster : 1 coordinator + {} datanodes (separate processes on loopback), replication 2, default client config",
        procs.datanodes.len()
    );
    println!("  large   : {size_mib} MiB random file (DFSD_BENCH_SIZE_MIB); MB/s = 10^6 bytes/s, wall clock incl. process start;");
    println!("            gets read chunks just written, so mostly from the page cache");
    println!(
        "  peaks   : VmHWM per phase{}; client = CLI child's ru_maxrss, or this process\n            for SDK rows (it holds the 8 MiB of payloads)",
        if procs.resettable { "" } else { " (NOT reset between phases: cumulative)" }
    );
    println!();
    let header = [
        "phase",
        "time",
        "throughput",
        "client RSS",
        "datanode RSS",
        "coord RSS",
        "gateway RSS",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.phase.clone(),
                format!("{:.2} s", r.time.as_secs_f64()),
                r.rate.clone(),
                mib(r.client_kib),
                mib(r.datanode_kib),
                mib(r.coordinator_kib),
                mib(r.gateway_kib),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cols: [&str; 7]| {
        let mut s = format!("{:<w$}", cols[0], w = widths[0]);
        for (c, w) in cols.iter().zip(widths).skip(1) {
            s.push_str(&format!("  {c:>w$}"));
        }
        println!("{}", s.trim_end());
    };
    line(header);
    line(widths.map(|w| "-".repeat(w)).each_ref().map(String::as_str));
    for row in &cells {
        line(row.each_ref().map(String::as_str));
    }
    println!(
        "(datanode RSS = the highest of the {} datanodes)",
        procs.datanodes.len()
    );
    println!();
    let max = |f: fn(&Row) -> Option<u64>| rows.iter().filter_map(f).max();
    println!(
        "peak RSS, client (any phase):   {}",
        mib(max(|r| r.client_kib))
    );
    println!(
        "peak RSS, datanode (any phase): {}",
        mib(max(|r| r.datanode_kib))
    );
    println!(
        "peak RSS, coordinator:          {}",
        mib(max(|r| r.coordinator_kib))
    );
    println!(
        "peak RSS, S3 gateway:           {}",
        mib(max(|r| r.gateway_kib))
    );
    println!("(S3 rows: boto3 / aws CLI over HTTPS, timed inside Python around the calls)");
}
