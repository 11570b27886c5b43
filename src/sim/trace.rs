//! Request traces in the Azure LLM inference trace format
//! (`TIMESTAMP,ContextTokens,GeneratedTokens`, AzurePublicDataset).

use chrono::NaiveDateTime;

/// One request: arrival (µs from the trace's first), prompt and output tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub arrival_us: u64,
    pub prompt: u32,
    pub output: u32,
}

/// Parses a trace; `rate_scale` > 1 replays it faster (inter-arrival times divided by it).
/// Rows are sorted by arrival (stable); an error names the line.
pub fn parse(text: &str, rate_scale: f64) -> Result<Vec<Request>, String> {
    if !(rate_scale.is_finite() && rate_scale > 0.0) {
        return Err(format!(
            "--rate-scale must be a positive number, got {rate_scale}"
        ));
    }
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, l)| l.trim()).unwrap_or_default();
    let cols: Vec<&str> = header
        .trim_start_matches('\u{feff}')
        .split(',')
        .map(str::trim)
        .collect();
    if cols != ["TIMESTAMP", "ContextTokens", "GeneratedTokens"] {
        return Err(format!(
            "line 1: expected the header TIMESTAMP,ContextTokens,GeneratedTokens, got {header:?}"
        ));
    }
    let mut rows: Vec<(NaiveDateTime, u32, u32)> = Vec::new();
    for (i, line) in lines {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let mut f = line.split(',').map(str::trim);
        let (Some(ts), Some(ctx), Some(gen_), None) = (f.next(), f.next(), f.next(), f.next())
        else {
            return Err(format!("line {n}: expected 3 fields, got {line:?}"));
        };
        // Seven fractional digits in the Azure files; chrono's %.f takes up to nine.
        let t = NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S%.f")
            .map_err(|e| format!("line {n}: TIMESTAMP {ts:?}: {e}"))?;
        let num = |v: &str, col: &str| {
            v.parse::<u32>()
                .map_err(|_| format!("line {n}: {col} {v:?} is not a whole number of tokens"))
        };
        rows.push((t, num(ctx, "ContextTokens")?, num(gen_, "GeneratedTokens")?));
    }
    if rows.is_empty() {
        return Err("the trace has no requests".into());
    }
    rows.sort_by_key(|r| r.0);
    let t0 = rows[0].0;
    Ok(rows
        .into_iter()
        .map(|(t, prompt, output)| {
            let us = (t - t0).num_microseconds().unwrap_or(i64::MAX).max(0) as f64;
            Request {
                arrival_us: (us / rate_scale).round() as u64,
                prompt,
                output,
            }
        })
        .collect())
}
