//! The tensors a config needs in the weight file, with their packed shapes
//! (`docs/weight-format.md`, "Tensors").

use levit_kernels::{bf16, panels, Precision, NR};

use crate::{Dims, KeepFloat, F32_CONV_MAX_CIN};

/// A tensor the plan reads: its name, stored shape and precision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// Name in the file.
    pub name: String,
    /// Stored (packed, padded) shape.
    pub shape: Vec<usize>,
    /// Element type: GEMM and conv weights are stored in the model's precision;
    /// biases and attention-bias tables are f32 in every precision.
    pub precision: Precision,
}

impl TensorSpec {
    /// Elements in the tensor.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether it holds no floats.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Rounds up to a multiple of the panel width.
pub(crate) fn pad16(n: usize) -> usize {
    panels(n) * NR
}

/// The stored shape of a packed `[K, N]` GEMM weight in `precision`
/// (`docs/weight-format.md`).
pub fn packed_weight_shape(precision: Precision, k: usize, n: usize) -> Vec<usize> {
    match precision {
        Precision::F32 => vec![panels(n), k, NR],
        Precision::Bf16 => bf16::packed_shape(k, n).to_vec(),
        Precision::Int8 => levit_kernels::int8::packed_shape(k, n).to_vec(),
    }
}

/// The names of the per-column scale (F32) and compensation (I32) tensors stored
/// beside the int8 weight `weight` (`{layer}.weight`) in an int8 file:
/// `{layer}.weight_scale` and `{layer}.weight_comp`, each `[ceil(N/16)*16]`
/// (`docs/weight-format.md`).
pub fn int8_companion_names(weight: &str) -> [String; 2] {
    [format!("{weight}_scale"), format!("{weight}_comp")]
}

/// Pushes `{prefix}.weight` (packed `[K, N]` in `precision`) and `{prefix}.bias`.
fn push_weight_and_bias(
    specs: &mut Vec<TensorSpec>,
    precision: Precision,
    prefix: &str,
    k: usize,
    n: usize,
) {
    specs.push(TensorSpec {
        name: format!("{prefix}.weight"),
        shape: packed_weight_shape(precision, k, n),
        precision,
    });
    specs.push(TensorSpec {
        name: format!("{prefix}.bias"),
        shape: vec![pad16(n)],
        precision: Precision::F32,
    });
}

/// Every tensor of a model whose GEMM and conv weights are stored in `precision`, in
/// file order.
pub fn tensor_specs(dims: &Dims, precision: Precision) -> Vec<TensorSpec> {
    specs_by(dims, &|_, _| precision)
}

/// The tensors of an int8 file (`levit-weights convert --precision int8`) keeping
/// `keep` in float, in file order, without the scale and compensation tensors of its
/// int8 weights ([`int8_companion_names`]): a weight is int8, unless its layer is
/// kept (bf16 panels, as in a bf16 file) or it is a stem conv over at most
/// [`F32_CONV_MAX_CIN`] channels that is not kept (f32 panels, as in the f32 file:
/// those run in f32 in an int8 model).
pub fn int8_file_specs(dims: &Dims, keep: &KeepFloat) -> Vec<TensorSpec> {
    specs_by(dims, &|layer, conv_cin| {
        if keep.keeps(layer) {
            Precision::Bf16
        } else if conv_cin.is_some_and(|c| c <= F32_CONV_MAX_CIN) {
            Precision::F32
        } else {
            Precision::Int8
        }
    })
}

/// Every tensor of a model, each GEMM or conv weight stored in the precision
/// `precision(layer, conv input channels)` gives it.
fn specs_by(dims: &Dims, precision: &dyn Fn(&str, Option<usize>) -> Precision) -> Vec<TensorSpec> {
    let mut specs = Vec::new();
    let push_linear = |specs: &mut Vec<TensorSpec>, prefix: &str, k, n| {
        push_weight_and_bias(specs, precision(prefix, None), prefix, k, n)
    };
    for (i, &(cin, cout, _)) in dims.stem.iter().enumerate() {
        let prefix = format!("stem.{i}");
        let p = precision(&prefix, Some(cin));
        push_weight_and_bias(&mut specs, p, &prefix, 9 * cin, cout);
    }
    for (s, stage) in dims.stages.iter().enumerate() {
        if let Some((a, hidden)) = &stage.downsample {
            let p = format!("stages.{s}.downsample");
            push_linear(
                &mut specs,
                &format!("{p}.attn.kv"),
                a.dim_in,
                a.heads * (a.key_dim + a.val_dim),
            );
            push_linear(
                &mut specs,
                &format!("{p}.attn.q"),
                a.dim_in,
                a.heads * a.key_dim,
            );
            push_linear(
                &mut specs,
                &format!("{p}.attn.proj"),
                a.heads * a.val_dim,
                a.dim_out,
            );
            specs.push(TensorSpec {
                name: format!("{p}.attn.attention_biases"),
                shape: vec![a.heads, pad16(a.nk())],
                precision: Precision::F32,
            });
            push_linear(&mut specs, &format!("{p}.mlp.fc1"), stage.dim, *hidden);
            push_linear(&mut specs, &format!("{p}.mlp.fc2"), *hidden, stage.dim);
        }
        let a = &stage.attn;
        for j in 0..stage.depth {
            let p = format!("stages.{s}.blocks.{j}");
            push_linear(
                &mut specs,
                &format!("{p}.attn.qkv"),
                a.dim_in,
                a.heads * (2 * a.key_dim + a.val_dim),
            );
            push_linear(
                &mut specs,
                &format!("{p}.attn.proj"),
                a.heads * a.val_dim,
                a.dim_out,
            );
            specs.push(TensorSpec {
                name: format!("{p}.attn.attention_biases"),
                shape: vec![a.heads, pad16(a.nk())],
                precision: Precision::F32,
            });
            push_linear(
                &mut specs,
                &format!("{p}.mlp.fc1"),
                stage.dim,
                stage.mlp_hidden,
            );
            push_linear(
                &mut specs,
                &format!("{p}.mlp.fc2"),
                stage.mlp_hidden,
                stage.dim,
            );
        }
    }
    let last = dims.stages.last().map_or(0, |s| s.dim);
    push_linear(&mut specs, "head", last, dims.num_classes);
    specs
}
