//! Engine-level behaviour: config/tensor mismatches at load, input checks, NaN
//! handling, sharing one model between engines.

use std::sync::Arc;

use levit::synth::{self, Rng};
use levit::{Config, Engine, Error, Model, ModelOptions};
use levit_format::{write_weight_file, TensorBytes, TensorData, WeightFile};

fn tiny_config() -> Config {
    let mut c = synth::variant_config("128s").unwrap();
    c.variant = "tiny".into();
    c.embed_dim = vec![32, 48, 64];
    c.key_dim = 8;
    c.num_heads = vec![2, 3, 4];
    c.depth = vec![1, 1, 1];
    c.num_classes = 10;
    c
}

fn model_bytes() -> Vec<u8> {
    synth::random_weight_file(&tiny_config(), 3).unwrap()
}

/// Rewrites a valid file: `f` may rename, reshape, drop or add tensors, or change the config.
fn rewrite(f: impl FnOnce(&mut String, &mut Vec<(String, Vec<usize>, Vec<f32>)>)) -> Vec<u8> {
    let file = WeightFile::from_bytes(&model_bytes(), true).unwrap();
    let mut config = file.config_json().to_string();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = file
        .tensors()
        .map(|t| {
            (
                t.name.to_string(),
                t.shape.to_vec(),
                t.f32().unwrap().to_vec(),
            )
        })
        .collect();
    f(&mut config, &mut tensors);
    let views: Vec<TensorData> = tensors
        .iter()
        .map(|(n, s, d)| TensorData {
            name: n,
            shape: s,
            data: TensorBytes::F32(d),
        })
        .collect();
    write_weight_file(&config, &views, "edited")
}

fn load(bytes: &[u8]) -> levit::Result<Model> {
    Model::from_bytes(bytes, ModelOptions::default())
}

fn image(model: &Model, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..model.input_len()).map(|_| rng.normal()).collect()
}

#[test]
fn missing_tensor_is_named() {
    let bytes = rewrite(|_, t| t.retain(|(n, _, _)| n != "stages.1.downsample.attn.q.weight"));
    let e = load(&bytes).unwrap_err();
    assert!(
        matches!(e, Error::MissingTensors(ref v) if v == &["stages.1.downsample.attn.q.weight"]),
        "{e}"
    );
}

#[test]
fn unexpected_tensor_is_named() {
    let bytes = rewrite(|_, t| t.push(("extra.weight".into(), vec![16], vec![0.0; 16])));
    let e = load(&bytes).unwrap_err();
    assert!(e.to_string().contains("extra.weight"), "{e}");
    assert!(matches!(e, Error::UnexpectedTensors(_)));
}

#[test]
fn shape_inconsistent_with_config_names_both_shapes() {
    let bytes = rewrite(|_, t| {
        let w = t.iter_mut().find(|(n, _, _)| n == "head.weight").unwrap();
        // Same byte size, different shape.
        let (p, k, r) = (w.1[0], w.1[1], w.1[2]);
        w.1 = vec![p * 2, k / 2, r];
    });
    let e = load(&bytes).unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, Error::TensorShape { .. }) && text.contains("head.weight"),
        "{text}"
    );
}

#[test]
fn bad_config_is_an_error_naming_the_field() {
    let bytes = rewrite(|c, _| *c = c.replace("\"img_size\":224", "\"img_size\":225"));
    let e = load(&bytes).unwrap_err();
    assert!(e.to_string().contains("img_size"), "{e}");
    let bytes = rewrite(|c, _| *c = "{not json".into());
    let e = load(&bytes).unwrap_err();
    assert!(e.to_string().contains("config"), "{e}");
    let bytes = rewrite(|c, _| *c = c.replace("\"key_dim\":8", "\"key_dim\":7"));
    assert!(load(&bytes).unwrap_err().to_string().contains("key_dim"));
}

#[test]
fn wrong_input_length_is_an_error() {
    let mut engine = Engine::new(Arc::new(load(&model_bytes()).unwrap()));
    let n = engine.model().input_len();
    for len in [0, 1, n - 1, n + 1, 2 * n] {
        let e = engine.infer(&vec![0.0; len]).unwrap_err();
        assert!(
            matches!(e, Error::InputLength { found, .. } if found == len),
            "{e}"
        );
    }
    let mut out = vec![0.0; 10];
    assert!(engine.infer_batch(&vec![0.0; n + 3], &mut out).is_err());
    assert!(matches!(
        engine.infer_batch(&vec![0.0; n], &mut [0.0; 11]),
        Err(Error::OutputLength { .. })
    ));
}

#[test]
fn nan_propagates_and_does_not_poison_the_engine() {
    let model = Arc::new(load(&model_bytes()).unwrap());
    let clean = image(&model, 5);
    let mut fresh = Engine::new(model.clone());
    let want = fresh.infer(&clean).unwrap().to_vec();

    let mut engine = Engine::new(model.clone());
    for poison in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut bad = clean.clone();
        bad[1234] = poison;
        let out = engine.infer(&bad).unwrap();
        assert!(
            out.iter().any(|v| !v.is_finite()),
            "{poison} should reach the logits"
        );
        let again = engine.infer(&clean).unwrap();
        assert_eq!(again, want.as_slice(), "engine poisoned by {poison}");
    }
}

#[test]
fn shared_model_gives_bitwise_identical_results_across_engines_and_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}
    assert_send_sync::<Model>();
    assert_send::<Engine>();

    let model = Arc::new(load(&model_bytes()).unwrap());
    let inputs: Vec<Vec<f32>> = (0..4).map(|s| image(&model, s)).collect();
    let mut reference = Engine::new(model.clone());
    let want: Vec<Vec<f32>> = inputs
        .iter()
        .map(|x| reference.infer(x).unwrap().to_vec())
        .collect();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (model, inputs, want) = (model.clone(), &inputs, &want);
            s.spawn(move || {
                let mut engine = Engine::new(model);
                for round in 0..3 {
                    let i = (t + round) % inputs.len();
                    assert_eq!(engine.infer(&inputs[i]).unwrap(), want[i].as_slice());
                }
            });
        }
    });
}

#[test]
fn batch_equals_single_images() {
    let model = Arc::new(load(&model_bytes()).unwrap());
    let mut engine = Engine::new(model.clone());
    let (a, b) = (image(&model, 1), image(&model, 2));
    let want: Vec<f32> = [&a, &b]
        .iter()
        .flat_map(|x| engine.infer(x).unwrap().to_vec())
        .collect();
    let batch: Vec<f32> = a.iter().chain(&b).copied().collect();
    let mut out = vec![0.0; 2 * model.num_classes()];
    engine.infer_batch(&batch, &mut out).unwrap();
    assert_eq!(out, want);
}

#[test]
fn unsupported_isa_request_is_an_error_not_a_crash() {
    assert!(levit::Isa::parse("sse9").is_err());
    let opts = ModelOptions {
        isa: Some(levit::Isa::Portable),
        ..ModelOptions::default()
    };
    assert!(Model::from_bytes(&model_bytes(), opts).is_ok());
}

#[test]
fn every_thread_count_gives_bitwise_identical_logits() {
    let model = Arc::new(load(&model_bytes()).unwrap());
    let inputs: Vec<Vec<f32>> = (0..3).map(|s| image(&model, 10 + s)).collect();
    let mut single = Engine::new(model.clone());
    let want: Vec<Vec<f32>> = inputs
        .iter()
        .map(|x| single.infer(x).unwrap().to_vec())
        .collect();
    for threads in [2, 3, 4] {
        let mut engine = Engine::with_options(
            model.clone(),
            levit::EngineOptions {
                threads,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(engine.threads(), threads);
        for (x, w) in inputs.iter().zip(&want) {
            assert_eq!(
                engine.infer(x).unwrap(),
                w.as_slice(),
                "{threads} threads differ"
            );
        }
    }
}

#[test]
fn absurd_thread_counts_are_an_error_not_an_abort() {
    let model = Arc::new(load(&model_bytes()).unwrap());
    for threads in [levit::MAX_THREADS + 1, 1 << 40, usize::MAX] {
        let err = Engine::with_options(
            model.clone(),
            levit::EngineOptions {
                threads,
                ..Default::default()
            },
        )
        .map(|_| ())
        .unwrap_err();
        assert!(
            matches!(err, Error::Threads { requested, max } if requested == threads && max == levit::MAX_THREADS),
            "{err}"
        );
        assert!(err.to_string().contains("at most 256"), "{err}");
    }
    // 0 means 1; the maximum itself is allowed (not started here: 256 spinning threads).
    let engine = Engine::with_options(
        model,
        levit::EngineOptions {
            threads: 0,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(engine.threads(), 1);
}
