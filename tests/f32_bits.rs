//! f32 keeps its exact bits across refactors: the logits of the tiny golden models on
//! every SIMD path, recorded with the engine as it was before the precision axis
//! (commit 9e19459, `levit infer`), must come out bit for bit the same.

use std::path::Path;
use std::sync::Arc;

use levit::{Engine, Isa, Model, ModelOptions, Precision};
use levit_cli::npy;

#[test]
fn f32_logits_are_bitwise_those_recorded_before_the_precision_axis() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut checked = 0;
    for model in ["tiny_hswish", "tiny_silu"] {
        let file = root.join(format!("golden-tiny/{model}/model_timm.lvt"));
        for isa in [Isa::Avx512, Isa::Avx2, Isa::Portable] {
            if !Isa::supported().contains(&isa) {
                continue;
            }
            let options = ModelOptions {
                isa: Some(isa),
                precision: Some(Precision::F32),
                ..ModelOptions::default()
            };
            let mut engine = Engine::new(Arc::new(Model::load_with(&file, options).unwrap()));
            for input in ["batch4", "large"] {
                let x =
                    npy::read_f32(&root.join(format!("golden-tiny/inputs/{input}.npy"))).unwrap();
                let want = npy::read_f32(&root.join(format!("f32-bits/{model}.{input}.{isa}.npy")))
                    .unwrap();
                let mut got = vec![0.0f32; want.data.len()];
                engine.infer_batch(&x.data, &mut got).unwrap();
                let differ = got
                    .iter()
                    .zip(&want.data)
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
                assert_eq!(differ, 0, "{model} {input} {isa}: {differ} logits differ");
                checked += 1;
            }
        }
    }
    assert!(
        checked > 0,
        "no SIMD path of the recording is supported here"
    );
}
