//! The results: one text block, or one JSON object with every field.

use levit::Model;

use crate::timing::Latency;

/// Everything measured in one benchmark run.
pub struct Report<'a> {
    pub source: &'a str,
    pub model: &'a Model,
    pub threads: usize,
    /// Images per timed run (1: latency mode, `Engine::infer`; more: `infer_batch`).
    pub batch: usize,
    /// Per timed run, i.e. per batch.
    pub latency: Latency,
    pub load_ms: f64,
    /// The very first single-image inference (cold caches, first touch of the arena).
    pub first_ms: f64,
    /// Measured peak of one core's dot instruction for the model's precision and path
    /// (f32 FMA, `vdpbf16ps` or AMX `tdpbf16ps`), GMAC/s; `None` if skipped.
    pub peak_gmacs: Option<f64>,
    pub peak_rss: Option<u64>,
    /// The engine's activation arena (for `batch` images).
    pub arena_bytes: usize,
}

impl Report<'_> {
    fn gmac_per_image(&self) -> f64 {
        self.model.macs() as f64 / 1e9
    }

    fn images_per_s(&self) -> f64 {
        self.batch as f64 / (self.latency.median / 1e3)
    }

    fn gmac_per_s(&self) -> f64 {
        self.gmac_per_image() * self.images_per_s()
    }

    /// The peak the run is compared with, GMAC/s: one core's measured dot peak times
    /// the threads.
    fn peak_gmac_per_s(&self) -> Option<f64> {
        self.peak_gmacs.map(|g| g * self.threads as f64)
    }

    fn peak_pct(&self) -> Option<f64> {
        self.peak_gmac_per_s()
            .map(|p| 100.0 * self.gmac_per_s() / p)
    }

    pub fn json(&self) -> serde_json::Value {
        let (m, l) = (self.model, &self.latency);
        serde_json::json!({
            "model": self.source, "variant": m.config().variant, "isa": m.isa().name(),
            "precision": m.precision().name(),
            "gemm_kernel": m.gemm_kernel(m.precision()).map(|k| k.name()),
            "repacked_bytes": m.repacked_bytes(),
            "threads": self.threads, "batch": self.batch, "iters": l.runs,
            "median_ms": l.median, "p90_ms": l.p90, "p99_ms": l.p99, "min_ms": l.min,
            "first_ms": self.first_ms, "images_per_s": self.images_per_s(),
            "gmac": self.gmac_per_image(), "gmac_per_s": self.gmac_per_s(),
            "peak_gmacs": self.peak_gmacs, "peak_pct": self.peak_pct(),
            "load_ms": self.load_ms, "peak_rss_bytes": self.peak_rss,
            "arena_bytes": self.arena_bytes, "file_bytes": m.file().file_len(),
        })
    }

    pub fn print_text(&self) {
        let (m, l) = (self.model, &self.latency);
        println!("model      {}", self.source);
        println!(
            "isa        {}   precision {} (GEMM kernel {})   threads {}   batch {}",
            m.isa(),
            m.precision(),
            m.gemm_kernel(m.precision()).map_or("none", |k| k.name()),
            self.threads,
            self.batch
        );
        println!(
            "load       {:.2} ms   first inference {:.2} ms",
            self.load_ms, self.first_ms
        );
        let per = if self.batch > 1 {
            format!("per batch of {}: ", self.batch)
        } else {
            String::new()
        };
        println!(
            "latency    {per}median {:.3} ms   p90 {:.3}   p99 {:.3}   min {:.3}   ({} runs)",
            l.median, l.p90, l.p99, l.min, l.runs
        );
        println!(
            "throughput {:.1} images/s   {:.3} GMAC/image   {:.1} GMAC/s",
            self.images_per_s(),
            self.gmac_per_image(),
            self.gmac_per_s()
        );
        if let (Some(g), Some(p), Some(pct)) =
            (self.peak_gmacs, self.peak_gmac_per_s(), self.peak_pct())
        {
            let cores = if self.threads > 1 {
                format!(" x {} threads = {p:.1} GMAC/s", self.threads)
            } else {
                String::new()
            };
            let instruction = match (m.precision(), m.isa()) {
                (levit::Precision::Bf16, levit::Isa::Amx) => "AMX tdpbf16ps",
                (levit::Precision::Bf16, levit::Isa::Avx512Bf16) => "vdpbf16ps",
                (levit::Precision::Int8, _) => {
                    match m.gemm_kernel(m.precision()).map(|k| k.isa()) {
                        Some(levit::Isa::Amx) => "AMX tdpbusd",
                        Some(levit::Isa::Avx512) => "vpdpbusd",
                        Some(levit::Isa::Avx2) => "vpmaddubsw+vpmaddwd",
                        _ => "f32 FMA",
                    }
                }
                _ => "f32 FMA",
            };
            println!(
                "peak       {pct:.1} % of the measured {instruction} peak ({} loop: {g:.1} GMAC/s per core{cores})",
                m.isa(),
            );
            if pct > 100.0 {
                println!("           (over 100 %: other load disturbed the peak measurement; rerun on a quiet machine)");
            }
        }
        if let Some(rss) = self.peak_rss {
            let mib = |b: usize| b as f64 / (1 << 20) as f64;
            println!(
                "memory     peak RSS {:.1} MiB   (weight file {:.1} MiB, arena {:.1} MiB, bias tables {:.1} MiB)",
                mib(rss as usize),
                mib(m.file().file_len()),
                mib(self.arena_bytes),
                mib(m.plan().bias_tables.len() * 4)
            );
        }
    }
}
