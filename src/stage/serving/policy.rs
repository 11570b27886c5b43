//! The vLLM-aware scaling policy: pure, the same code in the `vllm-scaler` Lambda and in
//! `mlops scale-sim`.
//!
//! Why not an HPA on `vllm:num_requests_running` (the seed): that gauge saturates at the engine's
//! batch limit, so overload shows only in `vllm:num_requests_waiting`; it says nothing about how
//! much work the requests are (a 4k-token prompt costs forty times a 100-token one); and a GPU
//! replica takes minutes to arrive, so a policy that ignores replicas on their way scales up twice
//! for one burst. Here:
//!
//! - **Demand** is engine time: each replica's token rates (`vllm:prompt_tokens_total`,
//!   `vllm:generation_tokens_total`, per second) priced with the model/GPU pair's step-time
//!   coefficients (SERVING.md §2.2: prefill per token, decode per sequence and per 1k tokens of
//!   context, the context read from `vllm:kv_cache_usage_perc`), summed over replicas and
//!   averaged over `smoothing_s`: R replicas' worth of work.
//! - **Capacity** is square-root staffing (Halfin–Whitt; the "square root" rule of Gandhi et al.'s
//!   AutoScale that SERVING.md §6 cites): `R + headroom·√R` replicas, so the room kept for the
//!   bursts LLM traffic brings (a cluster of long prompts arriving together) grows with the
//!   square root of the load, not in proportion to it; never more than `max_utilization` busy.
//! - **Queue and KV pressure** add a replica when requests wait beyond a tolerance per replica,
//!   or wait while the KV cache is nearly full (`vllm:kv_cache_usage_perc`, or the older
//!   `vllm:gpu_cache_usage_perc`), even when the token rates look fine.
//! - **Scale-up** counts replicas still starting as capacity on the way and adds at most
//!   `max_surge` per decision.
//! - **Scale-down** is slow: only when every recommendation over the stabilization window is
//!   lower, one replica at a time, and never on missing or stale metrics.
//! - **Scale to zero** (optional) after an idle period; requests waiting at the gateway wake it.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// One engine step's cost (SERVING.md §2.2): `c0 + c_p·P + c_d·D + c_kv·K/1000` milliseconds for
/// P prefill tokens, D decoding sequences holding K tokens of context.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepCost {
    pub c_prefill_ms_per_token: f64,
    pub c_decode_ms_per_seq: f64,
    pub c_kv_ms_per_1k_tokens: f64,
    /// KV-cache capacity in tokens (turns `kv_cache_usage_perc` into context tokens).
    pub kv_cache_tokens: u64,
}

/// The policy's knobs (a model's `serving.scaling` block; [`ScalingPolicy::new`] holds the
/// defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingPolicy {
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub cost: StepCost,
    /// β of square-root staffing: `R + β·√R` replicas for R replicas' worth of engine time.
    pub headroom: f64,
    /// The busiest a replica is planned to be (0..1], whatever the square-root rule says.
    pub max_utilization: f64,
    /// Seconds of samples the load is averaged over (token counters are lumpy over 15 s).
    pub smoothing_s: f64,
    /// Mean requests waiting per ready replica above which a replica is added (when none is
    /// already starting).
    pub max_waiting_per_replica: f64,
    /// Mean KV-cache usage (0..1) above which waiting requests mean memory, not compute, binds.
    pub kv_high: f64,
    /// Most replicas added by one decision.
    pub max_surge: u32,
    /// Seconds every recommendation must stay below the current count before one replica goes.
    /// At least as long as a replica takes to start (the ski-rental break-even: holding an idle
    /// replica that long costs what bringing it back would), and by default at least ten
    /// minutes, because a replica let go too early costs requests over the SLO as well as GPU
    /// time.
    pub scale_down_window_s: f64,
    /// With `min_replicas: 0`: seconds without any request before scaling to zero.
    pub idle_to_zero_s: Option<f64>,
    /// A sample older than this is stale: it may drive a scale-up, never a scale-down.
    pub stale_after_s: f64,
}

/// The default square-root headroom β.
pub const DEFAULT_HEADROOM: f64 = 1.2;
pub const DEFAULT_MAX_UTILIZATION: f64 = 0.8;
pub const DEFAULT_SMOOTHING_S: f64 = 30.0;
/// The shortest default stabilization window.
pub const MIN_SCALE_DOWN_WINDOW_S: f64 = 600.0;

fn positive(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

impl ScalingPolicy {
    /// The defaults for a model whose replicas take `start_up_s` to become ready.
    pub fn new(min_replicas: u32, max_replicas: u32, cost: StepCost, start_up_s: f64) -> Self {
        ScalingPolicy {
            min_replicas,
            max_replicas,
            cost,
            headroom: DEFAULT_HEADROOM,
            max_utilization: DEFAULT_MAX_UTILIZATION,
            smoothing_s: DEFAULT_SMOOTHING_S,
            max_waiting_per_replica: 4.0,
            kv_high: 0.85,
            max_surge: 4,
            scale_down_window_s: start_up_s.max(MIN_SCALE_DOWN_WINDOW_S),
            idle_to_zero_s: None,
            stale_after_s: 60.0,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.max_replicas == 0 || self.min_replicas > self.max_replicas {
            return Err(format!(
                "scaling: need 0 <= min_replicas <= max_replicas and max_replicas >= 1, got {}..{}",
                self.min_replicas, self.max_replicas
            ));
        }
        let c = &self.cost;
        for (name, v) in [
            ("c_prefill_ms_per_token", c.c_prefill_ms_per_token),
            ("c_decode_ms_per_seq", c.c_decode_ms_per_seq),
            ("c_kv_ms_per_1k_tokens", c.c_kv_ms_per_1k_tokens),
        ] {
            if !positive(v) {
                return Err(format!("scaling.cost.{name} must be a positive number"));
            }
        }
        if c.kv_cache_tokens == 0 {
            return Err("scaling.cost.kv_cache_tokens must be at least 1".into());
        }
        if !(self.headroom.is_finite() && self.headroom >= 0.0) {
            return Err("scaling.headroom must be >= 0".into());
        }
        if !(positive(self.max_utilization) && self.max_utilization <= 1.0) {
            return Err("scaling.max_utilization must be in (0, 1]".into());
        }
        if !(self.max_waiting_per_replica.is_finite() && self.max_waiting_per_replica >= 0.0) {
            return Err("scaling.max_waiting_per_replica must be >= 0".into());
        }
        if !(0.0..=1.0).contains(&self.kv_high) {
            return Err("scaling.kv_high must be between 0 and 1".into());
        }
        if self.max_surge == 0 {
            return Err("scaling.max_surge must be at least 1".into());
        }
        for (name, v) in [
            ("smoothing", self.smoothing_s),
            ("scale_down_window", self.scale_down_window_s),
            ("stale_after", self.stale_after_s),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("scaling.{name} must be >= 0 seconds"));
            }
        }
        match self.idle_to_zero_s {
            Some(_) if self.min_replicas != 0 => {
                Err("scaling.idle_to_zero needs min_replicas: 0".into())
            }
            Some(v) if !(v.is_finite() && v >= 0.0) => {
                Err("scaling.idle_to_zero must be >= 0 seconds".into())
            }
            _ => Ok(()),
        }
    }

    /// Engine time per second one replica's sample shows (0 = idle, 1 = computing all the time),
    /// or `None` without token rates.
    pub fn utilization(&self, s: &ReplicaSample) -> Option<f64> {
        let (prompt, generated) = (s.prompt_tokens_per_s?, s.generation_tokens_per_s?);
        let c = &self.cost;
        // Context per decoding sequence, from the KV blocks they hold.
        let ctx = s.kv_usage.unwrap_or(0.0) * c.kv_cache_tokens as f64 / s.running.max(1.0);
        let ms = c.c_prefill_ms_per_token * prompt
            + generated * (c.c_decode_ms_per_seq + c.c_kv_ms_per_1k_tokens * ctx / 1000.0);
        Some((ms / 1000.0).max(0.0))
    }

    /// Replicas for `load` replicas' worth of engine time.
    pub fn replicas_for(&self, load: f64) -> u32 {
        let load = load.max(0.0);
        let staffed = load + self.headroom * load.sqrt();
        let capped = load / self.max_utilization;
        (staffed.max(capped) - 1e-9).ceil().max(0.0) as u32
    }
}

/// One ready replica's metrics, as scraped.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReplicaSample {
    /// `vllm:num_requests_running`.
    pub running: f64,
    /// `vllm:num_requests_waiting`.
    pub waiting: f64,
    /// `vllm:kv_cache_usage_perc` (or `vllm:gpu_cache_usage_perc`), 0..1.
    pub kv_usage: Option<f64>,
    /// Rate of `vllm:prompt_tokens_total` since the previous scrape (`None` on the first one).
    pub prompt_tokens_per_s: Option<f64>,
    /// Rate of `vllm:generation_tokens_total` since the previous scrape.
    pub generation_tokens_per_s: Option<f64>,
    /// Seconds since it was scraped.
    pub age_s: f64,
}

/// What the policy sees at one evaluation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    /// Seconds on any monotonic clock (the same one across evaluations).
    pub now_s: f64,
    /// The replica count currently asked for (the Deployment's `spec.replicas`).
    pub current: u32,
    /// Ready replicas: one entry each, `None` where its metrics could not be read.
    pub ready: Vec<Option<ReplicaSample>>,
    /// Replicas asked for but not ready yet (node, image, weights, engine start).
    pub pending: u32,
    /// Requests waiting with no replica to take them (a gateway's queue; wakes a scaled-to-zero
    /// model).
    pub unserved: f64,
}

/// The policy's memory between evaluations (stored in S3 by the Lambda).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PolicyState {
    /// (time, replicas needed) of recent evaluations, oldest first.
    pub recommendations: VecDeque<(f64, u32)>,
    pub last_scale_up_s: Option<f64>,
    pub last_scale_down_s: Option<f64>,
    /// Since when no request was seen.
    pub idle_since_s: Option<f64>,
    /// (time, summed utilization) of the evaluations of the last `smoothing_s`, oldest first.
    #[serde(default)]
    pub utilization: VecDeque<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub desired: u32,
    pub reason: String,
    /// The inputs, for the `ServingScaled` event: requests running + waiting, the summed
    /// utilization (replicas' worth of engine time, smoothed), mean KV-cache usage.
    pub in_flight: f64,
    pub waiting: f64,
    pub utilization: Option<f64>,
    pub kv_usage: Option<f64>,
}

pub fn decide(p: &ScalingPolicy, o: &Observation, state: &mut PolicyState) -> Decision {
    let fresh: Vec<&ReplicaSample> = o
        .ready
        .iter()
        .flatten()
        .filter(|s| s.age_s <= p.stale_after_s)
        .collect();
    let rated: Vec<f64> = fresh.iter().filter_map(|s| p.utilization(s)).collect();
    // Blind: a ready replica without a fresh sample with rates. It may still scale up.
    let blind = rated.len() < o.ready.len();
    let in_flight: f64 = fresh.iter().map(|s| s.running + s.waiting).sum::<f64>() + o.unserved;
    let waiting: f64 = fresh.iter().map(|s| s.waiting).sum::<f64>();
    let kv: Vec<f64> = fresh.iter().filter_map(|s| s.kv_usage).collect();
    let kv_usage = (!kv.is_empty()).then(|| kv.iter().sum::<f64>() / kv.len() as f64);
    // Replicas without a usable sample are assumed as loaded as the others: a guess either way,
    // and this one can only scale up.
    let now_util = (!rated.is_empty())
        .then(|| rated.iter().sum::<f64>() * o.ready.len() as f64 / rated.len() as f64);
    let ready = o.ready.len() as u32;
    let utilization = now_util.map(|u| {
        state.utilization.push_back((o.now_s, u));
        while state
            .utilization
            .front()
            .is_some_and(|(t, _)| o.now_s - t > p.smoothing_s)
        {
            state.utilization.pop_front();
        }
        state.utilization.iter().map(|(_, u)| u).sum::<f64>() / state.utilization.len() as f64
    });
    let mut needed = p.replicas_for(utilization.unwrap_or(0.0));
    let queued = !fresh.is_empty() && waiting / fresh.len() as f64 > p.max_waiting_per_replica;
    let kv_bound = kv_usage.is_some_and(|k| k >= p.kv_high) && waiting > 0.0;
    if queued || kv_bound {
        needed = needed.max(ready + 1);
    }
    let busy = in_flight > 0.0 || utilization.is_some_and(|u| u > 0.0);
    if busy {
        state.idle_since_s = None;
        needed = needed.max(1);
    } else if state.idle_since_s.is_none() {
        state.idle_since_s = Some(o.now_s);
    }
    let floor = p.min_replicas;
    needed = needed.clamp(floor, p.max_replicas);

    state.recommendations.push_back((o.now_s, needed));
    while state
        .recommendations
        .front()
        .is_some_and(|(t, _)| o.now_s - t > p.scale_down_window_s)
    {
        state.recommendations.pop_front();
    }

    let on_the_way = ready + o.pending;
    let decision = |desired: u32, reason: String| Decision {
        desired,
        reason,
        in_flight,
        waiting,
        utilization,
        kv_usage,
    };
    let load = match utilization {
        Some(u) => format!("load {u:.2} replicas' worth"),
        None => "no token rates yet".to_owned(),
    };
    // Wake up from zero.
    if o.current == 0 {
        if o.unserved > 0.0 || busy {
            let desired = needed.max(1).min(p.max_surge).min(p.max_replicas);
            state.last_scale_up_s = Some(o.now_s);
            return decision(
                desired,
                format!("{in_flight:.0} requests waiting with no replica: waking up"),
            );
        }
        return decision(0, "scaled to zero, no requests".into());
    }
    // Scale up: what is needed beyond what is ready or starting, bounded by the surge.
    if needed > on_the_way.max(o.current) {
        let desired = needed.min(o.current.max(on_the_way) + p.max_surge);
        state.last_scale_up_s = Some(o.now_s);
        let why = if kv_bound {
            format!(
                "KV cache {:.0}% full with {waiting:.0} waiting",
                kv_usage.unwrap_or(0.0) * 100.0
            )
        } else if queued {
            format!("{waiting:.0} requests waiting on {ready} ready replicas")
        } else {
            format!(
                "{load} needs {needed} (load + {} x sqrt(load)) ({ready} ready, {} starting)",
                p.headroom, o.pending
            )
        };
        return decision(desired, why);
    }
    if o.current < floor {
        return decision(floor, format!("below min_replicas {floor}"));
    }
    if o.current > p.max_replicas {
        return decision(
            p.max_replicas,
            format!("above max_replicas {}", p.max_replicas),
        );
    }
    // Scale down: slowly, never blind, never while replicas are still starting.
    if blind {
        return decision(
            o.current,
            "metrics missing or stale for a ready replica: no scale-down".into(),
        );
    }
    if o.pending > 0 {
        return decision(o.current, "replicas still starting".into());
    }
    let since = [state.last_scale_up_s, state.last_scale_down_s]
        .into_iter()
        .flatten()
        .fold(f64::MIN, f64::max);
    // The window must be covered by what was seen (a fresh state knows nothing yet), and a
    // window must have passed since the last change.
    let covered = state
        .recommendations
        .front()
        .is_some_and(|(t, _)| o.now_s - t >= p.scale_down_window_s);
    let settled = covered && o.now_s - since >= p.scale_down_window_s;
    let window_max = state
        .recommendations
        .iter()
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(needed);
    if let (Some(after), Some(idle)) = (p.idle_to_zero_s, state.idle_since_s)
        && o.now_s - idle >= after
        && floor == 0
    {
        state.last_scale_down_s = Some(o.now_s);
        return decision(
            0,
            format!("no requests for {:.0} s: scaling to zero", o.now_s - idle),
        );
    }
    if settled && window_max < o.current && o.current > floor.max(1) {
        state.last_scale_down_s = Some(o.now_s);
        return decision(
            o.current - 1,
            format!(
                "at most {window_max} needed over the last {:.0} s: one replica fewer",
                p.scale_down_window_s
            ),
        );
    }
    decision(o.current, format!("{load}: {needed} needed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const C_P: f64 = 0.09;

    fn policy() -> ScalingPolicy {
        let cost = StepCost {
            c_prefill_ms_per_token: C_P,
            c_decode_ms_per_seq: 0.25,
            c_kv_ms_per_1k_tokens: 0.04,
            kv_cache_tokens: 470_000,
        };
        ScalingPolicy {
            scale_down_window_s: 180.0,
            ..ScalingPolicy::new(1, 8, cost, 180.0)
        }
    }

    /// A replica whose token rates cost `util` of its engine time (prompt tokens only, so the
    /// arithmetic stays visible), with `waiting` requests queued.
    fn sample(util: f64, waiting: f64) -> Option<ReplicaSample> {
        Some(ReplicaSample {
            running: 10.0,
            waiting,
            kv_usage: Some(0.3),
            prompt_tokens_per_s: Some(util * 1000.0 / C_P),
            generation_tokens_per_s: Some(0.0),
            age_s: 5.0,
        })
    }

    fn obs(now: f64, current: u32, ready: Vec<Option<ReplicaSample>>, pending: u32) -> Observation {
        Observation {
            now_s: now,
            current,
            ready,
            pending,
            unserved: 0.0,
        }
    }

    fn loaded(total: f64, replicas: u32) -> Vec<Option<ReplicaSample>> {
        (0..replicas)
            .map(|_| sample(total / f64::from(replicas), 0.0))
            .collect()
    }

    #[test]
    fn utilization_prices_prompt_and_decode_tokens_with_the_step_costs() {
        let p = policy();
        let s = ReplicaSample {
            running: 100.0,
            waiting: 0.0,
            // 0.2 × 470k = 94k tokens over 100 sequences: 940 tokens of context each.
            kv_usage: Some(0.2),
            prompt_tokens_per_s: Some(5000.0),
            generation_tokens_per_s: Some(1000.0),
            age_s: 0.0,
        };
        // 0.09 × 5000 + 1000 × (0.25 + 0.04 × 0.94) = 450 + 287.6 ms per second.
        let u = p.utilization(&s).expect("rates");
        assert!((u - 0.7376).abs() < 1e-9, "{u}");
        let first_scrape = ReplicaSample {
            prompt_tokens_per_s: None,
            ..s
        };
        assert_eq!(p.utilization(&first_scrape), None);
    }

    #[test]
    fn a_burst_scales_up_by_at_most_the_surge_and_counts_replicas_on_the_way() {
        let p = ScalingPolicy {
            max_surge: 1,
            ..policy()
        };
        let mut s = PolicyState::default();
        // Two replicas computing all the time with requests queued: 2 + 1.2·√2 = 3.7, 4 needed.
        let busy = || vec![sample(1.0, 20.0), sample(1.0, 20.0)];
        let d = decide(&p, &obs(0.0, 2, busy(), 0), &mut s);
        assert_eq!(d.desired, 3, "{}", d.reason);
        let d = decide(&p, &obs(15.0, 3, busy(), 1), &mut s);
        assert_eq!(d.desired, 4, "{}", d.reason);
        // Enough on the way: the same load, for minutes, asks for nothing more.
        for i in 2..20 {
            let d = decide(&p, &obs(f64::from(i) * 15.0, 4, busy(), 2), &mut s);
            assert_eq!(d.desired, 4, "{}", d.reason);
        }
        // With the default surge, one decision goes straight to 4.
        let d = decide(
            &policy(),
            &obs(0.0, 2, busy(), 0),
            &mut PolicyState::default(),
        );
        assert_eq!(d.desired, 4, "{}", d.reason);
    }

    #[test]
    fn requests_queued_beyond_the_tolerance_add_a_replica_when_none_is_starting() {
        let p = policy();
        let mut s = PolicyState::default();
        // Little engine time (long waits for KV or batch slots), but 10 waiting per replica.
        let d = decide(
            &p,
            &obs(0.0, 2, vec![sample(0.3, 10.0), sample(0.3, 10.0)], 0),
            &mut s,
        );
        assert_eq!(d.desired, 3, "{}", d.reason);
        assert!(d.reason.contains("waiting"), "{}", d.reason);
        let d = decide(
            &p,
            &obs(15.0, 3, vec![sample(0.3, 10.0), sample(0.3, 10.0)], 1),
            &mut s,
        );
        assert_eq!(d.desired, 3, "one is on its way: {}", d.reason);
        // Within the tolerance: nothing.
        let d = decide(
            &p,
            &obs(0.0, 2, vec![sample(0.3, 3.0), sample(0.3, 3.0)], 0),
            &mut PolicyState::default(),
        );
        assert_eq!(d.desired, 2, "{}", d.reason);
    }

    #[test]
    fn a_ramp_follows_the_load_and_max_caps_it() {
        let p = policy();
        let mut s = PolicyState::default();
        let mut current = 1;
        for (i, load) in [0.4, 0.8, 1.2, 2.0, 3.0, 6.0, 6.0, 6.0]
            .into_iter()
            .enumerate()
        {
            let d = decide(
                &p,
                &obs(i as f64 * 15.0, current, loaded(load, current), 0),
                &mut s,
            );
            assert!(d.desired >= current && d.desired <= 8, "{}", d.reason);
            current = d.desired;
        }
        assert_eq!(current, 8, "max_replicas caps the ramp");
    }

    #[test]
    fn headroom_grows_with_the_square_root_of_the_load_and_utilization_is_capped() {
        let p = policy();
        // R + 1.2·√R, rounded up: 1 → 2.2, 4 → 6.4, 16 → 20.8 replicas.
        assert_eq!(p.replicas_for(0.0), 0);
        assert_eq!(p.replicas_for(1.0), 3);
        assert_eq!(p.replicas_for(4.0), 7);
        assert_eq!(p.replicas_for(16.0), 21);
        // 64 + 9.6 would run each replica at 87%: the 80% cap asks for 80.
        assert_eq!(p.replicas_for(64.0), 80);
        let bare = ScalingPolicy {
            headroom: 0.0,
            max_utilization: 1.0,
            ..policy()
        };
        assert_eq!(bare.replicas_for(2.5), 3);
        // The load is averaged over `smoothing_s`: one lumpy 15 s sample does not decide alone.
        let mut s = PolicyState::default();
        decide(&p, &obs(0.0, 3, loaded(1.0, 3), 0), &mut s);
        decide(&p, &obs(15.0, 3, loaded(1.0, 3), 0), &mut s);
        let d = decide(&p, &obs(30.0, 3, loaded(4.0, 3), 0), &mut s);
        assert_eq!(d.utilization, Some(2.0), "{}", d.reason);
        assert_eq!(d.desired, 4, "2 + 1.2·√2 = 3.7: {}", d.reason);
    }

    #[test]
    fn idle_load_scales_down_one_at_a_time_after_the_window_and_not_below_min() {
        let p = policy();
        let mut s = PolicyState::default();
        let mut current = 4;
        let mut changes = vec![];
        for i in 0..100 {
            let now = f64::from(i) * 15.0;
            let d = decide(&p, &obs(now, current, loaded(0.1, current), 0), &mut s);
            assert!(d.desired + 1 >= current, "one step at a time: {}", d.reason);
            if d.desired != current {
                changes.push(now);
                current = d.desired;
            }
        }
        assert_eq!(current, 1);
        assert!(
            changes.windows(2).all(|w| w[1] - w[0] >= 180.0),
            "{changes:?}"
        );
        assert!(changes[0] >= 180.0, "{changes:?}");
    }

    #[test]
    fn flapping_load_does_not_flap_the_replicas() {
        let p = policy();
        let mut s = PolicyState::default();
        let mut current = 3;
        let mut changes = 0;
        for i in 0..80 {
            let load = if i % 2 == 0 { 1.4 } else { 0.3 };
            let d = decide(
                &p,
                &obs(f64::from(i) * 15.0, current, loaded(load, current), 0),
                &mut s,
            );
            if d.desired != current {
                changes += 1;
                current = d.desired;
            }
        }
        assert_eq!(changes, 0, "the high half of the flap keeps 3 needed");
        assert_eq!(current, 3);
    }

    #[test]
    fn missing_stale_or_rateless_metrics_never_scale_down() {
        let p = policy();
        let mut s = PolicyState::default();
        let stale = Some(ReplicaSample {
            age_s: 300.0,
            ..sample(0.0, 0.0).expect("sample")
        });
        let rateless = Some(ReplicaSample {
            prompt_tokens_per_s: None,
            generation_tokens_per_s: None,
            ..sample(0.0, 0.0).expect("sample")
        });
        for ready in [
            vec![sample(0.0, 0.0), None, sample(0.0, 0.0)],
            vec![sample(0.0, 0.0), stale, sample(0.0, 0.0)],
            vec![sample(0.0, 0.0), rateless, sample(0.0, 0.0)],
            vec![None, None, None],
        ] {
            for i in 0..60 {
                let d = decide(&p, &obs(f64::from(i) * 15.0, 3, ready.clone(), 0), &mut s);
                assert_eq!(d.desired, 3, "{}", d.reason);
            }
        }
        // Blind, yet loaded: a scale-up is still allowed (the fresh replica speaks for all).
        let d = decide(
            &p,
            &obs(1000.0, 3, vec![sample(1.0, 60.0), None, None], 0),
            &mut s,
        );
        assert!(d.desired > 3, "{}", d.reason);
    }

    #[test]
    fn kv_pressure_with_waiting_requests_adds_a_replica() {
        let p = policy();
        let mut s = PolicyState::default();
        let full = ReplicaSample {
            kv_usage: Some(0.97),
            ..sample(0.3, 2.0).expect("sample")
        };
        let d = decide(&p, &obs(0.0, 2, vec![Some(full), Some(full)], 0), &mut s);
        assert_eq!(d.desired, 3, "{}", d.reason);
        assert!(d.reason.contains("KV cache"), "{}", d.reason);
        // A full cache with nothing waiting is just a busy replica.
        let busy = Some(ReplicaSample {
            waiting: 0.0,
            ..full
        });
        let d = decide(&p, &obs(15.0, 3, vec![busy, busy, busy], 0), &mut s);
        assert_eq!(d.desired, 3, "{}", d.reason);
    }

    #[test]
    fn scale_to_zero_after_idle_and_wake_up_on_waiting_requests() {
        let p = ScalingPolicy {
            min_replicas: 0,
            idle_to_zero_s: Some(600.0),
            ..policy()
        };
        p.validate().expect("valid");
        let mut s = PolicyState::default();
        let mut current = 1;
        let idle = || {
            Some(ReplicaSample {
                running: 0.0,
                ..sample(0.0, 0.0).expect("sample")
            })
        };
        for i in 0..60 {
            let ready = (0..current).map(|_| idle()).collect();
            current = decide(&p, &obs(f64::from(i) * 15.0, current, ready, 0), &mut s).desired;
        }
        assert_eq!(current, 0);
        let d = decide(&p, &obs(1000.0, 0, vec![], 0), &mut s);
        assert_eq!(d.desired, 0, "{}", d.reason);
        let woken = Observation {
            unserved: 5.0,
            ..obs(1015.0, 0, vec![], 0)
        };
        let d = decide(&p, &woken, &mut s);
        assert_eq!(d.desired, 1, "{}", d.reason);
    }

    #[test]
    fn min_and_max_are_enforced_and_checked() {
        let p = ScalingPolicy {
            min_replicas: 2,
            ..policy()
        };
        let mut s = PolicyState::default();
        assert_eq!(
            decide(&p, &obs(0.0, 1, loaded(0.0, 1), 0), &mut s).desired,
            2
        );
        assert_eq!(
            decide(&p, &obs(15.0, 10, loaded(0.0, 10), 0), &mut s).desired,
            8
        );
        p.validate().expect("valid");
        for bad in [
            ScalingPolicy {
                min_replicas: 9,
                ..policy()
            },
            ScalingPolicy {
                max_utilization: 0.0,
                ..policy()
            },
            ScalingPolicy {
                max_utilization: 1.5,
                ..policy()
            },
            ScalingPolicy {
                headroom: f64::NAN,
                ..policy()
            },
            ScalingPolicy {
                idle_to_zero_s: Some(60.0),
                ..policy()
            },
            ScalingPolicy {
                cost: StepCost {
                    c_prefill_ms_per_token: f64::NAN,
                    ..policy().cost
                },
                ..policy()
            },
            ScalingPolicy {
                max_surge: 0,
                ..policy()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
