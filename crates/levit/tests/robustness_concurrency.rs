//! Concurrency and determinism: one loaded model shared by eight engines on eight
//! threads, thousands of inferences each on different inputs, every output bitwise the
//! single-threaded reference (`LEVIT_CONCURRENCY_ITERS` raises the count; `.ci/soak.sh`
//! runs it longer); and every intra-op thread count (1 to 4) gives bitwise the same
//! logits and intermediates on every SIMD path, also with multi-threaded engines
//! running side by side.

mod robustness_common;

use std::sync::{Arc, Barrier};

use levit::{Engine, EngineOptions, Isa, Model, ModelOptions};
use robustness_common::{image, repo, small_model_bytes};

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}

/// Distinct inputs the threads cycle through, and their single-threaded logits.
fn references(model: &Arc<Model>, count: u64) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let inputs: Vec<Vec<f32>> = (0..count).map(|s| image(model, 1000 + s)).collect();
    let mut engine = Engine::new(model.clone());
    let logits = inputs
        .iter()
        .map(|x| engine.infer(x).unwrap().to_vec())
        .collect();
    (inputs, logits)
}

/// Runs `threads` engines on one shared model, `iters` inferences each; thread `t` walks
/// the inputs in its own order so that the threads run different inputs at any time.
/// Returns the number of inferences checked.
fn hammer(
    model: &Arc<Model>,
    threads: usize,
    iters: usize,
    inputs: &[Vec<f32>],
    want: &[Vec<f32>],
) -> usize {
    let start = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                // Half the engines are made here and moved to their thread (`Engine: Send`),
                // half are made on their thread.
                let premade = (t % 2 == 0).then(|| Engine::new(model.clone()));
                let (model, start) = (model.clone(), &start);
                s.spawn(move || {
                    let mut engine = premade.unwrap_or_else(|| Engine::new(model));
                    start.wait();
                    let n = inputs.len();
                    let stride = [1, 3, 5, 7, 9, 11, 13, 15][t % 8];
                    for i in 0..iters {
                        let k = (t * 7 + i * stride) % n;
                        let out = engine.infer(&inputs[k]).unwrap();
                        if out != want[k].as_slice() {
                            panic!("thread {t}, inference {i}, input {k}: logits differ from the reference");
                        }
                    }
                    iters
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

#[test]
fn eight_engines_on_eight_threads_are_bitwise_the_single_threaded_reference() {
    assert_send_sync::<Model>();
    assert_send_sync::<Arc<Model>>();
    assert_send::<Engine>();
    let iters: usize = std::env::var("LEVIT_CONCURRENCY_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let t0 = std::time::Instant::now();
    let mut total = 0;
    for (i, isa) in Isa::supported().into_iter().enumerate() {
        let options = ModelOptions {
            isa: Some(isa),
            ..ModelOptions::default()
        };
        let model = Arc::new(Model::from_bytes(&small_model_bytes(), options).unwrap());
        let (inputs, want) = references(&model, 64);
        // The full count on the best path, a tenth on the others.
        let n = if i == 0 { iters } else { iters.div_ceil(10) };
        let done = hammer(&model, 8, n, &inputs, &want);
        println!("{isa}: 8 threads x {n} inferences = {done}, all bitwise equal");
        total += done;
    }
    println!("{total} inferences in {:.2?}", t0.elapsed());
}

#[test]
fn outputs_are_identical_run_to_run_and_engine_to_engine() {
    let model = Arc::new(Model::from_bytes(&small_model_bytes(), ModelOptions::default()).unwrap());
    let x = image(&model, 5);
    let mut a = Engine::new(model.clone());
    let first = a.infer(&x).unwrap().to_vec();
    for _ in 0..10 {
        assert_eq!(a.infer(&x).unwrap(), first.as_slice());
    }
    // A separately loaded copy of the same bytes, and a fresh engine.
    let again = Arc::new(Model::from_bytes(&small_model_bytes(), ModelOptions::default()).unwrap());
    assert_eq!(Engine::new(again).infer(&x).unwrap(), first.as_slice());
    assert_eq!(Engine::new(model).infer(&x).unwrap(), first.as_slice());
}

/// Every tap (`stem`, `stage0`, ...) and the logits of one inference, as bits.
fn trace(engine: &mut Engine, x: &[f32]) -> Vec<(String, Vec<u32>)> {
    let mut taps = Vec::new();
    let mut tracer = |tap: &levit::Tap, data: &[f32]| {
        taps.push((tap.name.clone(), data.iter().map(|v| v.to_bits()).collect()));
    };
    let logits: Vec<u32> = engine
        .infer_traced(x, Some(&mut tracer))
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    taps.push(("logits".into(), logits));
    taps
}

fn golden_tiny_on(isa: Isa) -> Arc<Model> {
    let file = repo().join("tests/fixtures/golden-tiny/tiny_hswish/model_timm.lvt");
    let options = ModelOptions {
        isa: Some(isa),
        ..ModelOptions::default()
    };
    Arc::new(Model::load_with(file, options).unwrap())
}

#[test]
fn every_intra_op_thread_count_is_bitwise_identical_on_every_path() {
    // The 224x224 golden-tiny model: real LeViT shapes (196/49/16 tokens), so the pool
    // splits GEMMs over rows and panels and attention over query rows unevenly.
    for isa in Isa::supported() {
        let model = golden_tiny_on(isa);
        let inputs: Vec<Vec<f32>> = (0..3).map(|s| image(&model, 40 + s)).collect();
        let mut single = Engine::new(model.clone());
        let want: Vec<_> = inputs.iter().map(|x| trace(&mut single, x)).collect();
        for threads in [1, 2, 3, 4] {
            let options = EngineOptions {
                threads,
                ..Default::default()
            };
            let mut engine = Engine::with_options(model.clone(), options).unwrap();
            for run in 0..2 {
                for (x, want) in inputs.iter().zip(&want) {
                    let got = trace(&mut engine, x);
                    for ((name, a), (_, b)) in got.iter().zip(want) {
                        assert!(
                            a == b,
                            "{isa}, {threads} threads, run {run}: {name} differs"
                        );
                    }
                    assert_eq!(got.len(), want.len());
                }
            }
        }
    }
}

#[test]
fn multi_threaded_engines_side_by_side_match_the_reference() {
    let model = golden_tiny_on(Isa::best());
    let (inputs, want) = references(&model, 8);
    std::thread::scope(|s| {
        for (e, threads) in [2, 3].into_iter().enumerate() {
            let (model, inputs, want) = (model.clone(), &inputs, &want);
            s.spawn(move || {
                let mut engine = Engine::with_options(
                    model,
                    EngineOptions {
                        threads,
                        ..Default::default()
                    },
                )
                .unwrap();
                for i in 0..40 {
                    let k = (e * 3 + i) % inputs.len();
                    assert_eq!(engine.infer(&inputs[k]).unwrap(), want[k].as_slice());
                }
            });
        }
    });
}
