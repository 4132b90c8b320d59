//! The tensors a config needs in the weight file, with their packed shapes
//! (`docs/weight-format.md`, "Tensors").

use levit_kernels::{bf16, panels, Precision, NR};

use crate::Dims;

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

/// Pushes `{prefix}.weight` (packed `[K, N]` in `precision`) and `{prefix}.bias`.
fn push_linear(
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
    let mut specs = Vec::new();
    let push_linear = |specs: &mut Vec<TensorSpec>, prefix: &str, k, n| {
        push_linear(specs, precision, prefix, k, n)
    };
    for (i, &(cin, cout, _)) in dims.stem.iter().enumerate() {
        push_linear(&mut specs, &format!("stem.{i}"), 9 * cin, cout);
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
