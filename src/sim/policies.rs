//! The policies `scale-sim` compares, each behind [`Controller`].

use std::collections::{BTreeMap, VecDeque};

use super::trace::Request;
use super::{Controller, Options, Sim, View};
use crate::stage::serving::policy::{
    Observation, PolicyState, ReplicaSample, ScalingPolicy, decide,
};
use crate::stage::serving::profile::Profile;

/// The `mlops` policy: [`decide`] on the pods' own metrics, read directly (no metrics
/// pipeline), token rates from counter deltas between ticks as the Lambda computes them.
pub struct Mlops {
    pub policy: ScalingPolicy,
    pub state: PolicyState,
    /// Per replica: (time, prompt tokens, generated tokens) at the previous tick.
    counters: BTreeMap<usize, (f64, u64, u64)>,
}

impl Mlops {
    pub fn new(policy: ScalingPolicy) -> Mlops {
        Mlops {
            policy,
            state: PolicyState::default(),
            counters: BTreeMap::new(),
        }
    }

    /// The defaults of a `serving.scaling` block naming this profile, with its start-up delay
    /// the simulated one; `headroom` as `serving.scaling.headroom`.
    pub fn for_profile(p: &Profile, o: &Options, headroom: f64) -> Mlops {
        Mlops::new(ScalingPolicy {
            headroom,
            ..ScalingPolicy::new(
                o.min_replicas,
                o.max_replicas,
                p.step_cost(),
                o.start_delay_s,
            )
        })
    }
}

impl Controller for Mlops {
    fn desired(&mut self, v: &View) -> u32 {
        let mut seen = BTreeMap::new();
        let ready = v
            .ready
            .iter()
            .map(|r| {
                let now = (v.now_s, r.prompt_tokens_total, r.generation_tokens_total);
                let rates = self.counters.get(&r.id).and_then(|&(t, p0, g0)| {
                    let dt = v.now_s - t;
                    (dt > 0.0).then(|| {
                        (
                            r.prompt_tokens_total.saturating_sub(p0) as f64 / dt,
                            r.generation_tokens_total.saturating_sub(g0) as f64 / dt,
                        )
                    })
                });
                seen.insert(r.id, now);
                Some(ReplicaSample {
                    running: r.running,
                    waiting: r.waiting,
                    kv_usage: Some(r.kv_usage),
                    prompt_tokens_per_s: rates.map(|r| r.0),
                    generation_tokens_per_s: rates.map(|r| r.1),
                    age_s: 0.0,
                })
            })
            .collect();
        self.counters = seen;
        let o = Observation {
            now_s: v.now_s,
            current: v.current,
            ready,
            pending: v.pending,
            unserved: f64::from(v.unserved),
        };
        decide(&self.policy, &o, &mut self.state).desired
    }
}

/// The seed's HPA: `vllm_requests_running`, target average 10, with Kubernetes' default
/// behaviour (CONTRACTS §10; `pkg/controller/podautoscaler/replica_calculator.go`): 15 s sync,
/// 10% tolerance; the usage ratio over the pods that report the metric, pods without it (not
/// ready yet) counted as 0 when scaling up and as at target when scaling down, desired =
/// ceil(ratio × pods); scale-up by at most max(100%, 4 pods) per period; scale-down to the highest
/// recommendation of the last 300 s. The metric arrives `lag_s` late (Prometheus scrape + adapter,
/// SERVING.md §3).
pub struct HpaSeed {
    pub target: f64,
    pub tolerance: f64,
    pub lag_s: f64,
    /// (time, sum of `running` over ready pods, how many reported).
    history: VecDeque<(f64, f64, u32)>,
    recommendations: VecDeque<(f64, u32)>,
}

impl HpaSeed {
    pub fn new() -> HpaSeed {
        HpaSeed {
            target: 10.0,
            tolerance: 0.1,
            lag_s: 30.0,
            history: VecDeque::new(),
            recommendations: VecDeque::new(),
        }
    }

    fn recommend(&self, v: &View, sum: f64, reporting: u32) -> u32 {
        let current = v.current;
        if reporting == 0 {
            return current;
        }
        let ratio = sum / f64::from(reporting) / self.target;
        if (ratio - 1.0).abs() <= self.tolerance {
            return current;
        }
        let pods = v.current.max(reporting);
        let missing = f64::from(pods - reporting);
        let filled = if ratio > 1.0 {
            sum
        } else {
            sum + missing * self.target
        };
        let new_ratio = filled / f64::from(pods) / self.target;
        if (new_ratio - 1.0).abs() <= self.tolerance || (ratio > 1.0) != (new_ratio > 1.0) {
            return current;
        }
        (new_ratio * f64::from(pods)).ceil() as u32
    }
}

impl Default for HpaSeed {
    fn default() -> Self {
        HpaSeed::new()
    }
}

impl Controller for HpaSeed {
    fn desired(&mut self, v: &View) -> u32 {
        let sum: f64 = v.ready.iter().map(|r| r.running).sum();
        self.history.push_back((v.now_s, sum, v.ready.len() as u32));
        // The newest sample at least `lag_s` old is what the metrics API serves now.
        while self.history.len() > 1 && v.now_s - self.history[1].0 >= self.lag_s {
            self.history.pop_front();
        }
        let current = v.current;
        let lagged = self
            .history
            .front()
            .copied()
            .filter(|h| v.now_s - h.0 >= self.lag_s);
        let mut desired = match lagged {
            Some((_, sum, reporting)) => self.recommend(v, sum, reporting),
            None => current,
        };
        // Scale-up limit: max(100% of current, 4 pods) per period.
        desired = desired.min((current * 2).max(current + 4));
        self.recommendations.push_back((v.now_s, desired));
        while self
            .recommendations
            .front()
            .is_some_and(|(t, _)| v.now_s - t > 300.0)
        {
            self.recommendations.pop_front();
        }
        if desired < current {
            // Scale-down stabilization: the highest recommendation of the window.
            desired = self
                .recommendations
                .iter()
                .map(|(_, d)| *d)
                .max()
                .unwrap_or(desired)
                .min(current);
        }
        desired
    }
}

/// The clairvoyant bound (SERVING.md §6): it knows every request ahead. Per window, the fewest
/// replicas with which at most `budget` of the window's requests miss the TTFT SLO (a request
/// that would miss it even on an idle replica does not count), found by simulating the window
/// from the state the previous windows left (their queues, their running batches) with that
/// many replicas ready from the window's start. Then, knowing those counts ahead, it asks at every
/// tick for the most any window until one start-up delay later needs, so each replica is
/// launched in time, paid for while it boots, and kept only while it will be needed again
/// before a new one could start.
#[derive(Debug, Clone)]
pub struct Oracle {
    window_s: f64,
    horizon_s: f64,
    needed: Vec<u32>,
}

impl Oracle {
    pub fn plan(reqs: &[Request], p: &Profile, o: &Options, window_s: f64, budget: f64) -> Oracle {
        let w_us = ((window_s * 1e6) as u64).max(1);
        let slo_us = (p.ttft_slo_s * 1e6) as u64;
        let windows = reqs.last().map_or(1, |r| r.arrival_us / w_us + 1) as usize;
        let mut needed = vec![o.min_replicas; windows];
        let mut sim = Sim::new(reqs, p, o.routing);
        let mut first = 0;
        for (w, n_out) in needed.iter_mut().enumerate() {
            let (start, end) = (w as u64 * w_us, (w as u64 + 1) * w_us);
            let last = first + reqs[first..].partition_point(|r| r.arrival_us < end);
            let counted: Vec<usize> = (first..last)
                .filter(|&i| p.isolated_ttft_s(reqs[i].prompt) <= p.ttft_slo_s)
                .collect();
            let allowed = (budget * (last - first) as f64).floor() as usize;
            let misses = |n: u32| {
                let mut probe = sim.clone();
                probe.scale_to(start, n, 0);
                // Until the last request of the window has had its SLO's worth of time.
                probe.run_until(end + slo_us);
                counted
                    .iter()
                    .filter(|&&i| probe.ttft_s(i).is_none_or(|t| t > p.ttft_slo_s))
                    .count()
            };
            let mut n = if last > first || sim.busy() {
                o.min_replicas.max(1)
            } else {
                o.min_replicas
            };
            while n < o.max_replicas && misses(n) > allowed {
                n += 1;
            }
            *n_out = n;
            sim.scale_to(start, n, 0);
            sim.run_until(end);
            first = last;
        }
        Oracle {
            window_s,
            horizon_s: o.start_delay_s + window_s,
            needed,
        }
    }
}

impl Oracle {
    /// Replicas each window needs, in order.
    pub fn needed(&self) -> &[u32] {
        &self.needed
    }

    /// What the first start-up delay needs: the count every policy starts from.
    pub fn initial(&self) -> u32 {
        self.desired_at(0.0)
    }

    fn desired_at(&self, now_s: f64) -> u32 {
        let first = (now_s / self.window_s).floor() as usize;
        let last = ((now_s + self.horizon_s) / self.window_s).floor() as usize;
        self.needed
            .iter()
            .skip(first)
            .take(last.saturating_sub(first) + 1)
            .copied()
            .max()
            .unwrap_or(0)
    }
}

impl Controller for Oracle {
    fn desired(&mut self, v: &View) -> u32 {
        self.desired_at(v.now_s)
    }
}
