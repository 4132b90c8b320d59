//! After load, `infer` and `infer_batch` perform zero heap allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use levit::{synth, Engine, EngineOptions, Model, ModelOptions, Precision};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The count is process-wide: tests that measure it run one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn infer_allocates_nothing_on_any_path() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let config = synth::variant_config("128s").unwrap();
    let bytes = synth::random_weight_file(&config, 7).unwrap();
    // Every precision on every level whose kernel differs (the levels above avx512
    // change only the bf16 kernels).
    let paths = Precision::ALL.into_iter().flat_map(|p| {
        levit::Isa::supported()
            .into_iter()
            .filter(move |&isa| p != Precision::F32 || isa == isa.vector())
            .map(move |isa| (p, isa))
    });
    for (precision, isa) in paths {
        let options = ModelOptions {
            isa: Some(isa),
            precision: Some(precision),
            ..ModelOptions::default()
        };
        let model = Arc::new(Model::from_bytes(&bytes, options).unwrap());
        let threads = if isa == levit::Isa::best() { 2 } else { 1 };
        let mut engine = Engine::with_options(
            model.clone(),
            EngineOptions {
                threads,
                ..Default::default()
            },
        )
        .unwrap();
        let mut rng = synth::Rng::new(1);
        let image: Vec<f32> = (0..model.input_len()).map(|_| rng.normal()).collect();
        let batch: Vec<f32> = image.iter().chain(&image).copied().collect();
        let mut out = vec![0.0; 2 * model.num_classes()];
        // Warm-up: the pool's threads allocate their own state on first use.
        for _ in 0..3 {
            engine.infer(&image).unwrap();
        }

        let before = ALLOCATIONS.load(Ordering::SeqCst);
        // Enough runs to cross any amortised growth (e.g. a queue block every 63 jobs).
        let runs = if threads > 1 { 200 } else { 20 };
        for _ in 0..runs {
            let logits = engine.infer(&image).unwrap();
            assert!(logits.iter().all(|v| v.is_finite()));
        }
        engine.infer_batch(&batch, &mut out).unwrap();
        let after = ALLOCATIONS.load(Ordering::SeqCst);
        assert_eq!(
            after - before,
            0,
            "{precision} {isa}, {threads} thread(s): infer allocated {} times",
            after - before
        );
    }
}

#[test]
fn batched_infer_allocates_nothing_on_any_path() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let config = synth::variant_config("128s").unwrap();
    let bytes = synth::random_weight_file(&config, 7).unwrap();
    // The fastest path of each precision (the batch code is the same on every level;
    // the kernels' own allocations are covered above), 1 and 2 threads.
    for precision in Precision::ALL {
        let options = ModelOptions {
            precision: Some(precision),
            ..ModelOptions::default()
        };
        let model = Arc::new(Model::from_bytes(&bytes, options).unwrap());
        for threads in [1, 2] {
            let options = EngineOptions {
                threads,
                max_batch: 4,
            };
            let mut engine = Engine::with_options(model.clone(), options).unwrap();
            let mut rng = synth::Rng::new(1);
            // 6 images: a full chunk of 4, then 2.
            let batch: Vec<f32> = (0..6 * model.input_len()).map(|_| rng.normal()).collect();
            let mut out = vec![0.0; 6 * model.num_classes()];
            for _ in 0..3 {
                engine.infer_batch(&batch, &mut out).unwrap();
            }
            let before = ALLOCATIONS.load(Ordering::SeqCst);
            let runs = if threads > 1 { 40 } else { 5 };
            for _ in 0..runs {
                for n in [1, 3, 4, 6] {
                    let k = n * model.input_len();
                    engine
                        .infer_batch(&batch[..k], &mut out[..n * model.num_classes()])
                        .unwrap();
                }
                engine.infer(&batch[..model.input_len()]).unwrap();
            }
            let after = ALLOCATIONS.load(Ordering::SeqCst);
            assert_eq!(
                after - before,
                0,
                "{precision}, {threads} thread(s), max_batch 4: infer_batch allocated {} times",
                after - before
            );
        }
    }
}
