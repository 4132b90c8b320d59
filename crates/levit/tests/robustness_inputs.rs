//! Hostile inputs: non-finite and extreme values on every SIMD path give documented
//! outputs and never poison the engine; a panic inside a tracer leaves the engine
//! usable. (Wrong input lengths: `engine_api.rs`.)

mod robustness_common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use levit::{Engine, Isa, Model, ModelOptions};
use robustness_common::{image, small_model_bytes};

fn model_on(isa: Isa) -> Arc<Model> {
    let options = ModelOptions {
        isa: Some(isa),
        ..ModelOptions::default()
    };
    Arc::new(Model::from_bytes(&small_model_bytes(), options).unwrap())
}

/// Positions to poison: first and last float, the first pixel of every channel, the
/// middle of the image.
fn positions(model: &Model) -> Vec<usize> {
    let n = model.input_len();
    let plane = n / model.config().in_chans;
    let mut p = vec![0, n / 2 + 17, n - 1];
    p.extend((1..model.config().in_chans).map(|c| c * plane));
    p
}

#[test]
fn nan_or_infinity_anywhere_makes_every_logit_nan_and_never_poisons() {
    // Documented behaviour (docs/robustness.md): a NaN or an infinity anywhere in the
    // image reaches every token through attention, so every logit is NaN (an infinity
    // meets `inf - inf` or `0 * inf` on the way). The next clean image gives bitwise
    // the logits of a fresh engine.
    let poisons = [
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7f80_0001), // signalling NaN
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    for isa in Isa::supported() {
        let model = model_on(isa);
        let clean = image(&model, 7);
        let want = Engine::new(model.clone()).infer(&clean).unwrap().to_vec();
        let mut engine = Engine::new(model.clone());
        for &poison in &poisons {
            for &at in &positions(&model) {
                let mut bad = clean.clone();
                bad[at] = poison;
                let out = engine.infer(&bad).unwrap();
                assert!(
                    out.iter().all(|v| v.is_nan()),
                    "{isa}: {poison} at {at} gave {out:?}"
                );
                let again = engine.infer(&clean).unwrap();
                assert_eq!(
                    again,
                    want.as_slice(),
                    "{isa}: poisoned by {poison} at {at}"
                );
            }
        }
        let all_nan = vec![f32::NAN; model.input_len()];
        assert!(engine.infer(&all_nan).unwrap().iter().all(|v| v.is_nan()));
        assert_eq!(engine.infer(&clean).unwrap(), want.as_slice(), "{isa}");
    }
}

#[test]
fn extreme_finite_inputs_do_not_crash_or_poison() {
    // Huge values overflow to infinities inside the network (then NaN, as above);
    // subnormals and zeros stay finite. Either way the engine stays clean.
    for isa in Isa::supported() {
        let model = model_on(isa);
        let clean = image(&model, 8);
        let want = Engine::new(model.clone()).infer(&clean).unwrap().to_vec();
        let mut engine = Engine::new(model.clone());
        let n = model.input_len();
        let cases: [(&str, Vec<f32>, bool); 5] = [
            ("zeros", vec![0.0; n], true),
            ("subnormal", vec![f32::from_bits(1); n], true),
            ("1e4", clean.iter().map(|v| v * 1e4).collect(), true),
            ("f32::MAX", vec![f32::MAX; n], false),
            (
                "alternating ±f32::MAX",
                (0..n)
                    .map(|i| if i % 2 == 0 { f32::MAX } else { -f32::MAX })
                    .collect(),
                false,
            ),
        ];
        for (name, x, finite) in &cases {
            let out = engine.infer(x).unwrap();
            if *finite {
                assert!(out.iter().all(|v| v.is_finite()), "{isa} {name}: {out:?}");
            }
            assert_eq!(
                engine.infer(&clean).unwrap(),
                want.as_slice(),
                "{isa} {name}"
            );
        }
    }
}

#[test]
fn a_poisoned_image_in_a_batch_leaves_the_other_rows_exact() {
    let model = model_on(Isa::best());
    let classes = model.num_classes();
    let images: Vec<Vec<f32>> = (0..3).map(|s| image(&model, 20 + s)).collect();
    let mut engine = Engine::new(model.clone());
    let singles: Vec<Vec<f32>> = images
        .iter()
        .map(|x| engine.infer(x).unwrap().to_vec())
        .collect();
    let mut batch: Vec<f32> = images.concat();
    batch[model.input_len() + 5] = f32::NAN;
    // Image by image, and as one batch whose GEMMs share rows of all three images.
    let batched = levit::EngineOptions {
        threads: 2,
        max_batch: 3,
    };
    let mut batch_engine = Engine::with_options(model.clone(), batched).unwrap();
    for engine in [&mut engine, &mut batch_engine] {
        let mut out = vec![0.0; 3 * classes];
        engine.infer_batch(&batch, &mut out).unwrap();
        assert_eq!(&out[..classes], singles[0].as_slice());
        assert!(out[classes..2 * classes].iter().all(|v| v.is_nan()));
        assert_eq!(&out[2 * classes..], singles[2].as_slice());
    }
}

#[test]
fn a_panicking_tracer_leaves_the_engine_usable() {
    // A caller's tracer may panic in the middle of an inference (arena half written);
    // the engine must still give exact results afterwards: every run overwrites every
    // buffer it reads.
    let model = model_on(Isa::best());
    let clean = image(&model, 9);
    let want = Engine::new(model.clone()).infer(&clean).unwrap().to_vec();
    let mut engine = Engine::new(model.clone());
    for stop_at in ["stem", "stage0", "stage1", "stage2"] {
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut tracer = |tap: &levit::Tap, _: &[f32]| {
                if tap.name == stop_at {
                    panic!("tracer stops at {stop_at}");
                }
            };
            let _ = engine.infer_traced(&image(&model, 10), Some(&mut tracer));
        }));
        assert!(
            result.is_err(),
            "the tracer should have panicked at {stop_at}"
        );
        assert_eq!(
            engine.infer(&clean).unwrap(),
            want.as_slice(),
            "after a panic at {stop_at}"
        );
    }
}
