//! `mlops scale-sim`: the policies side by side on one trace.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::sim::policies::{HpaSeed, Mlops, Oracle};
use crate::sim::{Controller, Options, Routing, RunResult, percentile, run, trace};
use crate::stage::serving::policy::DEFAULT_HEADROOM;
use crate::stage::serving::profile::{self, PROFILES_YAML, Profile};

pub struct Args {
    pub trace: PathBuf,
    pub policies: Vec<String>,
    pub profile: String,
    pub profiles: Option<PathBuf>,
    pub rate_scale: f64,
    pub start_delay_s: Option<f64>,
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub plot: Option<PathBuf>,
    /// The `mlops` policy's square-root headroom.
    pub headroom: f64,
    /// `least-work` or `least-requests`.
    pub routing: String,
    /// Multiplies the profile's step-time coefficients (sensitivity).
    pub step_scale: f64,
}

/// The oracle's window and its allowance of requests over the SLO per window: none that an
/// idle replica would have served in time.
pub const ORACLE_WINDOW_S: f64 = 60.0;
pub const ORACLE_BUDGET: f64 = 0.0;

pub fn load_profile(name: &str, file: Option<&Path>) -> anyhow::Result<Profile> {
    let text = match file {
        Some(f) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        None => PROFILES_YAML.to_owned(),
    };
    let all = profile::parse(&text).map_err(|e| anyhow::anyhow!(e))?;
    all.get(name).cloned().ok_or_else(|| {
        anyhow::anyhow!(
            "no profile {name:?}; known: {}",
            all.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })
}

/// One policy's run.
pub fn simulate(
    policy: &str,
    reqs: &[trace::Request],
    p: &Profile,
    o: &Options,
    oracle: &Oracle,
    headroom: f64,
) -> anyhow::Result<RunResult> {
    let mut c: Box<dyn Controller> = match policy {
        "mlops" => Box::new(Mlops::for_profile(p, o, headroom)),
        "hpa-seed" => Box::new(HpaSeed::new()),
        "oracle" => Box::new(oracle.clone()),
        other => anyhow::bail!("unknown policy {other:?} (mlops, hpa-seed, oracle)"),
    };
    Ok(run(reqs, p, o, c.as_mut()))
}

pub fn table(rows: &[(String, RunResult)], p: &Profile) -> String {
    let mut out = format!(
        "{:<9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>9} {:>7} {:>5}\n",
        "policy", "GPU-h", "$", "TTFT p50", "p95", "p99", "queue p95", "over SLO", "events", "peak"
    );
    for (name, r) in rows {
        out.push_str(&format!(
            "{:<9} {:>9.2} {:>9.2} {:>8.3}s {:>8.3}s {:>8.3}s {:>10.3}s {:>8.2}% {:>7} {:>5}\n",
            name,
            r.gpu_hours,
            r.dollars,
            percentile(&r.ttft_s, 0.50),
            percentile(&r.ttft_s, 0.95),
            percentile(&r.ttft_s, 0.99),
            percentile(&r.queue_wait_s, 0.95),
            r.over_slo(p.ttft_slo_s) * 100.0,
            r.scale_events,
            r.peak_replicas,
        ));
    }
    out
}

/// How `mlops` compares with the others (the target, in words).
pub fn summary(rows: &[(String, RunResult)], p: &Profile) -> String {
    let find = |n: &str| rows.iter().find(|(name, _)| name == n).map(|(_, r)| r);
    let Some(m) = find("mlops") else {
        return String::new();
    };
    let mut out = String::new();
    if let Some(h) = find("hpa-seed") {
        out.push_str(&format!(
            "mlops vs hpa-seed: {:.0}% fewer GPU-hours, {} vs {} requests over the TTFT SLO\n",
            (1.0 - m.gpu_hours / h.gpu_hours) * 100.0,
            m.over_slo_count(p.ttft_slo_s),
            h.over_slo_count(p.ttft_slo_s),
        ));
    }
    if let Some(o) = find("oracle") {
        out.push_str(&format!(
            "mlops vs oracle: {:.2}× its GPU-hours ({} vs {} requests over the TTFT SLO)\n",
            m.gpu_hours / o.gpu_hours,
            m.over_slo_count(p.ttft_slo_s),
            o.over_slo_count(p.ttft_slo_s),
        ));
    }
    out
}

/// Every policy named on the same requests, from the count the oracle starts with (which it
/// sets in `o`).
pub fn compare(
    reqs: &[trace::Request],
    p: &Profile,
    o: &mut Options,
    policies: &[String],
    headroom: f64,
) -> anyhow::Result<Vec<(String, RunResult)>> {
    let oracle = Oracle::plan(reqs, p, o, ORACLE_WINDOW_S, ORACLE_BUDGET);
    o.initial_replicas = oracle.initial();
    policies
        .iter()
        .map(|name| Ok((name.clone(), simulate(name, reqs, p, o, &oracle, headroom)?)))
        .collect()
}

/// The demo's serving section: the first ten minutes of the committed trace under each
/// policy, with the default profile and a 3-minute start-up delay.
pub fn demo_replay() -> anyhow::Result<String> {
    const TRACE: &str = include_str!("../../samples/traces/azure_conv_2023.csv");
    const PROFILE: &str = "llama-3-70b-tp4-h100";
    let p = load_profile(PROFILE, None)?;
    let all = trace::parse(TRACE, 1.0).map_err(|e| anyhow::anyhow!(e))?;
    let reqs: Vec<trace::Request> = all
        .into_iter()
        .take_while(|r| r.arrival_us < 600_000_000)
        .collect();
    let mut o = Options {
        min_replicas: 1,
        max_replicas: 8,
        initial_replicas: 1,
        start_delay_s: 180.0,
        tick_s: 15.0,
        routing: Routing::LeastWork,
    };
    let policies = ["mlops", "hpa-seed", "oracle"].map(String::from);
    let rows = compare(&reqs, &p, &mut o, &policies, DEFAULT_HEADROOM)?;
    Ok(format!(
        "{} requests (the first 10 minutes of samples/traces/azure_conv_2023.csv), profile \
         {PROFILE}, replicas 1..8, start-up delay 180 s, TTFT SLO {} s:\n{}{}",
        reqs.len(),
        p.ttft_slo_s,
        table(&rows, &p),
        summary(&rows, &p)
    ))
}

pub fn run_cli(a: &Args) -> anyhow::Result<()> {
    if !(a.step_scale.is_finite() && a.step_scale > 0.0) {
        anyhow::bail!("--step-scale must be a positive number");
    }
    if !(a.headroom.is_finite() && a.headroom >= 0.0) {
        anyhow::bail!("--headroom must be a number >= 0");
    }
    let routing = match a.routing.as_str() {
        "least-work" => Routing::LeastWork,
        "least-requests" => Routing::LeastRequests,
        other => anyhow::bail!("--routing {other:?}: expected least-work or least-requests"),
    };
    let p = load_profile(&a.profile, a.profiles.as_deref())?.scaled(a.step_scale);
    let text = std::fs::read_to_string(&a.trace)
        .with_context(|| format!("reading {}", a.trace.display()))?;
    let reqs = trace::parse(&text, a.rate_scale)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.trace.display()))?;
    if a.min_replicas > a.max_replicas || a.max_replicas == 0 {
        anyhow::bail!("need --min <= --max and --max >= 1");
    }
    let mut o = Options {
        min_replicas: a.min_replicas,
        max_replicas: a.max_replicas,
        initial_replicas: a.min_replicas,
        start_delay_s: a.start_delay_s.unwrap_or(p.start_delay_s),
        tick_s: 15.0,
        routing,
    };
    if !(o.start_delay_s.is_finite() && o.start_delay_s >= 0.0) {
        anyhow::bail!("--start-delay must be >= 0 seconds");
    }
    let rows = compare(&reqs, &p, &mut o, &a.policies, a.headroom)?;
    let header = format!(
        "{} requests from {} at rate ×{}, profile {} ({} GPU/replica, ${}/replica-h), replicas {}..{} (starting from {}), start-up delay {:.0} s, TTFT SLO {} s, routing {}\n",
        reqs.len(),
        a.trace.display(),
        a.rate_scale,
        a.profile,
        p.gpus,
        p.price_per_hour,
        o.min_replicas,
        o.max_replicas,
        o.initial_replicas,
        o.start_delay_s,
        p.ttft_slo_s,
        a.routing
    );
    super::stdout(&(header + &table(&rows, &p) + &summary(&rows, &p)))?;
    if let Some(path) = &a.plot {
        crate::sim::plot::svg(path, &rows, &p)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        super::stdout(&format!("plot: {}\n", path.display()))?;
    }
    Ok(())
}
