//! One vLLM replica as a discrete-event model (SERVING.md §2.2): continuous batching with chunked
//! prefill, FCFS admission under `max_num_seqs`, the per-step token budget and the KV cache in
//! 16-token blocks (preempting the youngest request, to be recomputed, when decodes run out of
//! blocks), and the step time `c0 + c_p·P + c_d·D + c_kv·K/1000`.

use std::collections::VecDeque;

use crate::stage::serving::profile::Profile;

const BLOCK: u64 = 16;

fn blocks(tokens: u64) -> u64 {
    tokens.div_ceil(BLOCK) * BLOCK
}

/// A request inside an engine.
#[derive(Debug, Clone)]
pub struct Seq {
    /// Index into the trace.
    pub id: usize,
    pub prompt: u32,
    pub output: u32,
    pub prefilled: u32,
    pub generated: u32,
    /// KV tokens held (block-rounded).
    pub kv: u64,
}

/// What finished in a step.
#[derive(Debug, Default)]
pub struct StepOutcome {
    /// Requests whose first token came out, with the time.
    pub first_tokens: Vec<usize>,
    /// Requests admitted for the first time (leaving the queue).
    pub admitted: Vec<usize>,
    pub finished: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Engine {
    pub waiting: VecDeque<Seq>,
    pub running: Vec<Seq>,
    pub kv_used: u64,
    /// Requests admitted at least once (a preempted one is not "admitted" again).
    seen: std::collections::BTreeSet<usize>,
    /// The step in progress: its outcome is applied when it ends.
    pub busy: bool,
    plan: Vec<(usize, u32)>,
    /// `vllm:prompt_tokens_total`: prompt tokens of requests whose prefill completed.
    pub prompt_tokens_total: u64,
    /// `vllm:generation_tokens_total`.
    pub generation_tokens_total: u64,
}

impl Engine {
    pub fn new() -> Engine {
        Engine {
            waiting: VecDeque::new(),
            running: Vec::new(),
            kv_used: 0,
            seen: Default::default(),
            busy: false,
            plan: Vec::new(),
            prompt_tokens_total: 0,
            generation_tokens_total: 0,
        }
    }

    pub fn in_flight(&self) -> usize {
        self.waiting.len() + self.running.len()
    }

    /// Prompt tokens still to be computed, queued or in a prefill that has begun.
    pub fn pending_prefill(&self) -> u64 {
        self.waiting
            .iter()
            .chain(&self.running)
            .map(|s| u64::from(s.prompt - s.prefilled))
            .sum()
    }

    pub fn kv_usage(&self, p: &Profile) -> f64 {
        self.kv_used as f64 / p.kv_cache_tokens as f64
    }

    pub fn enqueue(&mut self, id: usize, prompt: u32, output: u32) {
        self.waiting.push_back(Seq {
            id,
            prompt,
            output: output.max(1),
            prefilled: 0,
            generated: 0,
            kv: 0,
        });
    }

    /// Plans the next step; returns its duration in microseconds, or `None` when idle.
    pub fn start_step(&mut self, p: &Profile, out: &mut StepOutcome) -> Option<u64> {
        let cap = p.kv_cache_tokens;
        // Decodes grow by one token: make room, preempting the youngest when blocks run out.
        let mut i = 0;
        while i < self.running.len() {
            let s = &self.running[i];
            let decoding = s.prefilled == s.prompt;
            let need = u64::from(s.prompt + s.generated) + 1;
            if decoding && need > s.kv {
                if self.kv_used + BLOCK <= cap {
                    self.kv_used += BLOCK;
                    self.running[i].kv += BLOCK;
                } else if let Some(mut young) = self.running.pop() {
                    // Recompute: back to the front of the queue, its KV freed.
                    self.kv_used -= young.kv;
                    young.kv = 0;
                    young.prefilled = 0;
                    young.generated = 0;
                    self.waiting.push_front(young);
                    continue;
                }
            }
            i += 1;
        }
        let mut budget = p.max_num_batched_tokens;
        let (mut d, mut k, mut prefill) = (0u64, 0u64, 0u64);
        self.plan.clear();
        for (idx, s) in self.running.iter().enumerate() {
            if s.prefilled == s.prompt {
                d += 1;
                k += u64::from(s.prompt + s.generated);
                budget = budget.saturating_sub(1);
                self.plan.push((idx, 0));
            }
        }
        for (idx, s) in self.running.iter().enumerate() {
            if s.prefilled < s.prompt && budget > 0 {
                let chunk = (s.prompt - s.prefilled).min(budget);
                budget -= chunk;
                prefill += u64::from(chunk);
                self.plan.push((idx, chunk));
            }
        }
        while budget > 0 && (self.running.len() as u32) < p.max_num_seqs {
            let Some(head) = self.waiting.front() else {
                break;
            };
            let kv = blocks(u64::from(head.prompt) + 1);
            if self.kv_used + kv > cap {
                break;
            }
            let Some(mut s) = self.waiting.pop_front() else {
                break;
            };
            self.kv_used += kv;
            s.kv = kv;
            let chunk = s.prompt.min(budget);
            budget -= chunk;
            prefill += u64::from(chunk);
            if self.seen.insert(s.id) {
                out.admitted.push(s.id);
            }
            self.running.push(s);
            self.plan.push((self.running.len() - 1, chunk));
        }
        if self.plan.is_empty() {
            self.busy = false;
            return None;
        }
        self.busy = true;
        let ms = p.c0_ms
            + p.c_prefill_ms_per_token * prefill as f64
            + p.c_decode_ms_per_seq * d as f64
            + p.c_kv_ms_per_1k_tokens * k as f64 / 1000.0;
        Some((ms * 1000.0).round().max(1.0) as u64)
    }

    /// Applies the planned step at its end.
    pub fn finish_step(&mut self, out: &mut StepOutcome) {
        for &(idx, chunk) in &self.plan {
            let Some(s) = self.running.get_mut(idx) else {
                continue;
            };
            if chunk == 0 {
                s.generated += 1;
                self.generation_tokens_total += 1;
            } else {
                s.prefilled += chunk;
                if s.prefilled == s.prompt {
                    // The prefill's last chunk samples the first token.
                    s.generated += 1;
                    self.generation_tokens_total += 1;
                    self.prompt_tokens_total += u64::from(s.prompt);
                    if s.generated == 1 {
                        out.first_tokens.push(s.id);
                    }
                }
            }
        }
        self.plan.clear();
        let mut kept = Vec::with_capacity(self.running.len());
        for s in self.running.drain(..) {
            if s.prefilled == s.prompt && s.generated >= s.output {
                self.kv_used -= s.kv;
                out.finished.push(s.id);
            } else {
                kept.push(s);
            }
        }
        self.running = kept;
        self.busy = false;
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}
