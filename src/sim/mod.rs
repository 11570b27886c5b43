//! `mlops scale-sim`: replays a request trace through a discrete-event model of vLLM replicas
//! ([`engine`]) under a scaling policy, and reports GPU-hours, dollars, TTFT and scale events.
//! Deterministic: no randomness, a total order on simultaneous events.
//!
//! Policies: `mlops` (the [`crate::stage::serving::policy`] the Lambda runs), `hpa-seed` (the
//! seed's HPA on `vllm_requests_running` with Kubernetes' default behaviour) and `oracle`
//! (knows the future, pays the same start-up delay: SERVING.md §6's clairvoyant bound).

pub mod engine;
pub mod plot;
pub mod policies;
pub mod trace;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::stage::serving::profile::Profile;
use engine::{Engine, StepOutcome};
use trace::Request;

const US: f64 = 1_000_000.0;

/// One ready replica as a controller sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaView {
    pub running: f64,
    pub waiting: f64,
    pub kv_usage: f64,
    /// The replica's counters so far (`vllm:prompt_tokens_total`, `vllm:generation_tokens_total`).
    pub prompt_tokens_total: u64,
    pub generation_tokens_total: u64,
    /// Stable identity (a pod name): counters are per replica.
    pub id: usize,
}

/// What a controller sees at a tick.
#[derive(Debug, Clone)]
pub struct View {
    pub now_s: f64,
    /// Replicas asked for (ready, starting), excluding draining ones.
    pub current: u32,
    pub ready: Vec<ReplicaView>,
    pub pending: u32,
    /// Requests waiting with no ready replica.
    pub unserved: u32,
}

/// A scaling policy under simulation.
pub trait Controller {
    fn desired(&mut self, view: &View) -> u32;
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// Replicas ready at the start (the trace is a slice of a service already running; every
    /// policy starts from the same count). At least `min_replicas`.
    pub initial_replicas: u32,
    pub start_delay_s: f64,
    /// Controller period (the HPA's sync period).
    pub tick_s: f64,
    pub routing: Routing,
}

/// How the gateway in front of the replicas picks one for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Routing {
    /// The fewest prompt tokens waiting to be prefilled, then the fewest requests: the
    /// queue-depth scoring of an LLM-aware gateway (Gateway API Inference Extension, llm-d).
    #[default]
    LeastWork,
    /// The fewest requests in flight (join the shortest queue), blind to their sizes.
    LeastRequests,
}

/// A point of the run's timeline (one per tick).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t_s: f64,
    pub in_flight: u32,
    pub ready: u32,
    pub replicas: u32,
    /// p95 TTFT of the first tokens since the previous sample.
    pub ttft_p95_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    pub gpu_hours: f64,
    pub dollars: f64,
    /// Seconds, per request (`NaN` for one that never got a token: none do, runs end drained).
    pub ttft_s: Vec<f64>,
    pub queue_wait_s: Vec<f64>,
    pub scale_events: u32,
    pub peak_replicas: u32,
    pub timeline: Vec<Sample>,
}

/// A first token later than the SLO, or none at all (`NaN`).
pub fn misses(ttft_s: f64, slo_s: f64) -> bool {
    ttft_s.is_nan() || ttft_s > slo_s
}

impl RunResult {
    pub fn over_slo_count(&self, slo_s: f64) -> usize {
        self.ttft_s.iter().filter(|t| misses(**t, slo_s)).count()
    }

    pub fn over_slo(&self, slo_s: f64) -> f64 {
        if self.ttft_s.is_empty() {
            return 0.0;
        }
        self.over_slo_count(slo_s) as f64 / self.ttft_s.len() as f64
    }
}

/// Nearest-rank percentile of unsorted values (`NaN` sorts last).
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Arrival(usize),
    Ready(usize),
    StepEnd(usize),
    Tick,
}

#[derive(Clone)]
struct Replica {
    engine: Engine,
    launched_us: u64,
    ready: bool,
    draining: bool,
    stopped_us: Option<u64>,
}

#[derive(Clone)]
pub(crate) struct Sim<'a> {
    reqs: &'a [Request],
    p: &'a Profile,
    routing: Routing,
    heap: BinaryHeap<Reverse<(u64, u64, Event)>>,
    order: u64,
    replicas: Vec<Replica>,
    unserved: VecDeque<usize>,
    ttft: Vec<Option<u64>>,
    queued: Vec<Option<u64>>,
    done: usize,
    window_ttft: Vec<f64>,
}

impl<'a> Sim<'a> {
    /// Every request of `reqs` scheduled to arrive; no replica yet.
    pub(crate) fn new(reqs: &'a [Request], p: &'a Profile, routing: Routing) -> Sim<'a> {
        let mut sim = Sim {
            reqs,
            p,
            routing,
            heap: BinaryHeap::new(),
            order: 0,
            replicas: Vec::new(),
            unserved: VecDeque::new(),
            ttft: vec![None; reqs.len()],
            queued: vec![None; reqs.len()],
            done: 0,
            window_ttft: Vec::new(),
        };
        for (i, r) in reqs.iter().enumerate() {
            sim.push(r.arrival_us, Event::Arrival(i));
        }
        sim
    }

    fn push(&mut self, t: u64, e: Event) {
        self.order += 1;
        self.heap.push(Reverse((t, self.order, e)));
    }

    fn launch(&mut self, now: u64, delay_us: u64) {
        self.replicas.push(Replica {
            engine: Engine::new(),
            launched_us: now,
            ready: delay_us == 0,
            draining: false,
            stopped_us: None,
        });
        if delay_us > 0 {
            let r = self.replicas.len() - 1;
            self.push(now + delay_us, Event::Ready(r));
        } else {
            self.serve_unserved(now);
        }
    }

    fn live(&self, r: &Replica) -> bool {
        r.stopped_us.is_none() && !r.draining
    }

    /// The ready replica a request goes to. [`Routing::LeastWork`]: the fewest prompt tokens
    /// still to prefill (what delays a new request's first token), then the fewest requests.
    fn route(&self) -> Option<usize> {
        self.replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| r.ready && self.live(r))
            .min_by_key(|(i, r)| {
                let work = match self.routing {
                    Routing::LeastWork => r.engine.pending_prefill(),
                    Routing::LeastRequests => 0,
                };
                (work, r.engine.in_flight(), *i)
            })
            .map(|(i, _)| i)
    }

    fn dispatch(&mut self, now: u64, id: usize) {
        match self.route() {
            Some(r) => {
                let q = self.reqs[id];
                let len = self.p.max_model_len;
                // Longer than --max-model-len: truncated to fit, as a client would have to.
                let prompt = q.prompt.clamp(1, len - 1);
                let output = q.output.clamp(1, len - prompt);
                self.replicas[r].engine.enqueue(id, prompt, output);
                self.kick(now, r);
            }
            None => self.unserved.push_back(id),
        }
    }

    fn serve_unserved(&mut self, now: u64) {
        while !self.unserved.is_empty() && self.route().is_some() {
            if let Some(id) = self.unserved.pop_front() {
                self.dispatch(now, id);
            }
        }
    }

    fn kick(&mut self, now: u64, r: usize) {
        if self.replicas[r].engine.busy {
            return;
        }
        let mut out = StepOutcome::default();
        let step = self.replicas[r].engine.start_step(self.p, &mut out);
        self.record(now, &out);
        if let Some(d) = step {
            self.push(now + d, Event::StepEnd(r));
        }
    }

    fn record(&mut self, now: u64, out: &StepOutcome) {
        for &id in &out.admitted {
            self.queued[id].get_or_insert(now);
        }
        for &id in &out.first_tokens {
            if self.ttft[id].is_none() {
                self.ttft[id] = Some(now);
                self.window_ttft
                    .push((now - self.reqs[id].arrival_us) as f64 / US);
            }
        }
        self.done += out.finished.len();
    }

    fn current(&self) -> u32 {
        self.replicas.iter().filter(|r| self.live(r)).count() as u32
    }

    pub(crate) fn scale_to(&mut self, now: u64, desired: u32, delay_us: u64) {
        let current = self.current();
        if desired > current {
            for _ in current..desired {
                self.launch(now, delay_us);
            }
            return;
        }
        let mut excess = current - desired;
        // Starting replicas go first (newest first), then the least loaded ready ones drain.
        for i in (0..self.replicas.len()).rev() {
            if excess == 0 {
                return;
            }
            let r = &mut self.replicas[i];
            if r.stopped_us.is_none() && !r.draining && !r.ready {
                r.stopped_us = Some(now);
                excess -= 1;
            }
        }
        while excess > 0 {
            let Some(i) = self
                .replicas
                .iter()
                .enumerate()
                .filter(|(_, r)| r.ready && self.live(r))
                .min_by_key(|(i, r)| (r.engine.in_flight(), Reverse(*i)))
                .map(|(i, _)| i)
            else {
                return;
            };
            excess -= 1;
            self.replicas[i].draining = true;
            // Its queue goes elsewhere; what runs finishes here.
            let queued: Vec<usize> = self.replicas[i]
                .engine
                .waiting
                .drain(..)
                .filter(|s| s.prefilled == 0 && s.generated == 0)
                .map(|s| s.id)
                .collect();
            for id in queued {
                self.dispatch(now, id);
            }
            if self.replicas[i].engine.in_flight() == 0 {
                self.replicas[i].stopped_us = Some(now);
            }
        }
    }

    /// Handles one arrival, readiness or step end.
    fn handle(&mut self, now: u64, e: Event) {
        match e {
            Event::Arrival(i) => self.dispatch(now, i),
            Event::Ready(r) => {
                if self.replicas[r].stopped_us.is_none() {
                    self.replicas[r].ready = true;
                    self.serve_unserved(now);
                }
            }
            Event::StepEnd(r) => {
                let mut out = StepOutcome::default();
                self.replicas[r].engine.finish_step(&mut out);
                self.record(now, &out);
                let rep = &self.replicas[r];
                if rep.draining && rep.engine.in_flight() == 0 {
                    self.replicas[r].stopped_us = Some(now);
                } else {
                    self.kick(now, r);
                }
            }
            Event::Tick => {}
        }
    }

    /// Runs every event before `until` (no controller: the fleet stays as it is).
    pub(crate) fn run_until(&mut self, until: u64) {
        while let Some(Reverse((now, _, e))) = self.heap.peek().copied() {
            if now >= until {
                return;
            }
            self.heap.pop();
            self.handle(now, e);
        }
    }

    /// Requests on a replica or waiting for one.
    pub(crate) fn busy(&self) -> bool {
        !self.unserved.is_empty() || self.replicas.iter().any(|r| r.engine.in_flight() > 0)
    }

    /// Seconds to request `id`'s first token, if it came.
    pub(crate) fn ttft_s(&self, id: usize) -> Option<f64> {
        self.ttft[id].map(|t| (t - self.reqs[id].arrival_us) as f64 / US)
    }

    fn view(&self, now: u64) -> View {
        let ready: Vec<ReplicaView> = self
            .replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| r.ready && self.live(r))
            .map(|(id, r)| ReplicaView {
                running: r.engine.running.len() as f64,
                waiting: r.engine.waiting.len() as f64,
                kv_usage: r.engine.kv_usage(self.p),
                prompt_tokens_total: r.engine.prompt_tokens_total,
                generation_tokens_total: r.engine.generation_tokens_total,
                id,
            })
            .collect();
        View {
            now_s: now as f64 / US,
            current: self.current(),
            pending: self
                .replicas
                .iter()
                .filter(|r| !r.ready && self.live(r))
                .count() as u32,
            ready,
            unserved: self.unserved.len() as u32,
        }
    }
}

/// Replays `reqs` (sorted by arrival) under `controller`.
pub fn run(
    reqs: &[Request],
    p: &Profile,
    o: &Options,
    controller: &mut dyn Controller,
) -> RunResult {
    let mut sim = Sim::new(reqs, p, o.routing);
    let delay_us = (o.start_delay_s * US).round() as u64;
    let tick_us = ((o.tick_s * US).round() as u64).max(1);
    let initial = o.initial_replicas.clamp(o.min_replicas, o.max_replicas);
    for _ in 0..initial {
        sim.launch(0, 0);
    }
    sim.push(0, Event::Tick);
    let last_arrival = reqs.last().map_or(0, |r| r.arrival_us);
    let mut scale_events = 0;
    let mut peak = initial;
    let mut timeline = Vec::new();
    let mut horizon = 0;
    while let Some(Reverse((now, _, e))) = sim.heap.pop() {
        horizon = now;
        if e != Event::Tick {
            sim.handle(now, e);
            continue;
        }
        let view = sim.view(now);
        let desired = controller
            .desired(&view)
            .clamp(o.min_replicas, o.max_replicas);
        if desired != view.current {
            scale_events += 1;
            sim.scale_to(now, desired, delay_us);
        }
        peak = peak.max(sim.current());
        let in_flight = sim
            .replicas
            .iter()
            .map(|r| r.engine.in_flight() as u32)
            .sum::<u32>()
            + sim.unserved.len() as u32;
        let window = std::mem::take(&mut sim.window_ttft);
        timeline.push(Sample {
            t_s: now as f64 / US,
            in_flight,
            ready: view.ready.len() as u32,
            replicas: sim.current(),
            ttft_p95_s: (!window.is_empty()).then(|| percentile(&window, 0.95)),
        });
        if now < last_arrival || sim.done < reqs.len() {
            sim.push(now + tick_us, Event::Tick);
        }
    }
    let gpu_hours: f64 = sim
        .replicas
        .iter()
        .map(|r| {
            let end = r.stopped_us.unwrap_or(horizon);
            // EC2 bills per second with a 60-second minimum (SERVING.md §3).
            let secs = (end.saturating_sub(r.launched_us) as f64 / US).max(60.0);
            secs / 3600.0 * f64::from(p.gpus)
        })
        .sum();
    let at = |v: &[Option<u64>]| -> Vec<f64> {
        v.iter()
            .zip(reqs)
            .map(|(t, r)| t.map_or(f64::NAN, |t| (t - r.arrival_us) as f64 / US))
            .collect()
    };
    RunResult {
        gpu_hours,
        dollars: gpu_hours / f64::from(p.gpus) * p.price_per_hour,
        ttft_s: at(&sim.ttft),
        queue_wait_s: at(&sim.queued),
        scale_events,
        peak_replicas: peak,
        timeline,
    }
}

#[cfg(test)]
mod tests {
    use super::policies::{HpaSeed, Mlops, Oracle};
    use super::trace::Request;
    use super::*;
    use crate::stage::serving::policy::DEFAULT_HEADROOM;
    use crate::stage::serving::profile::{PROFILES_YAML, Profile, parse};

    const TRACE: &str = include_str!("../../samples/traces/azure_conv_2023.csv");

    fn opts(min: u32, max: u32, delay: f64) -> Options {
        Options {
            min_replicas: min,
            max_replicas: max,
            initial_replicas: min,
            start_delay_s: delay,
            tick_s: 15.0,
            routing: Routing::LeastWork,
        }
    }

    /// A replica small enough to follow by hand: 10 ms per step, 0.1 ms per prompt token, 1 ms
    /// per decoding sequence, context free, 100 tokens per step.
    fn toy() -> Profile {
        Profile {
            description: "hand-computable".into(),
            gpus: 1,
            price_per_hour: 1.0,
            c0_ms: 10.0,
            c_prefill_ms_per_token: 0.1,
            c_decode_ms_per_seq: 1.0,
            c_kv_ms_per_1k_tokens: 0.0,
            kv_cache_tokens: 10_000,
            max_num_seqs: 8,
            max_num_batched_tokens: 100,
            max_model_len: 1000,
            start_delay_s: 0.0,
            ttft_slo_s: 1.0,
        }
    }

    fn req(at_ms: u64, prompt: u32, output: u32) -> Request {
        Request {
            arrival_us: at_ms * 1000,
            prompt,
            output,
        }
    }

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
    }

    struct Fixed(u32);
    impl Controller for Fixed {
        fn desired(&mut self, _: &View) -> u32 {
            self.0
        }
    }

    #[test]
    fn one_replica_queues_whole_prompts_as_computed_by_hand() {
        // Three 100-token prompts at t=0, one output token each: every step takes exactly one
        // prompt (the 100-token budget), 10 + 0.1×100 = 20 ms, and its last chunk samples the only
        // token. First tokens at 20, 40, 60 ms; admitted at 0, 20, 40 ms.
        let reqs = [req(0, 100, 1), req(0, 100, 1), req(0, 100, 1)];
        let r = run(&reqs, &toy(), &opts(1, 1, 0.0), &mut Fixed(1));
        assert!(close(&r.ttft_s, &[0.020, 0.040, 0.060]), "{:?}", r.ttft_s);
        assert!(
            close(&r.queue_wait_s, &[0.0, 0.020, 0.040]),
            "{:?}",
            r.queue_wait_s
        );
    }

    #[test]
    fn chunked_prefill_shares_the_step_with_decodes_as_computed_by_hand() {
        // A: 100-token prompt, 3 output tokens; B: 100 tokens, 1 output, both at t=0.
        // Step 1 (20 ms): A's prefill, A's first token at 20 ms.
        // Step 2: A decodes (1 ms, 1 budget token), B prefills 99 tokens:
        //   10 + 0.1×99 + 1 = 20.9 ms → ends at 40.9 ms.
        // Step 3: A decodes its last token, B's last prompt token: 10 + 0.1 + 1 = 11.1 ms;
        //   B's first token at 52.0 ms.
        let reqs = [req(0, 100, 3), req(0, 100, 1)];
        let r = run(&reqs, &toy(), &opts(1, 1, 0.0), &mut Fixed(1));
        assert!(close(&r.ttft_s, &[0.020, 0.052]), "{:?}", r.ttft_s);
        // B was admitted (its first chunk scheduled) when step 2 started.
        assert!(
            close(&r.queue_wait_s, &[0.0, 0.020]),
            "{:?}",
            r.queue_wait_s
        );
    }

    #[test]
    fn the_gateway_sends_a_request_where_the_least_prefill_is_queued() {
        // A: 900-token prompt at t=0 → replica 0 (nine 20 ms steps of 100 tokens). B: 10 tokens,
        // 100 output, at t=0 → replica 1, its prefill step 10 + 0.1×10 = 11 ms. C: 10 tokens at
        // 1 ms, when each replica holds one request.
        let reqs = [req(0, 900, 1), req(0, 10, 100), req(1, 10, 1)];
        let two = |routing| Options {
            routing,
            ..opts(2, 2, 0.0)
        };
        // Least work: C joins B (10 tokens queued, not 900); it prefills beside B's first decode,
        // 10 + 0.1×10 + 1 = 12 ms from 11 ms: first token at 23 ms, 22 ms after it arrived.
        let r = run(&reqs, &toy(), &two(Routing::LeastWork), &mut Fixed(2));
        assert!((r.ttft_s[2] - 0.022).abs() < 1e-9, "{:?}", r.ttft_s);
        // Least requests: a tie, so replica 0, behind A's 180 ms of prefill: 180 + 11 − 1 ms.
        let r = run(&reqs, &toy(), &two(Routing::LeastRequests), &mut Fixed(2));
        assert!((r.ttft_s[2] - 0.190).abs() < 1e-9, "{:?}", r.ttft_s);
    }

    #[test]
    fn the_oracle_sizes_a_window_for_the_backlog_the_previous_one_left() {
        // Ten 1000-token prompts at 59.5 s: 200 ms each on the toy replica, so one replica gets
        // the sixth out 1.2 s after it arrived (over the 1 s SLO) and window 0 needs two. At 60 s
        // each of the two still has 500 ms of work. The single request of window 1 (at 60 s)
        // would wait 900 ms behind it on one replica (200 ms more of its own: 1.1 s), 500 ms on
        // two (0.7 s): window 1 needs two as well, though alone it would fit on one.
        let mut reqs: Vec<Request> = (0..10).map(|_| req(59_500, 1000, 1)).collect();
        reqs.push(req(60_000, 1000, 1));
        let o = opts(1, 4, 0.0);
        let plan = Oracle::plan(&reqs, &toy(), &o, 60.0, 0.0);
        assert_eq!(plan.needed(), &[2, 2]);
        let alone = Oracle::plan(&reqs[10..], &toy(), &o, 60.0, 0.0);
        assert_eq!(alone.needed(), &[1, 1]);
        let r = run(
            &reqs,
            &toy(),
            &Options {
                initial_replicas: plan.initial(),
                ..o
            },
            &mut plan.clone(),
        );
        assert_eq!(r.over_slo_count(1.0), 0, "{:?}", r.ttft_s);
    }

    #[test]
    fn the_same_inputs_give_the_same_numbers() {
        let reqs = trace::parse(TRACE, 1.0).expect("trace");
        let reqs = &reqs[..3000];
        let p = parse(PROFILES_YAML).expect("profiles")["llama-3-70b-tp4-h100"].clone();
        let o = opts(1, 8, 180.0);
        let a = run(
            reqs,
            &p,
            &o,
            &mut Mlops::for_profile(&p, &o, DEFAULT_HEADROOM),
        );
        let b = run(
            reqs,
            &p,
            &o,
            &mut Mlops::for_profile(&p, &o, DEFAULT_HEADROOM),
        );
        assert_eq!(a, b);
        let c = run(reqs, &p, &o, &mut HpaSeed::new());
        assert_eq!(c, run(reqs, &p, &o, &mut HpaSeed::new()));
        assert!(
            a.ttft_s.iter().all(|t| t.is_finite()),
            "every request served"
        );
    }

    #[test]
    fn the_oracle_is_never_above_a_policy_that_meets_the_slo_as_well() {
        let p = parse(PROFILES_YAML).expect("profiles")["llama-3-70b-tp4-h100"].clone();
        for (rate, delay) in [(1.0, 180.0), (1.3, 600.0)] {
            let reqs = trace::parse(TRACE, rate).expect("trace");
            let reqs = &reqs[..6000];
            let mut o = opts(1, 8, delay);
            let oracle = Oracle::plan(reqs, &p, &o, 60.0, 0.01);
            o.initial_replicas = oracle.initial();
            let avoidable = |r: &RunResult| {
                reqs.iter()
                    .zip(&r.ttft_s)
                    .filter(|(q, t)| {
                        misses(**t, p.ttft_slo_s) && p.isolated_ttft_s(q.prompt) <= p.ttft_slo_s
                    })
                    .count()
            };
            let best = run(reqs, &p, &o, &mut oracle.clone());
            let mut others: Vec<(String, RunResult)> = (1..=8)
                .map(|n| {
                    let fixed = Options {
                        initial_replicas: n,
                        ..o
                    };
                    (format!("fixed {n}"), run(reqs, &p, &fixed, &mut Fixed(n)))
                })
                .collect();
            for headroom in [0.5, 1.0, 1.5, 2.0] {
                let r = run(reqs, &p, &o, &mut Mlops::for_profile(&p, &o, headroom));
                others.push((format!("mlops {headroom}"), r));
            }
            others.push(("hpa-seed".into(), run(reqs, &p, &o, &mut HpaSeed::new())));
            let mut compared = 0;
            for (name, r) in &others {
                if avoidable(r) <= avoidable(&best) {
                    compared += 1;
                    assert!(
                        best.gpu_hours <= r.gpu_hours + 1e-9,
                        "rate {rate}, delay {delay}: oracle {:.2} GPU-h above {name} {:.2}",
                        best.gpu_hours,
                        r.gpu_hours
                    );
                }
            }
            assert!(compared >= 2, "something met the SLO as well as the oracle");
        }
    }

    #[test]
    fn more_load_never_needs_fewer_gpu_hours_from_the_oracle() {
        let p = parse(PROFILES_YAML).expect("profiles")["mistral-7b-a10g"].clone();
        let reqs = trace::parse(TRACE, 1.0).expect("trace");
        let o = opts(1, 8, 300.0);
        let light = Oracle::plan(&reqs[..2000], &p, &o, 60.0, 0.0);
        // Every request doubled: the same windows, twice the work.
        let heavy: Vec<Request> = reqs[..2000].iter().flat_map(|r| [*r, *r]).collect();
        let heavy = Oracle::plan(&heavy, &p, &o, 60.0, 0.0);
        let gpu = |plan: &Oracle, reqs: &[Request]| {
            let o = Options {
                initial_replicas: plan.initial(),
                ..o
            };
            run(reqs, &p, &o, &mut plan.clone()).gpu_hours
        };
        let doubled: Vec<Request> = reqs[..2000].iter().flat_map(|r| [*r, *r]).collect();
        assert!(gpu(&heavy, &doubled) >= gpu(&light, &reqs[..2000]));
    }

    #[test]
    fn the_bundled_profiles_parse_and_bad_ones_name_the_field() {
        let all = parse(PROFILES_YAML).expect("bundled profiles");
        assert!(all.contains_key("llama-3-70b-tp4-h100") && all.contains_key("mistral-7b-a10g"));
        let bad = PROFILES_YAML.replacen("c0_ms: 17.5", "c0_ms: -1", 1);
        let err = parse(&bad).expect_err("negative c0");
        assert!(err.contains("c0_ms"), "{err}");
        let bad = PROFILES_YAML.replacen("max_model_len: 8192", "max_model_len: 900000", 1);
        assert!(parse(&bad).expect_err("too long").contains("max_model_len"));
    }

    #[test]
    fn traces_are_checked_line_by_line() {
        let ok = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
                  2023-11-16 18:15:46.6805900,374,44\n\
                  2023-11-16 18:15:48.6805900,10,1\n";
        let r = trace::parse(ok, 2.0).expect("ok");
        assert_eq!(r[1].arrival_us, 1_000_000, "twice the rate, half the gap");
        for (text, needle) in [
            ("a,b,c\n", "line 1"),
            (
                "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,x,1\n",
                "line 2: ContextTokens",
            ),
            (
                "TIMESTAMP,ContextTokens,GeneratedTokens\nnot a time,1,1\n",
                "line 2: TIMESTAMP",
            ),
            (
                "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,1\n",
                "line 2: expected 3 fields",
            ),
            ("TIMESTAMP,ContextTokens,GeneratedTokens\n", "no requests"),
        ] {
            let err = trace::parse(text, 1.0).expect_err(text);
            assert!(err.contains(needle), "{err}");
        }
        assert!(trace::parse(ok, 0.0).is_err());
        assert!(trace::parse(ok, f64::NAN).is_err());
    }

    #[test]
    fn the_plot_is_an_svg_with_a_line_per_policy() {
        let reqs = trace::parse(TRACE, 1.0).expect("trace");
        let p = parse(PROFILES_YAML).expect("profiles")["mistral-7b-a10g"].clone();
        let o = opts(1, 4, 300.0);
        let rows = vec![
            (
                "mlops".to_owned(),
                run(
                    &reqs[..500],
                    &p,
                    &o,
                    &mut Mlops::for_profile(&p, &o, DEFAULT_HEADROOM),
                ),
            ),
            (
                "hpa-seed".to_owned(),
                run(&reqs[..500], &p, &o, &mut HpaSeed::new()),
            ),
        ];
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("p.svg");
        plot::svg(&path, &rows, &p).expect("plot");
        let svg = std::fs::read_to_string(&path).expect("read");
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("mlops") && svg.contains("hpa-seed"));
        assert!(
            svg.matches("<polyline").count() >= 6,
            "3 panels × 2 policies"
        );
    }
}
