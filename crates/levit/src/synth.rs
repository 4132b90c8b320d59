//! Seeded random-weight models, for benchmarks and tests that need a model without
//! Python. Magnitudes are tame (weights ~ N(0, 1/K), small biases), not trained.

use levit_format::{write_weight_file, TensorBytes, TensorData};
use levit_graph::{tensor_specs, Config};
use levit_kernels::NR;

use crate::Result;

/// A small deterministic generator (xorshift64*): enough for test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeds the generator (any seed, including 0).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Approximately standard normal (sum of uniforms).
    pub fn normal(&mut self) -> f32 {
        (0..4).map(|_| self.next_f32()).sum::<f32>() * 1.732_050_8 - 3.464_101_6
    }
}

/// Config of a named paper variant (`128s`, `128`, `192`, `256`, `384`, with or
/// without a `levit_`/`levit-` prefix, any case).
pub fn variant_config(name: &str) -> Option<Config> {
    let key = name.to_ascii_lowercase().replace(['-', '_'], "");
    let key = key.trim_start_matches("levit");
    let (embed, key_dim, heads, depth): ([usize; 3], usize, [usize; 3], [usize; 3]) = match key {
        "128s" => ([128, 256, 384], 16, [4, 6, 8], [2, 3, 4]),
        "128" => ([128, 256, 384], 16, [4, 8, 12], [4, 4, 4]),
        "192" => ([192, 288, 384], 32, [3, 5, 6], [4, 4, 4]),
        "256" => ([256, 384, 512], 32, [4, 6, 8], [4, 4, 4]),
        "384" => ([384, 512, 768], 32, [6, 9, 12], [4, 4, 4]),
        _ => return None,
    };
    Some(Config {
        variant: format!("levit_{key}"),
        img_size: 224,
        in_chans: 3,
        num_classes: 1000,
        embed_dim: embed.to_vec(),
        key_dim,
        num_heads: heads.to_vec(),
        depth: depth.to_vec(),
        attn_ratio: vec![2.0; 3],
        mlp_ratio: vec![2.0; 3],
        down_attn_ratio: 4.0,
        down_mlp_ratio: 2.0,
        act: levit_graph::ActKind::HardSwish,
        distilled: true,
    })
}

/// Serialises a `.lvt` file with seeded random weights for `config`.
pub fn random_weight_file(config: &Config, seed: u64) -> Result<Vec<u8>> {
    let dims = config.dims()?;
    let specs = tensor_specs(&dims, levit_kernels::Precision::F32);
    let mut rng = Rng::new(seed);
    let data: Vec<Vec<f32>> = specs
        .iter()
        .map(|spec| {
            let len = spec.len();
            if spec.name.ends_with(".weight") {
                // [panels, K, NR]: N(0, 1/K), damped for residual branches.
                let k = spec.shape[1];
                let damp =
                    if spec.name.ends_with("proj.weight") || spec.name.ends_with("fc2.weight") {
                        0.3
                    } else {
                        1.0
                    };
                let scale = damp / (k as f32).sqrt();
                (0..len).map(|_| rng.normal() * scale).collect()
            } else if spec.name.ends_with("attention_biases") {
                (0..len).map(|_| rng.normal() * 0.5).collect()
            } else {
                (0..len).map(|_| rng.normal() * 0.1).collect()
            }
        })
        .collect();
    let tensors: Vec<TensorData> = specs
        .iter()
        .zip(&data)
        .map(|(spec, data)| TensorData {
            name: &spec.name,
            shape: &spec.shape,
            data: TensorBytes::F32(data),
        })
        .collect();
    debug_assert!(specs.iter().all(|s| s.len() % NR == 0));
    let json = serde_json::to_string(config).expect("config serialises");
    Ok(write_weight_file(
        &json,
        &tensors,
        &format!("random weights, seed {seed}"),
    ))
}

/// The bf16 file `levit-weights convert --precision bf16` would write for the same
/// weights: every packed GEMM and conv weight (`*.weight`, f32 panels `[P, K, 16]`)
/// rounded to bf16 K-pair panels `[P, KP/2, 16, 2]`, everything else kept in f32.
pub fn to_bf16_file(f32_file: &[u8]) -> Result<Vec<u8>> {
    let file = levit_format::WeightFile::from_bytes(f32_file, false)?;
    let mut converted: Vec<(String, Vec<usize>, Values)> = Vec::new();
    for t in file.tensors() {
        let data = f32_values(&t)?;
        if t.name.ends_with(".weight") && t.shape.len() == 3 {
            let (k, n) = (t.shape[1], t.shape[0] * NR);
            let mut out = vec![0u16; levit_kernels::bf16::packed_len(k, n)];
            levit_kernels::bf16::repack_f32_panels(data, k, n, &mut out);
            let shape = levit_kernels::bf16::packed_shape(k, n).to_vec();
            converted.push((t.name.to_string(), shape, Values::Bf16(out)));
        } else {
            converted.push((
                t.name.to_string(),
                t.shape.to_vec(),
                Values::F32(data.to_vec()),
            ));
        }
    }
    Ok(write_converted(&file, &converted, "bf16"))
}

/// The int8 file `levit-weights convert --precision int8 --keep-float keep` would
/// write for the same weights (`docs/weight-format.md`): every GEMM and conv weight
/// quantized per column into I8 panels `[P, KQ/4, 16, 4]` with its F32
/// `{name}_scale` and I32 `{name}_comp` beside it, except the layers `keep` keeps
/// (bf16 panels, as [`to_bf16_file`]) and the stem convs over at most 16 channels that
/// are not kept (f32, as they are); biases and bias tables stay f32.
pub fn to_int8_file(f32_file: &[u8], keep: &levit_graph::KeepFloat) -> Result<Vec<u8>> {
    use levit_kernels::Precision;

    let file = levit_format::WeightFile::from_bytes(f32_file, false)?;
    let dims = Config::from_json(file.config_json())?.dims()?;
    keep.check(&dims)?;
    let specs = levit_graph::int8_file_specs(&dims, keep);
    let mut converted: Vec<(String, Vec<usize>, Values)> = Vec::new();
    for spec in &specs {
        let t = file
            .tensor(&spec.name)
            .ok_or_else(|| crate::Error::MissingTensors(vec![spec.name.clone()]))?;
        let data = f32_values(&t)?;
        let (k, n) = (t.shape.get(1).copied().unwrap_or(0), t.shape[0] * NR);
        match spec.precision {
            Precision::Int8 => {
                let mut w = levit_kernels::int8::Weights::zeroed(k, n);
                levit_kernels::int8::quantize_f32_panels(
                    data,
                    k,
                    n,
                    &mut w.data,
                    &mut w.scale,
                    &mut w.comp,
                );
                let [scale, comp] = levit_graph::int8_companion_names(&spec.name);
                converted.push((spec.name.clone(), spec.shape.clone(), Values::I8(w.data)));
                converted.push((scale, vec![n], Values::F32(w.scale)));
                converted.push((comp, vec![n], Values::I32(w.comp)));
            }
            Precision::Bf16 => {
                let mut out = vec![0u16; levit_kernels::bf16::packed_len(k, n)];
                levit_kernels::bf16::repack_f32_panels(data, k, n, &mut out);
                converted.push((spec.name.clone(), spec.shape.clone(), Values::Bf16(out)));
            }
            Precision::F32 => converted.push((
                spec.name.clone(),
                t.shape.to_vec(),
                Values::F32(data.to_vec()),
            )),
        }
    }
    Ok(write_converted(&file, &converted, "int8"))
}

/// A converted tensor's values, in the dtype it is written with.
enum Values {
    F32(Vec<f32>),
    Bf16(Vec<u16>),
    I8(Vec<i8>),
    I32(Vec<i32>),
}

/// The weight file of `converted` (name, shape, values) with `file`'s config, its
/// source tagged with the precision it was converted to.
fn write_converted(
    file: &levit_format::WeightFile,
    converted: &[(String, Vec<usize>, Values)],
    precision: &str,
) -> Vec<u8> {
    let tensors: Vec<TensorData> = converted
        .iter()
        .map(|(name, shape, data)| TensorData {
            name,
            shape,
            data: match data {
                Values::F32(f) => TensorBytes::F32(f),
                Values::Bf16(h) => TensorBytes::Bf16(h),
                Values::I8(q) => TensorBytes::I8(q),
                Values::I32(c) => TensorBytes::I32(c),
            },
        })
        .collect();
    let source = format!("{} ({precision})", file.source().unwrap_or("unknown"));
    write_weight_file(file.config_json(), &tensors, &source)
}

/// An f32 weight file with some values changed and every checksum recomputed: what a
/// broken export (a NaN in the classifier, say) writes. `edit(name, values)` sees every
/// tensor's values and may change them in place.
pub fn edit_f32_file(f32_file: &[u8], mut edit: impl FnMut(&str, &mut [f32])) -> Result<Vec<u8>> {
    let file = levit_format::WeightFile::from_bytes(f32_file, false)?;
    let mut values: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for t in file.tensors() {
        let mut data = f32_values(&t)?.to_vec();
        edit(t.name, &mut data);
        values.push((t.name.to_string(), t.shape.to_vec(), data));
    }
    let tensors: Vec<TensorData> = values
        .iter()
        .map(|(name, shape, data)| TensorData {
            name,
            shape,
            data: TensorBytes::F32(data),
        })
        .collect();
    let source = file.source().unwrap_or("unknown").to_string();
    Ok(write_weight_file(file.config_json(), &tensors, &source))
}

/// A tensor's f32 values, or the error for a file that is not all f32.
fn f32_values<'a>(t: &levit_format::TensorView<'a>) -> Result<&'a [f32]> {
    t.f32().ok_or_else(|| crate::Error::TensorDtype {
        name: t.name.to_string(),
        precision: levit_kernels::Precision::F32,
        expected: "F32".into(),
        found: t.dtype.name().into(),
    })
}
