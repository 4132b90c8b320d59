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

#[test]
fn infer_allocates_nothing_on_any_path() {
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
        let mut engine = Engine::with_options(model.clone(), EngineOptions { threads }).unwrap();
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
