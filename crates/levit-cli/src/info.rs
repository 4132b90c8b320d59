//! `levit info`: what a model file holds and how it will run here.

use std::path::Path;

use anyhow::Result;
use levit::{Config, Isa, Model};
use serde_json::json;

use crate::model::{self, LoadSettings};

/// Everything `levit info` reports.
#[derive(Clone, Debug)]
pub struct Info {
    /// The model config stored in the file.
    pub config: Config,
    /// Parameters of the inference graph: BatchNorm folded into the convolutions and
    /// linears, the distillation head folded into the classifier (unpadded).
    pub parameters: u64,
    /// Floats stored in the file (with the kernels' panel padding).
    pub stored_floats: usize,
    /// Multiply-accumulates per image.
    pub macs: u64,
    /// File size in bytes.
    pub file_bytes: usize,
    /// Weight format version.
    pub format_version: u32,
    /// Tensors in the file.
    pub tensors: usize,
    /// How the GEMM weights are stored: `f32`, `bf16`, `int8`, or `mixed`.
    pub precision: String,
    /// Layers the (int8) model keeps in float, comma separated; empty if none.
    pub keep_float: String,
    /// Tensors per stored dtype (`F32`, `BF16`, `I8`, `I32`), GEMM weights' dtype first.
    pub dtype_counts: Vec<(&'static str, usize)>,
    /// Every tensor: name, dtype, shape, in file order.
    pub tensor_list: Vec<TensorInfo>,
    /// `Ok(())` if every tensor matched its CRC-32, else the first mismatch.
    pub checksums: Result<(), String>,
    /// The converter's `source` note.
    pub source: Option<String>,
    /// The SIMD path inference will use.
    pub isa: Isa,
    /// Every path this CPU supports.
    pub supported: Vec<Isa>,
}

/// One tensor of the file, as `levit info --json` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// Stored dtype (`F32`, `BF16`, `I8`).
    pub dtype: &'static str,
    /// Stored shape.
    pub shape: Vec<usize>,
}

/// The precision of a file from its tensors' names and dtypes: the dtype of the GEMM
/// weights (`*.weight`) as `f32`, `bf16` or `int8` (`int8` as soon as one is I8: an
/// int8 file also stores F32 and BF16 weights; `mixed` if they differ otherwise), and the
/// number of tensors per dtype, the GEMM weights' dtype first.
pub fn precision_of<'a>(
    tensors: impl IntoIterator<Item = (&'a str, &'static str)>,
) -> (String, Vec<(&'static str, usize)>) {
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    let mut weights: Vec<&'static str> = Vec::new();
    for (name, dtype) in tensors {
        match counts.iter_mut().find(|(d, _)| *d == dtype) {
            Some((_, n)) => *n += 1,
            None => counts.push((dtype, 1)),
        }
        if name.ends_with(".weight") && !weights.contains(&dtype) {
            weights.push(dtype);
        }
    }
    // An int8 file keeps its small stem convs in F32 and its kept layers in BF16.
    let int8 = weights.contains(&"I8");
    let precision = match weights[..] {
        _ if int8 => "int8",
        [] | ["F32"] => "f32",
        ["BF16"] => "bf16",
        _ => "mixed",
    };
    if int8 {
        counts.sort_by_key(|&(d, _)| d != "I8");
    } else if let [w] = weights[..] {
        counts.sort_by_key(|&(d, _)| d != w);
    }
    (precision.to_string(), counts)
}

/// Loads `path` and gathers its [`Info`] (verifying every checksum).
pub fn gather(path: &Path, settings: &LoadSettings) -> Result<Info> {
    let settings = LoadSettings {
        verify_checksums: false,
        ..settings.clone()
    };
    let model: Model = model::load(path, &settings)?;
    let file = model.file();
    let config = model.config().clone();
    let (precision, dtype_counts) = precision_of(file.tensors().map(|t| (t.name, t.dtype.name())));
    let tensor_list = file
        .tensors()
        .map(|t| TensorInfo {
            name: t.name.to_string(),
            dtype: t.dtype.name(),
            shape: t.shape.to_vec(),
        })
        .collect();
    Ok(Info {
        parameters: folded_parameters(&config),
        stored_floats: model.stored_floats(),
        macs: model.macs(),
        file_bytes: file.file_len(),
        format_version: file.format_version(),
        tensors: file.tensor_count(),
        precision,
        keep_float: model.keep_float().to_string(),
        dtype_counts,
        tensor_list,
        checksums: model.verify_checksums().map_err(|e| e.to_string()),
        source: file.source().map(str::to_string),
        isa: model.isa(),
        supported: Isa::ALL.into_iter().filter(|i| i.is_supported()).collect(),
        config,
    })
}

/// Parameters of the folded inference graph (see [`Info::parameters`]).
pub fn folded_parameters(config: &Config) -> u64 {
    let Ok(dims) = config.dims() else { return 0 };
    let lin = |k: usize, n: usize| (k * n + n) as u64;
    let mut p = 0;
    for &(cin, cout, _) in &dims.stem {
        p += lin(9 * cin, cout);
    }
    for stage in &dims.stages {
        if let Some((a, hidden)) = &stage.downsample {
            p += lin(a.dim_in, a.heads * (a.key_dim + a.val_dim))
                + lin(a.dim_in, a.heads * a.key_dim)
                + lin(a.heads * a.val_dim, a.dim_out)
                + (a.heads * a.nk()) as u64
                + lin(stage.dim, *hidden)
                + lin(*hidden, stage.dim);
        }
        let a = &stage.attn;
        p += stage.depth as u64
            * (lin(a.dim_in, a.heads * (2 * a.key_dim + a.val_dim))
                + lin(a.heads * a.val_dim, a.dim_out)
                + (a.heads * a.nk()) as u64
                + lin(stage.dim, stage.mlp_hidden)
                + lin(stage.mlp_hidden, stage.dim));
    }
    let last = dims.stages.last().map_or(0, |s| s.dim);
    p + lin(last, dims.num_classes)
}

fn millions(n: u64) -> String {
    format!("{:.2} M", n as f64 / 1e6)
}

fn bytes(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB ({n} bytes)", n as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB ({n} bytes)", n as f64 / 1024.0)
    }
}

impl Info {
    /// The human-readable report.
    pub fn to_text(&self, path: &Path) -> String {
        let c = &self.config;
        let act = serde_json::to_value(c.act)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let checksums = match &self.checksums {
            Ok(()) => format!("ok (all {} tensors match their CRC-32)", self.tensors),
            Err(e) => format!("FAILED: {e}"),
        };
        let supported: Vec<&str> = self.supported.iter().map(|i| i.name()).collect();
        let mut lines = vec![
            format!("file          {}", path.display()),
            format!("size          {}", bytes(self.file_bytes)),
            format!(
                "format        levit-rs weight file, version {}",
                self.format_version
            ),
            format!("precision     {}", self.precision_text()),
            format!(
                "variant       {}",
                if c.variant.is_empty() {
                    "(unnamed)"
                } else {
                    &c.variant
                }
            ),
            format!(
                "input         {} x {} x {} (normalized RGB, CHW)",
                c.in_chans, c.img_size, c.img_size
            ),
            format!(
                "classes       {}{}",
                c.num_classes,
                if c.num_classes == levit::imagenet::NUM_CLASSES {
                    " (ImageNet-1k names built in)"
                } else {
                    ""
                }
            ),
            format!(
                "config        embed_dim {:?}, key_dim {}, num_heads {:?}, depth {:?}",
                c.embed_dim, c.key_dim, c.num_heads, c.depth
            ),
            format!(
                "              attn_ratio {:?}, mlp_ratio {:?}, down_attn_ratio {}, down_mlp_ratio {}",
                c.attn_ratio, c.mlp_ratio, c.down_attn_ratio, c.down_mlp_ratio
            ),
            format!(
                "              activation {act}, {}",
                if c.distilled {
                    "distilled (the two heads are averaged into one)"
                } else {
                    "single head"
                }
            ),
            format!(
                "parameters    {} (BatchNorm and distillation head folded; {} floats stored with padding)",
                millions(self.parameters),
                self.stored_floats
            ),
            format!(
                "MACs          {} per image ({:.3} GMAC)",
                millions(self.macs),
                self.macs as f64 / 1e9
            ),
            format!("tensors       {}", self.tensors),
            format!("checksums     {checksums}"),
        ];
        if let Some(source) = &self.source {
            lines.push(format!("source        {source}"));
        }
        lines.push(format!(
            "SIMD path     {} (this CPU supports: {}; force one with --isa or LEVIT_ISA)",
            self.isa.name(),
            supported.join(", ")
        ));
        // Each line escaped on its own: a newline inside a file's string (its source,
        // its variant, a tensor name in an error) must not start a forged line.
        lines
            .iter()
            .map(|line| crate::output::printable(line, false) + "\n")
            .collect()
    }

    /// `bf16 (31 tensors BF16, 37 F32)`: the precision and the tensors per dtype.
    pub fn precision_text(&self) -> String {
        let counts: Vec<String> = self
            .dtype_counts
            .iter()
            .enumerate()
            .map(|(i, (d, n))| {
                if i == 0 {
                    format!("{n} tensors {d}")
                } else {
                    format!("{n} {d}")
                }
            })
            .collect();
        let kept = if self.keep_float.is_empty() {
            String::new()
        } else {
            format!("; kept in float: {}", self.keep_float)
        };
        format!("{} ({}{kept})", self.precision, counts.join(", "))
    }

    /// The report as JSON.
    pub fn to_json(&self, path: &Path) -> serde_json::Value {
        json!({
            "file": path.display().to_string(),
            "file_bytes": self.file_bytes,
            "format_version": self.format_version,
            "config": self.config,
            "parameters": self.parameters,
            "stored_floats": self.stored_floats,
            "macs": self.macs,
            "tensors": self.tensors,
            "precision": self.precision,
            "keep_float": self.keep_float,
            "dtypes": self
                .dtype_counts
                .iter()
                .map(|&(d, n)| (d.to_string(), json!(n)))
                .collect::<serde_json::Map<_, _>>(),
            "tensor_list": self
                .tensor_list
                .iter()
                .map(|t| json!({"name": t.name, "dtype": t.dtype, "shape": t.shape}))
                .collect::<Vec<_>>(),
            "checksums_ok": self.checksums.is_ok(),
            "checksum_error": self.checksums.as_ref().err(),
            "source": self.source,
            "isa": self.isa.name(),
            "supported_isas": self.supported.iter().map(|i| i.name()).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_parameters_of_levit_128s() {
        let c = levit::synth::variant_config("128s").unwrap();
        // timm's levit_128s has 7,777,058 parameters; counting its convolution and
        // linear weights, one bias per BatchNorm channel, the attention biases and one
        // head (weight + bias) in PyTorch gives 7,371,466.
        assert_eq!(folded_parameters(&c), 7_371_466);
    }

    #[test]
    fn precision_from_dtypes() {
        let f32 = [("a.weight", "F32"), ("a.bias", "F32"), ("b.weight", "F32")];
        assert_eq!(precision_of(f32), ("f32".to_string(), vec![("F32", 3)]));
        let bf16 = [
            ("stem.0.weight", "BF16"),
            ("stem.0.bias", "F32"),
            ("x.attention_biases", "F32"),
            ("head.weight", "BF16"),
        ];
        let (p, counts) = precision_of(bf16);
        assert_eq!(
            (p.as_str(), &counts[..]),
            ("bf16", &[("BF16", 2), ("F32", 2)][..])
        );
        let i8 = [("a.bias", "F32"), ("a.weight", "I8"), ("a.scale", "F32")];
        assert_eq!(precision_of(i8).0, "int8");
        assert_eq!(precision_of(i8).1, [("I8", 1), ("F32", 2)]);
        // An int8 file: F32 RGB conv, BF16 kept head, I8 with F32 scales and I32
        // compensations elsewhere.
        let int8_file = [
            ("stem.0.weight", "F32"),
            ("a.weight", "I8"),
            ("a.weight_scale", "F32"),
            ("a.weight_comp", "I32"),
            ("head.weight", "BF16"),
        ];
        assert_eq!(precision_of(int8_file).0, "int8");
        assert_eq!(precision_of(int8_file).1[0], ("I8", 1));
        let mixed = [("a.weight", "BF16"), ("b.weight", "F32")];
        assert_eq!(precision_of(mixed).0, "mixed");
    }
}
