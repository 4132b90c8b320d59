//! Soak test (ignored by plain `cargo test`; `.ci/soak.sh` runs it): tens of thousands
//! of inferences, asserting that resident memory stays flat after warm-up, that
//! inference allocates nothing, and that every output stays bitwise the reference.
//!
//! `LEVIT_SOAK_INFERENCES` (default 30000) sets the count of the main phase:
//! 1. one engine, one thread, on the 224x224 golden-tiny model: the count above,
//!    cycling through clean inputs with a NaN image every 97 inferences;
//! 2. one engine with two intra-op threads on the same model: a quarter of the count;
//! 3. eight engines on eight threads sharing the small three-stage model: eight times
//!    the count in total, each output checked bitwise.

mod robustness_common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use levit::{Engine, EngineOptions, Model, ModelOptions};
use robustness_common::{image, repo, small_model_bytes};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Resident set size in KiB from `/proc/self/status` (Linux; `None` elsewhere). Reads
/// into a stack buffer: no allocation.
fn rss_kib() -> Option<u64> {
    let mut buf = [0u8; 8192];
    let mut file = std::fs::File::open("/proc/self/status").ok()?;
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]).ok()? {
            0 => break,
            n => len += n,
        }
    }
    let text = std::str::from_utf8(&buf[..len]).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Most the RSS may grow between the end of warm-up and any later sample: page-level
/// noise (stack pages, allocator bookkeeping of the test harness), far below one leaked
/// arena (1.5 MB for this model) or one leaked image per inference.
const RSS_SLACK_KIB: u64 = 1024;

struct Phase {
    name: &'static str,
    inferences: usize,
    rss_start: u64,
    rss_end: u64,
    rss_max: u64,
    allocations: usize,
}

impl Phase {
    fn report(&self) {
        println!(
            "soak {}: {} inferences, RSS after warm-up {} KiB, at end {} KiB (max {} KiB, growth {} KiB), allocations during inference {}",
            self.name,
            self.inferences,
            self.rss_start,
            self.rss_end,
            self.rss_max,
            self.rss_end as i64 - self.rss_start as i64,
            self.allocations
        );
    }

    fn check(&self, check_allocations: bool) {
        self.report();
        assert!(
            self.rss_max <= self.rss_start + RSS_SLACK_KIB,
            "{}: RSS grew from {} to {} KiB",
            self.name,
            self.rss_start,
            self.rss_max
        );
        if check_allocations {
            assert_eq!(self.allocations, 0, "{}: inference allocated", self.name);
        }
    }
}

/// Runs `total` inferences through `step` in batches of `batch`, after `warmup`
/// untimed ones; samples RSS between batches and counts allocations inside them.
fn run_phase(
    name: &'static str,
    warmup: usize,
    total: usize,
    batch: usize,
    mut step: impl FnMut(usize),
) -> Phase {
    for i in 0..warmup {
        step(i);
    }
    let rss_start = rss_kib().unwrap_or(0);
    let mut phase = Phase {
        name,
        inferences: 0,
        rss_start,
        rss_end: rss_start,
        rss_max: rss_start,
        allocations: 0,
    };
    while phase.inferences < total {
        let n = batch.min(total - phase.inferences);
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        for i in phase.inferences..phase.inferences + n {
            step(warmup + i);
        }
        phase.allocations += ALLOCATIONS.load(Ordering::SeqCst) - before;
        phase.inferences += n;
        let rss = rss_kib().unwrap_or(0);
        phase.rss_end = rss;
        phase.rss_max = phase.rss_max.max(rss);
    }
    phase
}

fn golden_tiny() -> Arc<Model> {
    let file = repo().join("tests/fixtures/golden-tiny/tiny_hswish/model_timm.lvt");
    Arc::new(Model::load_with(file, ModelOptions::default()).unwrap())
}

#[test]
#[ignore = "long: run by .ci/soak.sh (cargo test -p levit --test robustness_soak -- --ignored)"]
fn soak() {
    let count: usize = std::env::var("LEVIT_SOAK_INFERENCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    let t0 = Instant::now();
    if rss_kib().is_none() {
        println!("soak: /proc/self/status unreadable, RSS not checked");
    }

    // Phase 1: one engine, one thread, clean inputs and a NaN image now and then.
    let model = golden_tiny();
    let inputs: Vec<Vec<f32>> = (0..16).map(|s| image(&model, 500 + s)).collect();
    let mut nan_image = inputs[0].clone();
    nan_image[12345] = f32::NAN;
    let mut reference = Engine::new(model.clone());
    let want: Vec<Vec<f32>> = inputs
        .iter()
        .map(|x| reference.infer(x).unwrap().to_vec())
        .collect();
    drop(reference);
    let mut engine = Engine::new(model.clone());
    let mut nan_runs = 0;
    let one = run_phase("1 engine x 1 thread", 200, count, 1000, |i| {
        if i % 97 == 96 {
            let out = engine.infer(&nan_image).unwrap();
            assert!(out[0].is_nan());
            nan_runs += 1;
        } else {
            let k = i % inputs.len();
            let out = engine.infer(&inputs[k]).unwrap();
            assert!(out == want[k].as_slice(), "inference {i} drifted");
        }
    });
    one.check(true);
    println!("  ({nan_runs} of them on a NaN image, each followed by exact clean results)");

    // Phase 2: the same model on a two-thread engine.
    let mut engine = Engine::with_options(
        model.clone(),
        EngineOptions {
            threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let two = run_phase("1 engine x 2 intra-op threads", 200, count / 4, 500, |i| {
        let k = i % inputs.len();
        assert!(
            engine.infer(&inputs[k]).unwrap() == want[k].as_slice(),
            "inference {i} drifted"
        );
    });
    drop(engine);
    two.check(true);

    // Phase 3: eight engines on eight threads over one shared small model.
    let small = Arc::new(Model::from_bytes(&small_model_bytes(), ModelOptions::default()).unwrap());
    let inputs: Vec<Vec<f32>> = (0..64).map(|s| image(&small, 900 + s)).collect();
    let mut reference = Engine::new(small.clone());
    let want: Vec<Vec<f32>> = inputs
        .iter()
        .map(|x| reference.infer(x).unwrap().to_vec())
        .collect();
    let rss_start = rss_kib().unwrap_or(0);
    let per_thread = count;
    std::thread::scope(|s| {
        for t in 0..8 {
            let (small, inputs, want) = (small.clone(), &inputs, &want);
            s.spawn(move || {
                let mut engine = Engine::new(small);
                for i in 0..per_thread {
                    let k = (t * 5 + i * (2 * t + 1)) % inputs.len();
                    let out = engine.infer(&inputs[k]).unwrap();
                    assert!(
                        out == want[k].as_slice(),
                        "thread {t} inference {i} drifted"
                    );
                }
            });
        }
    });
    let rss_end = rss_kib().unwrap_or(0);
    println!(
        "soak 8 engines x 8 threads: {} inferences, all bitwise equal to the single-threaded reference; RSS before {rss_start} KiB, after {rss_end} KiB",
        8 * per_thread
    );
    println!(
        "soak total: {} inferences in {:.1?}",
        count + count / 4 + 8 * per_thread,
        t0.elapsed()
    );
}
