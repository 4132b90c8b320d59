//! Timed runs and their latency distribution.

use std::time::Instant;

use anyhow::Result;

/// Latency of one timed run, in milliseconds.
pub struct Latency {
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
    pub min: f64,
    pub runs: usize,
}

/// Runs `run` `warmup` times untimed, then `iters` (at least 1) times timed.
pub fn measure(
    warmup: usize,
    iters: usize,
    mut run: impl FnMut() -> Result<()>,
) -> Result<Latency> {
    for _ in 0..warmup {
        run()?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        run()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(Latency {
        median: percentile(&times, 0.5),
        p90: percentile(&times, 0.9),
        p99: percentile(&times, 0.99),
        min: times[0],
        runs: times.len(),
    })
}

/// Nearest-rank percentile of sorted, non-empty times.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_of_a_hundred() {
        let t: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&t, 0.5), 51.0);
        assert_eq!(percentile(&t, 0.9), 90.0);
        assert_eq!(percentile(&t, 0.99), 99.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
    }
}
