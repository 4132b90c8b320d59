//! The precision axis through the facade: an f32 file run in bf16 (repacked at load)
//! and the same weights stored as a bf16 file give the same bits; a bf16 file cannot
//! be run in f32; every bf16 path stays close to f32.

use std::sync::Arc;

use levit::{synth, Engine, Error, Isa, Model, ModelOptions, Precision};

fn engine(bytes: &[u8], precision: Option<Precision>, isa: Isa) -> levit::Result<Engine> {
    let options = ModelOptions {
        precision,
        isa: Some(isa),
        ..ModelOptions::default()
    };
    Ok(Engine::new(Arc::new(Model::from_bytes(bytes, options)?)))
}

fn image(len: usize) -> Vec<f32> {
    let mut rng = synth::Rng::new(3);
    (0..len).map(|_| rng.normal()).collect()
}

#[test]
fn bf16_file_and_repacked_f32_file_agree_bitwise_on_every_path() {
    let config = synth::variant_config("128s").unwrap();
    let f32_bytes = synth::random_weight_file(&config, 5).unwrap();
    let bf16_bytes = synth::to_bf16_file(&f32_bytes).unwrap();
    for isa in Isa::supported() {
        let mut repacked = engine(&f32_bytes, Some(Precision::Bf16), isa).unwrap();
        let mut stored = engine(&bf16_bytes, None, isa).unwrap();
        assert_eq!(stored.model().precision(), Precision::Bf16);
        assert!(
            stored.model().repacked_bytes() > 0,
            "the f32 stem convs are widened"
        );
        let x = image(repacked.model().input_len());
        let a: Vec<u32> = repacked
            .infer(&x)
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect();
        let b: Vec<u32> = stored
            .infer(&x)
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect();
        let differ = a.iter().zip(&b).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "{isa}: {differ} of {} logits differ", a.len());
    }
}

#[test]
fn bf16_is_close_to_f32_and_a_bf16_file_refuses_f32() {
    let config = synth::variant_config("128s").unwrap();
    let f32_bytes = synth::random_weight_file(&config, 6).unwrap();
    let bf16_bytes = synth::to_bf16_file(&f32_bytes).unwrap();
    let isa = Isa::best();
    let mut exact = engine(&f32_bytes, None, isa).unwrap();
    let x = image(exact.model().input_len());
    let want = exact.infer(&x).unwrap().to_vec();
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for isa in Isa::supported() {
        let mut e = engine(&bf16_bytes, None, isa).unwrap();
        let got = e.infer(&x).unwrap();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        // The golden tests hold bf16 to 5e-2 relative against PyTorch.
        assert!(worst <= 5e-2 * scale, "{isa}: {worst} vs scale {scale}");
    }
    match engine(&bf16_bytes, Some(Precision::F32), isa) {
        Err(Error::Precision {
            stored, requested, ..
        }) => {
            assert_eq!((stored, requested), (Precision::Bf16, Precision::F32));
        }
        other => panic!("expected a precision error, got {:?}", other.map(|_| ())),
    }
}

/// Largest `|a - b|` over the logits, and `max(1, max|b|)`.
fn gap(a: &[f32], b: &[f32]) -> (f32, f32) {
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    (worst, b.iter().fold(1.0f32, |m, v| m.max(v.abs())))
}

#[test]
fn int8_from_an_f32_file_is_close_to_f32_on_every_path() {
    let config = synth::variant_config("128s").unwrap();
    let f32_bytes = synth::random_weight_file(&config, 8).unwrap();
    for isa in Isa::supported() {
        let mut exact = engine(&f32_bytes, None, isa).unwrap();
        let mut quantized = engine(&f32_bytes, Some(Precision::Int8), isa).unwrap();
        assert_eq!(quantized.model().precision(), Precision::Int8);
        let kernel = quantized.model().gemm_kernel(Precision::Int8).unwrap();
        assert_eq!(kernel.precision(), Precision::Int8, "{isa}: {kernel:?}");
        // Quantized at load into owned memory: about a quarter of the f32 weights
        // (plus the f32 stem convs, which stay as the file has them).
        let repacked = quantized.model().repacked_bytes();
        let f32_bytes = quantized.model().stored_floats() * 4;
        assert!(
            repacked > 0 && repacked * 3 < f32_bytes,
            "{repacked} of {f32_bytes}"
        );
        let x = image(exact.model().input_len());
        let want = exact.infer(&x).unwrap().to_vec();
        let got = quantized.infer(&x).unwrap();
        assert!(got.iter().all(|v| v.is_finite()));
        let (worst, scale) = gap(got, &want);
        // The golden tests hold int8 to their measured tolerance against PyTorch;
        // random weights (no trained activation ranges) sit well inside 0.5.
        assert!(worst <= 0.5 * scale, "{isa}: {worst} vs scale {scale}");
        assert!(worst > 0.0, "{isa}: int8 gave the f32 bits: not quantized?");
    }
}

#[test]
fn int8_results_do_not_depend_on_the_thread_count() {
    let config = synth::variant_config("128s").unwrap();
    let f32_bytes = synth::random_weight_file(&config, 9).unwrap();
    let options = ModelOptions {
        precision: Some(Precision::Int8),
        ..ModelOptions::default()
    };
    let model = Arc::new(Model::from_bytes(&f32_bytes, options).unwrap());
    let x = image(model.input_len());
    let run = |threads| {
        let options = levit::EngineOptions {
            threads,
            ..Default::default()
        };
        let mut e = Engine::with_options(model.clone(), options).unwrap();
        e.infer(&x)
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<u32>>()
    };
    let one = run(1);
    for threads in 2..=4 {
        assert_eq!(run(threads), one, "{threads} threads");
    }
}
