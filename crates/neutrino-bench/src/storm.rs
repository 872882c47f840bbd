//! `neutrino storm`: a start-up storm of simulated host agents. Each one registers
//! (`POST /neutrino/v1/agents`), fetches the snapshot and opens its watch of the change feed, as
//! a real agent does when its host boots, without touching any kernel; all of them start within
//! `--window-ms`. Meanwhile a user reads the API every `--probe-every-ms`. An agent has
//! converged when its watch is open; the report says how long the crowd took, how often the
//! server asked agents to come back later (503 + `Retry-After`, honoured with jitter), and the
//! user's latencies during the storm.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use neutrino_types::agent_protocol::{self, AGENT_PROTOCOL_VERSION};
use reqwest::{Client, StatusCode};
use serde_json::json;

use crate::auth;
use crate::report::percentile;
use crate::BenchError;

/// `neutrino storm` options.
#[derive(Debug, Clone, clap::Args)]
pub struct StormArgs {
    /// Network API base URL (default: the catalog's network endpoint, see `neutrino bench`).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Keystone token of an admin or service user (default: log in with the OS_* variables).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Simulated agents.
    #[arg(long, value_name = "N", default_value_t = 300)]
    pub agents: usize,
    /// All agents start within this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub window_ms: u64,
    /// The user's probe (`GET /v2.0/networks?limit=1`) runs this often during the storm.
    #[arg(long, value_name = "MS", default_value_t = 10)]
    pub probe_every_ms: u64,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What a storm showed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StormReport {
    pub agents: usize,
    pub converged: usize,
    pub failed: usize,
    /// From the first agent's start to the last watch open.
    pub converge_ms: u64,
    /// Answers 503/429 with `Retry-After` the agents honoured.
    pub told_to_wait: usize,
    pub snapshot_bytes_total: u64,
    pub snapshot_revision: i64,
    pub probes: usize,
    pub probe_errors: usize,
    pub probe_p50_ms: f64,
    pub probe_p99_ms: f64,
    pub probe_max_ms: f64,
    pub first_failure: Option<String>,
}

impl StormReport {
    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Every agent converged and every probe answered.
    pub fn passed(&self) -> bool {
        self.converged == self.agents && self.failed == 0 && self.probe_errors == 0
    }
}

impl std::fmt::Display for StormReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "| start-up storm | |")?;
        writeln!(f, "|---|---:|")?;
        writeln!(
            f,
            "| agents converged | {} of {} |",
            self.converged, self.agents
        )?;
        writeln!(f, "| all converged after | {} ms |", self.converge_ms)?;
        writeln!(f, "| told to come back later | {} |", self.told_to_wait)?;
        writeln!(
            f,
            "| snapshot | revision {}, {} bytes served in all |",
            self.snapshot_revision, self.snapshot_bytes_total
        )?;
        writeln!(
            f,
            "| user probes during the storm | {} ({} errors) |",
            self.probes, self.probe_errors
        )?;
        writeln!(
            f,
            "| probe latency p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
            self.probe_p50_ms, self.probe_p99_ms, self.probe_max_ms
        )?;
        if let Some(why) = &self.first_failure {
            writeln!(f, "\nfirst failure: {why}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Tally {
    told_to_wait: AtomicUsize,
    snapshot_bytes: std::sync::atomic::AtomicU64,
    revision: std::sync::atomic::AtomicI64,
}

/// Runs the storm.
pub async fn run_storm(args: StormArgs) -> Result<StormReport, BenchError> {
    if args.agents == 0 || args.timeout == 0 || args.probe_every_ms == 0 {
        return Err(BenchError::InvalidArgs(
            "--agents, --timeout and --probe-every-ms must be at least 1".into(),
        ));
    }
    let timeout = Duration::from_secs(args.timeout);
    // Each simulated agent has a connection of its own, as a host would.
    let http = crate::api::client_builder(timeout)?
        .pool_max_idle_per_host(args.agents + 8)
        .build()?;
    let (url, token) = auth::resolve(
        &http,
        args.url.as_deref(),
        args.token.as_deref(),
        &crate::env_var,
    )
    .await?;
    let url: Arc<str> = Arc::from(url);
    let token: Arc<str> = Arc::from(token);
    let tally = Arc::new(Tally::default());
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();

    let probe = {
        let (http, url, token, done) = (http.clone(), url.clone(), token.clone(), done.clone());
        let every = Duration::from_millis(args.probe_every_ms);
        let agents = args.agents;
        tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            while done.load(Ordering::SeqCst) < agents {
                let at = Instant::now();
                let ok = http
                    .get(format!("{url}/v2.0/networks?limit=1"))
                    .header("X-Auth-Token", &*token)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                latencies.push(at.elapsed());
                errors += usize::from(!ok);
                tokio::time::sleep(every.saturating_sub(at.elapsed())).await;
            }
            (latencies, errors)
        })
    };

    let mut crowd = tokio::task::JoinSet::new();
    for i in 0..args.agents {
        let (http, url, token, tally, done) = (
            http.clone(),
            url.clone(),
            token.clone(),
            tally.clone(),
            done.clone(),
        );
        let delay = Duration::from_millis(args.window_ms * i as u64 / args.agents as u64);
        crowd.spawn(async move {
            tokio::time::sleep(delay).await;
            let outcome = one_agent(&http, &url, &token, i, &tally).await;
            let at = started.elapsed();
            done.fetch_add(1, Ordering::SeqCst);
            // Hold the watch open until the whole crowd is in (a real agent keeps it).
            outcome.map(|watch| (at, watch))
        });
    }
    let mut watches = Vec::new();
    let (mut converged, mut failed, mut last, mut first_failure) = (0, 0, Duration::ZERO, None);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = crowd.join_next() => match next {
                None => break,
                Some(Ok(Ok((at, watch)))) => {
                    converged += 1;
                    last = last.max(at);
                    watches.push(watch);
                }
                Some(Ok(Err(why))) => {
                    failed += 1;
                    first_failure.get_or_insert(why);
                }
                Some(Err(e)) => {
                    failed += 1;
                    first_failure.get_or_insert(e.to_string());
                }
            },
            _ = &mut deadline => {
                failed += args.agents - converged - failed;
                first_failure.get_or_insert(format!("timed out after {timeout:?}"));
                done.store(args.agents, Ordering::SeqCst);
                break;
            }
        }
    }
    drop(watches);
    let (latencies, probe_errors) = probe.await.unwrap_or_default();
    let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    Ok(StormReport {
        agents: args.agents,
        converged,
        failed,
        converge_ms: last.as_millis() as u64,
        told_to_wait: tally.told_to_wait.load(Ordering::SeqCst),
        snapshot_bytes_total: tally.snapshot_bytes.load(Ordering::SeqCst),
        snapshot_revision: tally.revision.load(Ordering::SeqCst),
        probes: ms.len(),
        probe_errors,
        probe_p50_ms: percentile(&ms, 50.0),
        probe_p99_ms: percentile(&ms, 99.0),
        probe_max_ms: ms.last().copied().unwrap_or(0.0),
        first_failure,
    })
}

/// One simulated agent: register, snapshot, open the watch (returned, still open).
async fn one_agent(
    http: &Client,
    url: &str,
    token: &str,
    index: usize,
    tally: &Tally,
) -> Result<reqwest::Response, String> {
    let host = format!("storm-{index:04}");
    let report = json!({"agent": {
        "host": host, "agent_type": "Neutrino agent", "binary": "neutrino-storm",
        "configurations": {"tunnel_ip": format!("198.18.{}.{}", index / 250, index % 250 + 1),
                           "tunnel_types": ["vxlan"]},
    }});
    patient(tally, || {
        http.post(format!("{url}/neutrino/v1/agents"))
            .header("X-Auth-Token", token)
            .header(agent_protocol::HEADER, AGENT_PROTOCOL_VERSION)
            .json(&report)
            .send()
    })
    .await?;
    let snapshot = patient(tally, || {
        http.get(format!("{url}/neutrino/v1/snapshot"))
            .header("X-Auth-Token", token)
            .header(agent_protocol::HEADER, AGENT_PROTOCOL_VERSION)
            .send()
    })
    .await?;
    let revision: i64 = snapshot
        .headers()
        .get("x-neutrino-revision")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .ok_or("the snapshot has no x-neutrino-revision header")?;
    // Read it whole, as an agent does (without parsing it: the crowd shares this machine).
    let body = snapshot.bytes().await.map_err(|e| e.to_string())?;
    tally
        .snapshot_bytes
        .fetch_add(body.len() as u64, Ordering::SeqCst);
    tally.revision.fetch_max(revision, Ordering::SeqCst);
    patient(tally, || {
        http.get(format!("{url}/neutrino/v1/watch?since={revision}"))
            .header("X-Auth-Token", token)
            .header(agent_protocol::HEADER, AGENT_PROTOCOL_VERSION)
            .send()
    })
    .await
}

/// Sends until the answer is a success, honouring 503/429 `Retry-After` (stretched by a
/// random half, as the real agent does); any other failure ends the agent.
async fn patient<F, Fut>(tally: &Tally, mut send: F) -> Result<reqwest::Response, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    loop {
        let resp = send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        match (status, after) {
            (StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS, Some(secs)) => {
                tally.told_to_wait.fetch_add(1, Ordering::SeqCst);
                let stretch = 1.0 + rand_fraction() * 0.5;
                tokio::time::sleep(Duration::from_secs(secs.min(600)).mul_f64(stretch)).await;
            }
            _ => {
                let body = resp.text().await.unwrap_or_default();
                return Err(format!(
                    "{status}: {}",
                    body.chars().take(300).collect::<String>()
                ));
            }
        }
    }
}

/// A fraction in [0, 1) from the clock and a counter (no random-number crate needed here).
fn rand_fraction() -> f64 {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) as u64;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}
