//! Batched execution (`EngineOptions::max_batch`): every image's logits from
//! `infer_batch` are bitwise equal to `infer` on that image alone, for every batch
//! size up to the engine's (and past it, in chunks), on every (precision, ISA) path and
//! thread count. The GEMMs of a batch run over `images x tokens` rows, so this checks
//! that each output element keeps one accumulation order whatever M, the row tiles and
//! the thread split are.

use std::sync::Arc;

use levit::synth::{self, Rng};
use levit::{Config, Engine, EngineOptions, Error, Isa, Model, ModelOptions, Precision};

/// LeViT-128S's resolution and stages (196, 49 and 16 tokens, the subsample row
/// gathers), narrow enough to run every path quickly.
fn narrow_config() -> Config {
    let mut c = synth::variant_config("128s").unwrap();
    c.variant = "narrow".into();
    c.embed_dim = vec![32, 48, 64];
    c.key_dim = 8;
    c.num_heads = vec![2, 3, 4];
    c.depth = vec![1, 2, 1];
    c.num_classes = 37;
    c
}

fn images(model: &Model, n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n * model.input_len()).map(|_| rng.normal()).collect()
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// Every (precision, ISA) path this CPU runs.
fn paths() -> Vec<(Precision, Isa)> {
    Precision::ALL
        .into_iter()
        .flat_map(|p| Isa::supported().into_iter().map(move |isa| (p, isa)))
        .collect()
}

/// Checks `infer_batch` on `model` against single-image `infer`, for engines of
/// `max_batch` with each thread count and each batch size in `sizes`.
fn check_batches(
    model: &Arc<Model>,
    what: &str,
    max_batch: usize,
    threads: &[usize],
    sizes: &[usize],
) {
    let classes = model.num_classes();
    let largest = sizes.iter().copied().max().unwrap();
    let inputs = images(model, largest, 11);
    let mut single = Engine::new(model.clone());
    let want: Vec<u32> = inputs
        .chunks_exact(model.input_len())
        .flat_map(|image| bits(single.infer(image).unwrap()))
        .collect();
    for &t in threads {
        let options = EngineOptions {
            threads: t,
            max_batch,
        };
        let mut engine = Engine::with_options(model.clone(), options).unwrap();
        assert_eq!(engine.max_batch(), max_batch);
        for &n in sizes {
            let mut out = vec![f32::NAN; n * classes];
            engine
                .infer_batch(&inputs[..n * model.input_len()], &mut out)
                .unwrap();
            for (i, (got, want)) in bits(&out)
                .chunks_exact(classes)
                .zip(want.chunks_exact(classes))
                .enumerate()
            {
                assert!(
                    got == want,
                    "{what}, {t} thread(s), max_batch {max_batch}, batch of {n}: image {i} differs from infer"
                );
            }
        }
        // `infer` on a batch engine is the single-image result too.
        let first = bits(engine.infer(&inputs[..model.input_len()]).unwrap());
        assert_eq!(
            first,
            want[..classes],
            "{what}, {t} thread(s): infer on a batch engine"
        );
    }
}

#[test]
fn batch_logits_equal_infer_bit_for_bit_on_every_path_batch_size_and_thread_count() {
    let bytes = synth::random_weight_file(&narrow_config(), 5).unwrap();
    for (precision, isa) in paths() {
        let options = ModelOptions {
            isa: Some(isa),
            precision: Some(precision),
            ..ModelOptions::default()
        };
        let model = Arc::new(Model::from_bytes(&bytes, options).unwrap());
        // 1..=5 in one chunk each, 7 as 5 + 2.
        check_batches(
            &model,
            &format!("{precision} {isa}"),
            5,
            &[1, 2, 3, 4],
            &[1, 2, 3, 4, 5, 7],
        );
    }
}

#[test]
fn levit_128s_batches_of_up_to_8_equal_infer_on_the_fastest_paths() {
    let bytes = synth::random_weight_file(&synth::variant_config("128s").unwrap(), 9).unwrap();
    for precision in Precision::ALL {
        let options = ModelOptions {
            precision: Some(precision),
            ..ModelOptions::default()
        };
        let model = Arc::new(Model::from_bytes(&bytes, options).unwrap());
        let what = format!("levit_128s {precision} {}", model.isa());
        check_batches(&model, &what, 8, &[1, 2], &[8, 3]);
    }
}

#[test]
fn batch_sizes_over_the_limit_are_refused_and_zero_means_one() {
    let bytes = synth::random_weight_file(&narrow_config(), 5).unwrap();
    let model = Arc::new(Model::from_bytes(&bytes, ModelOptions::default()).unwrap());
    let options = |max_batch| EngineOptions {
        threads: 1,
        max_batch,
    };
    let err = Engine::with_options(model.clone(), options(levit::MAX_BATCH + 1)).unwrap_err();
    assert!(matches!(err, Error::Batch { .. }), "{err}");
    assert!(err.to_string().contains("at most"), "{err}");
    let engine = Engine::with_options(model.clone(), options(0)).unwrap();
    assert_eq!(engine.max_batch(), 1);
    // A batch engine's arena grows with the batch; the estimate is what it allocates.
    let one = model.engine_bytes_with(options(1)).unwrap();
    assert_eq!(one, model.engine_bytes(1));
    let eight = model.engine_bytes_with(options(8)).unwrap();
    assert!(eight > one && eight < 8 * one, "{one} -> {eight}");
}
