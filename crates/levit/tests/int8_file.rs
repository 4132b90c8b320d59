//! int8 weight files (`levit-weights convert --precision int8`) and the layers an int8
//! model keeps in float (`ModelOptions::keep_float`, `--keep-float`):
//! - an int8 file gives the bits of the same f32 file quantized at load, on every path,
//!   with nothing repacked (its weights, scales and compensations are mapped in place);
//! - the int8 file `levit-weights recast` (numpy) writes is, tensor for tensor, the
//!   one the Rust quantizer writes (`synth::to_int8_file`);
//! - keeping every layer in float is the bf16 model, bit for bit; keeping some changes
//!   only what follows them;
//! - a malformed int8 file (missing, mistyped or missized scales and compensations,
//!   weights of the wrong shape) is a typed error.

use std::path::Path;
use std::sync::Arc;

use levit::{synth, Engine, Error, Isa, KeepFloat, Model, ModelOptions, Precision};
use levit_format::{write_weight_file, Dtype, TensorBytes, TensorData, WeightFile};

fn options(precision: Option<Precision>, keep: &str, isa: Isa) -> ModelOptions {
    ModelOptions {
        precision,
        keep_float: if keep.is_empty() {
            KeepFloat::none()
        } else {
            KeepFloat::parse(keep).unwrap()
        },
        isa: Some(isa),
        ..ModelOptions::default()
    }
}

fn engine(bytes: &[u8], options: ModelOptions) -> levit::Result<Engine> {
    Ok(Engine::new(Arc::new(Model::from_bytes(bytes, options)?)))
}

fn image(len: usize) -> Vec<f32> {
    let mut rng = synth::Rng::new(3);
    (0..len).map(|_| rng.normal()).collect()
}

/// The logits and every tap (`stem`, `stage0`, ...), as bits.
fn run(e: &mut Engine, x: &[f32]) -> (Vec<u32>, Vec<(String, Vec<u32>)>) {
    let mut taps = Vec::new();
    let mut tracer = |tap: &levit::Tap, data: &[f32]| {
        taps.push((tap.name.clone(), data.iter().map(|v| v.to_bits()).collect()));
    };
    let logits = e
        .infer_traced(x, Some(&mut tracer))
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    (logits, taps)
}

fn f32_file(seed: u64) -> Vec<u8> {
    let config = synth::variant_config("128s").unwrap();
    synth::random_weight_file(&config, seed).unwrap()
}

#[test]
fn int8_file_and_f32_file_quantized_at_load_agree_bitwise_on_every_path() {
    let f32_bytes = f32_file(11);
    let int8_bytes = synth::to_int8_file(&f32_bytes, &KeepFloat::none()).unwrap();
    // About a quarter of the f32 file (the scales, compensations, biases, bias tables
    // and the f32 RGB stem conv are the rest).
    assert!(
        int8_bytes.len() * 3 < f32_bytes.len(),
        "{} of {}",
        int8_bytes.len(),
        f32_bytes.len()
    );
    for isa in Isa::supported() {
        let mut quantized = engine(&f32_bytes, options(Some(Precision::Int8), "", isa)).unwrap();
        let mut stored = engine(&int8_bytes, options(None, "", isa)).unwrap();
        assert_eq!(stored.model().precision(), Precision::Int8, "{isa}");
        assert_eq!(stored.model().repacked_bytes(), 0, "{isa}: mapped in place");
        assert!(quantized.model().repacked_bytes() > 0);
        let x = image(stored.model().input_len());
        assert_eq!(run(&mut quantized, &x), run(&mut stored, &x), "{isa}");
    }
}

#[test]
fn an_int8_file_refuses_float_precisions() {
    let int8_bytes = synth::to_int8_file(&f32_file(12), &KeepFloat::none()).unwrap();
    for requested in [Precision::F32, Precision::Bf16] {
        match Model::from_bytes(&int8_bytes, options(Some(requested), "", Isa::best())) {
            Err(Error::Precision {
                stored,
                requested: r,
                why,
            }) => {
                assert_eq!((stored, r), (Precision::Int8, requested));
                assert!(why.contains("convert"), "{why}");
            }
            other => panic!(
                "{requested}: expected a precision error, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    // Keeping in float a layer the file stores in int8 needs weights it does not have.
    let e = Model::from_bytes(&int8_bytes, options(None, "head", Isa::best())).unwrap_err();
    assert!(
        matches!(e, Error::Precision { .. }) && e.to_string().contains("head"),
        "{e}"
    );
}

#[test]
fn the_python_int8_seed_is_what_the_rust_quantizer_writes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    let f32_bytes = std::fs::read(dir.join("one_stage.lvt")).unwrap();
    let python = std::fs::read(dir.join("one_stage_int8.lvt")).unwrap();
    let python = WeightFile::from_bytes(&python, true).unwrap_or_else(|e| {
        panic!(
            "{e}; regenerate with `levit-weights recast fuzz/seeds/one_stage.lvt -o \
             fuzz/seeds/one_stage_int8.lvt --precision int8`"
        )
    });
    let rust = synth::to_int8_file(&f32_bytes, &KeepFloat::none()).unwrap();
    let rust = WeightFile::from_bytes(&rust, true).unwrap();
    assert_eq!(python.config_json(), rust.config_json());
    let names: Vec<&str> = rust.tensors().map(|t| t.name).collect();
    assert_eq!(names, python.tensors().map(|t| t.name).collect::<Vec<_>>());
    for t in rust.tensors() {
        let p = python.tensor(t.name).unwrap();
        assert_eq!((p.dtype, p.shape), (t.dtype, t.shape), "{}", t.name);
        assert!(
            p.bytes == t.bytes,
            "{}: numpy and Rust quantize differently",
            t.name
        );
    }
    assert!(rust.tensors().filter(|t| t.dtype == Dtype::I8).count() >= 5);
    assert!(rust.tensors().any(|t| t.dtype == Dtype::I32));
    let bytes = std::fs::read(dir.join("one_stage_int8.lvt")).unwrap();
    let model = Model::from_bytes(&bytes, ModelOptions::default()).unwrap();
    assert_eq!(model.precision(), Precision::Int8);
}

#[test]
fn keeping_every_layer_in_float_is_the_bf16_model() {
    let f32_bytes = f32_file(13);
    let bf16_bytes = synth::to_bf16_file(&f32_bytes).unwrap();
    // An int8 file keeping every layer stores no I8 tensor: it is the bf16 file.
    let all = KeepFloat::parse("all").unwrap();
    let kept_file = synth::to_int8_file(&f32_bytes, &all).unwrap();
    for isa in Isa::supported() {
        let mut bf16 = engine(&bf16_bytes, options(None, "", isa)).unwrap();
        let mut kept = engine(&f32_bytes, options(Some(Precision::Int8), "all", isa)).unwrap();
        let mut kept_stored = engine(&kept_file, options(None, "", isa)).unwrap();
        assert_eq!(kept_stored.model().precision(), Precision::Bf16);
        let x = image(bf16.model().input_len());
        let want = run(&mut bf16, &x);
        assert_eq!(run(&mut kept, &x), want, "{isa}");
        assert_eq!(run(&mut kept_stored, &x), want, "{isa}");
    }
}

#[test]
fn keeping_some_layers_changes_only_those() {
    let f32_bytes = f32_file(14);
    let isa = Isa::best();
    let x = image(
        Model::from_bytes(&f32_bytes, ModelOptions::default())
            .unwrap()
            .input_len(),
    );
    let int8 = run(
        &mut engine(&f32_bytes, options(Some(Precision::Int8), "", isa)).unwrap(),
        &x,
    );
    let tap = |r: &(Vec<u32>, Vec<(String, Vec<u32>)>), name: &str| {
        r.1.iter().find(|(n, _)| n == name).unwrap().1.clone()
    };
    // stage1: the stem and stage 0 are untouched, stage 1 and what follows change.
    let stage1 = run(
        &mut engine(&f32_bytes, options(Some(Precision::Int8), "stage1", isa)).unwrap(),
        &x,
    );
    for same in ["stem", "stage0"] {
        assert_eq!(tap(&stage1, same), tap(&int8, same), "{same}");
    }
    assert_ne!(tap(&stage1, "stage1"), tap(&int8, "stage1"));
    assert_ne!(stage1.0, int8.0);
    // head: every tap is the int8 one, the logits change.
    let head = run(
        &mut engine(&f32_bytes, options(Some(Precision::Int8), "head", isa)).unwrap(),
        &x,
    );
    assert_eq!(head.1, int8.1);
    assert_ne!(head.0, int8.0);
    // The same kept layers from an int8 file converted with them give the same bits,
    // with the kept layers mapped as bf16 panels; asking for them again is fine.
    let keep = KeepFloat::parse("stem,stage1").unwrap();
    let file = synth::to_int8_file(&f32_bytes, &keep).unwrap();
    let stored = Model::from_bytes(&file, options(None, "stage1", isa)).unwrap();
    assert!(stored.repacked_bytes() > 0, "the kept RGB conv is widened");
    assert!(stored.keep_float().keeps("stages.1.blocks.0.mlp.fc1"));
    assert!(stored.keep_float().keeps("stem.2") && !stored.keep_float().keeps("head"));
    let want = run(
        &mut engine(
            &f32_bytes,
            options(Some(Precision::Int8), "stem,stage1", isa),
        )
        .unwrap(),
        &x,
    );
    assert_eq!(run(&mut Engine::new(Arc::new(stored)), &x), want);
}

#[test]
fn keep_float_names_are_checked() {
    let f32_bytes = f32_file(15);
    let isa = Isa::best();
    for bad in ["stage3", "stages.0.blocks.9", "tail"] {
        let e =
            Model::from_bytes(&f32_bytes, options(Some(Precision::Int8), bad, isa)).unwrap_err();
        assert!(e.to_string().contains(bad), "{bad}: {e}");
    }
    // Only an int8 model keeps layers in float.
    for p in [None, Some(Precision::Bf16)] {
        let e = Model::from_bytes(&f32_bytes, options(p, "head", isa)).unwrap_err();
        assert!(e.to_string().contains("int8"), "{e}");
    }
}

/// Bytes copied into a vector of `T` (the length is cut to whole elements).
fn typed<T: bytemuck::Pod>(b: &[u8]) -> Vec<T> {
    let mut out = vec![T::zeroed(); b.len() / std::mem::size_of::<T>()];
    let len = out.len() * std::mem::size_of::<T>();
    bytemuck::cast_slice_mut::<T, u8>(&mut out).copy_from_slice(&b[..len]);
    out
}

/// The int8 file of a small model with its tensors passed through `edit(name, dtype,
/// shape, bytes)`, which may change them or drop them (`None`); checksums recomputed.
fn edited_int8_file(
    edit: impl Fn(&str, Dtype, &[usize], &[u8]) -> Option<(Dtype, Vec<usize>, Vec<u8>)>,
) -> Vec<u8> {
    let f32_bytes = synth::random_weight_file(&synth::variant_config("128s").unwrap(), 16).unwrap();
    let bytes = synth::to_int8_file(&f32_bytes, &KeepFloat::none()).unwrap();
    let file = WeightFile::from_bytes(&bytes, true).unwrap();
    let kept: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .filter_map(|t| {
            edit(t.name, t.dtype, t.shape, t.bytes).map(|(d, s, b)| (t.name.to_string(), d, s, b))
        })
        .collect();
    // Typed copies of the bytes (the writer takes typed slices).
    enum Typed {
        F32(Vec<f32>),
        I8(Vec<i8>),
        I32(Vec<i32>),
        Bf16(Vec<u16>),
    }
    let typed_data: Vec<Typed> = kept
        .iter()
        .map(|(_, d, _, b)| match d {
            Dtype::F32 => Typed::F32(typed(b)),
            Dtype::I8 => Typed::I8(typed(b)),
            Dtype::I32 => Typed::I32(typed(b)),
            Dtype::Bf16 => Typed::Bf16(typed(b)),
        })
        .collect();
    let tensors: Vec<TensorData> = kept
        .iter()
        .zip(&typed_data)
        .map(|((name, _, shape, _), data)| TensorData {
            name,
            shape,
            data: match data {
                Typed::F32(v) => TensorBytes::F32(v),
                Typed::I8(v) => TensorBytes::I8(v),
                Typed::I32(v) => TensorBytes::I32(v),
                Typed::Bf16(v) => TensorBytes::Bf16(v),
            },
        })
        .collect();
    write_weight_file(file.config_json(), &tensors, "edited")
}

#[test]
fn malformed_int8_files_are_typed_errors() {
    let target = "stages.1.blocks.0.mlp.fc1.weight";
    let load = |bytes: Vec<u8>| Model::from_bytes(&bytes, ModelOptions::default()).map(|_| ());
    // The unedited file loads.
    load(edited_int8_file(|_, d, s, b| {
        Some((d, s.to_vec(), b.to_vec()))
    }))
    .unwrap();
    // A missing scale or compensation.
    for suffix in ["_scale", "_comp"] {
        let gone = format!("{target}{suffix}");
        let e = load(edited_int8_file(|n, d, s, b| {
            (n != gone).then(|| (d, s.to_vec(), b.to_vec()))
        }))
        .unwrap_err();
        assert!(
            matches!(&e, Error::MissingTensors(v) if v == std::slice::from_ref(&gone)),
            "{e}"
        );
    }
    // Scales stored as I32, compensations as F32 (same byte size): wrong dtype.
    for (suffix, to) in [("_scale", Dtype::I32), ("_comp", Dtype::F32)] {
        let name = format!("{target}{suffix}");
        let e = load(edited_int8_file(|n, d, s, b| {
            Some((if n == name { to } else { d }, s.to_vec(), b.to_vec()))
        }))
        .unwrap_err();
        assert!(
            matches!(&e, Error::TensorDtype { name: t, .. } if t == &name),
            "{suffix}: {e}"
        );
    }
    // One panel of scales too many (and compensations too few): wrong shape.
    for (suffix, extra) in [("_scale", 16isize), ("_comp", -16)] {
        let name = format!("{target}{suffix}");
        let e = load(edited_int8_file(|n, d, s, b| {
            if n != name {
                return Some((d, s.to_vec(), b.to_vec()));
            }
            let len = (s[0] as isize + extra) as usize;
            let mut bytes = b.to_vec();
            bytes.resize(len * 4, 0);
            Some((d, vec![len], bytes))
        }))
        .unwrap_err();
        assert!(
            matches!(&e, Error::TensorShape { name: t, .. } if t == &name),
            "{suffix}: {e}"
        );
    }
    // int8 weights of the wrong shape (K padded to 32 instead of 64, as bf16 pads).
    let e = load(edited_int8_file(|n, d, s, b| {
        if n != target {
            return Some((d, s.to_vec(), b.to_vec()));
        }
        let mut shape = s.to_vec();
        shape[1] += 8;
        let mut bytes = b.to_vec();
        bytes.resize(shape.iter().product(), 0);
        Some((d, shape, bytes))
    }))
    .unwrap_err();
    assert!(
        matches!(&e, Error::TensorShape { name, .. } if name == target),
        "{e}"
    );
    // An int8 weight stored as F32 beside its scales: a mixed file.
    let e = load(edited_int8_file(|n, d, s, b| {
        if n != target {
            return Some((d, s.to_vec(), b.to_vec()));
        }
        let mut bytes = b.to_vec();
        bytes.truncate(b.len() / 4 * 4);
        Some((Dtype::F32, vec![b.len() / 64, 16], bytes))
    }))
    .unwrap_err();
    assert!(
        matches!(&e, Error::TensorDtype { name, .. } if name == target),
        "{e}"
    );
}
