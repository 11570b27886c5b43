//! Capacity profiles of one vLLM replica (`samples/serving/profiles.yaml`, every number with its
//! source).

use std::collections::BTreeMap;

use serde::Deserialize;

/// The bundled profiles.
pub const PROFILES_YAML: &str = include_str!("../../../samples/serving/profiles.yaml");

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub description: String,
    /// GPUs one replica occupies (its GPU-hours per hour).
    pub gpus: u32,
    /// On-demand $ per replica-hour.
    pub price_per_hour: f64,
    pub c0_ms: f64,
    pub c_prefill_ms_per_token: f64,
    pub c_decode_ms_per_seq: f64,
    pub c_kv_ms_per_1k_tokens: f64,
    pub kv_cache_tokens: u64,
    pub max_num_seqs: u32,
    pub max_num_batched_tokens: u32,
    pub max_model_len: u32,
    /// Node + image pull + weight load + engine init, seconds.
    pub start_delay_s: f64,
    pub ttft_slo_s: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    profiles: BTreeMap<String, Profile>,
}

impl Profile {
    /// The step costs the scaling policy prices token rates with.
    pub fn step_cost(&self) -> super::policy::StepCost {
        super::policy::StepCost {
            c_prefill_ms_per_token: self.c_prefill_ms_per_token,
            c_decode_ms_per_seq: self.c_decode_ms_per_seq,
            c_kv_ms_per_1k_tokens: self.c_kv_ms_per_1k_tokens,
            kv_cache_tokens: self.kv_cache_tokens,
        }
    }

    /// Seconds to a first token on an idle replica (its prefill in chunks of the token budget):
    /// a request over the TTFT SLO even then misses it under any number of replicas.
    pub fn isolated_ttft_s(&self, prompt: u32) -> f64 {
        let prompt = prompt.clamp(1, self.max_model_len - 1);
        let chunks = prompt.div_ceil(self.max_num_batched_tokens);
        (f64::from(chunks) * self.c0_ms + self.c_prefill_ms_per_token * f64::from(prompt)) / 1000.0
    }

    /// Scales the four step-time coefficients (sensitivity sweeps).
    pub fn scaled(&self, factor: f64) -> Profile {
        Profile {
            c0_ms: self.c0_ms * factor,
            c_prefill_ms_per_token: self.c_prefill_ms_per_token * factor,
            c_decode_ms_per_seq: self.c_decode_ms_per_seq * factor,
            c_kv_ms_per_1k_tokens: self.c_kv_ms_per_1k_tokens * factor,
            ..self.clone()
        }
    }

    fn validate(&self, name: &str) -> Result<(), String> {
        let positive = [
            ("price_per_hour", self.price_per_hour),
            ("c0_ms", self.c0_ms),
            ("c_prefill_ms_per_token", self.c_prefill_ms_per_token),
            ("c_decode_ms_per_seq", self.c_decode_ms_per_seq),
            ("c_kv_ms_per_1k_tokens", self.c_kv_ms_per_1k_tokens),
            ("ttft_slo_s", self.ttft_slo_s),
        ];
        for (field, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("profile {name}: {field} must be a positive number"));
            }
        }
        if !(self.start_delay_s.is_finite() && self.start_delay_s >= 0.0) {
            return Err(format!("profile {name}: start_delay_s must be >= 0"));
        }
        if self.gpus == 0 || self.max_num_seqs == 0 || self.max_num_batched_tokens == 0 {
            return Err(format!(
                "profile {name}: gpus, max_num_seqs and max_num_batched_tokens must be >= 1"
            ));
        }
        if self.max_model_len < 2 || u64::from(self.max_model_len) + 16 > self.kv_cache_tokens {
            return Err(format!(
                "profile {name}: max_model_len {} must fit the KV cache ({} tokens)",
                self.max_model_len, self.kv_cache_tokens
            ));
        }
        Ok(())
    }
}

/// Every profile of a profiles file, checked.
pub fn parse(text: &str) -> Result<BTreeMap<String, Profile>, String> {
    let f: File = serde_saphyr::from_str(text).map_err(|e| format!("profiles: {e}"))?;
    for (name, p) in &f.profiles {
        p.validate(name)?;
    }
    Ok(f.profiles)
}
