//! The model config stored in the weight file, and every size derived from it exactly
//! as timm's `Levit` derives them.

use levit_kernels::Activation;
use serde::{Deserialize, Serialize};

use crate::GraphError;

/// The activation timm calls `act_layer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActKind {
    /// Hardswish: the paper models.
    HardSwish,
    /// SiLU: timm's `levit_256d`, `levit_512`, ...
    Silu,
}

impl From<ActKind> for Activation {
    fn from(a: ActKind) -> Activation {
        match a {
            ActKind::HardSwish => Activation::HardSwish,
            ActKind::Silu => Activation::Silu,
        }
    }
}

/// A LeViT config as timm's `Levit` takes it (one entry per stage in the lists).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name, informational (`levit_128s`, ...).
    #[serde(default)]
    pub variant: String,
    /// Square input size: a multiple of 16 in `16..=2048` ([`check_img_size`]).
    pub img_size: usize,
    /// Input channels (3).
    pub in_chans: usize,
    /// Classes of the head.
    pub num_classes: usize,
    /// Width of each stage.
    pub embed_dim: Vec<usize>,
    /// q/k width per head, all stages and downsamples.
    pub key_dim: usize,
    /// Heads of each stage's attention blocks.
    pub num_heads: Vec<usize>,
    /// Blocks per stage.
    pub depth: Vec<usize>,
    /// v width / key_dim in each stage.
    pub attn_ratio: Vec<f64>,
    /// MLP hidden / width in each stage.
    pub mlp_ratio: Vec<f64>,
    /// v width / key_dim in the downsample attention.
    pub down_attn_ratio: f64,
    /// MLP hidden / width after a downsample.
    pub down_mlp_ratio: f64,
    /// The activation.
    pub act: ActKind,
    /// Whether the checkpoint had a distillation head (folded into `head`).
    #[serde(default)]
    pub distilled: bool,
}

/// Sizes of one attention (plain or downsampling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnDims {
    /// Heads.
    pub heads: usize,
    /// q/k width per head.
    pub key_dim: usize,
    /// v width per head.
    pub val_dim: usize,
    /// Input grid side (keys live here).
    pub r_in: usize,
    /// Query grid side: `r_in`, or `(r_in - 1) / 2 + 1` when subsampling.
    pub r_out: usize,
    /// Query stride on the key grid: 1 for a block's attention, 2 for a downsample's.
    /// Not derivable from the grids: a downsample of a 1x1 grid keeps it 1x1 (timm's
    /// `levit_*` at `img_size` 16..=47), yet it is still a q/kv attention with its own
    /// tensors.
    pub stride: usize,
    /// Input width.
    pub dim_in: usize,
    /// Output width (after the projection).
    pub dim_out: usize,
}

impl AttnDims {
    /// Key/value tokens.
    pub fn nk(&self) -> usize {
        self.r_in * self.r_in
    }
    /// Query tokens.
    pub fn nq(&self) -> usize {
        self.r_out * self.r_out
    }
    /// Whether this is a downsample's attention (stride 2: separate q and kv
    /// projections, queries taken from every other row and column of the key grid).
    pub fn is_subsample(&self) -> bool {
        self.stride != 1
    }
}

/// Sizes of one stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageDims {
    /// Width.
    pub dim: usize,
    /// Grid side.
    pub resolution: usize,
    /// The downsample attention that starts the stage (all but the first) and its MLP hidden width.
    pub downsample: Option<(AttnDims, usize)>,
    /// Attention of each block.
    pub attn: AttnDims,
    /// MLP hidden width of each block.
    pub mlp_hidden: usize,
    /// Blocks.
    pub depth: usize,
}

/// Everything derived from a config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dims {
    /// Stem convs as (cin, cout, input side).
    pub stem: [(usize, usize, usize); 4],
    /// Stages in order.
    pub stages: Vec<StageDims>,
    /// Classes.
    pub num_classes: usize,
}

// Bounds that keep a hostile or corrupted config from asking for absurd memory.
const MAX_IMG: usize = 2048;
const MAX_DIM: usize = 16384;
const MAX_DEPTH: usize = 256;
const MAX_CLASSES: usize = 1 << 20;

/// Checks `img_size` the way `levit-weights convert` does (same reasons, word for word).
///
/// timm sizes its attention biases for a `img_size // 16` grid while its stem makes a
/// `ceil(img_size / 16)` one, so a timm LeViT runs only on inputs of `16 * (img_size // 16)`
/// pixels: below 16 the grid is empty, and a checkpoint built at a size that is not a
/// multiple of 16 is the checkpoint of `16 * (img_size // 16)` (which is what the
/// converter writes). Every multiple of 16 up to the bound runs and matches timm.
pub fn check_img_size(img_size: usize) -> Result<(), GraphError> {
    let reason = if img_size < 16 {
        format!(
            "{img_size} is below 16: the token grid (img_size // 16) is empty, and timm \
             cannot run such a model either"
        )
    } else if !img_size.is_multiple_of(16) {
        format!(
            "{img_size} is not a multiple of 16: timm runs such a model only on \
             {}x{0} inputs (its attention biases cover a grid of img_size // 16), so \
             use img_size {0}",
            16 * (img_size / 16)
        )
    } else if img_size > MAX_IMG {
        format!("{img_size} is above levit's limit of {MAX_IMG}")
    } else {
        return Ok(());
    };
    Err(GraphError::unsupported("img_size", reason))
}

fn ratio_times(ratio: f64, x: usize, field: &'static str) -> Result<usize, GraphError> {
    // timm computes `int(ratio * x)` in Python floats.
    let v = ratio * x as f64;
    if !(v.is_finite() && v >= 1.0 && v <= MAX_DIM as f64) {
        return Err(GraphError::unsupported(
            field,
            format!("{ratio} x {x} is out of range"),
        ));
    }
    Ok(v as usize)
}

impl Config {
    /// Parses the JSON stored in a weight file.
    pub fn from_json(text: &str) -> Result<Config, GraphError> {
        serde_json::from_str(text).map_err(|e| GraphError::ConfigJson(e.to_string()))
    }

    /// The activation used everywhere.
    pub fn activation(&self) -> Activation {
        self.act.into()
    }

    /// Checks the config and derives every size.
    pub fn dims(&self) -> Result<Dims, GraphError> {
        let stages = self.embed_dim.len();
        if stages == 0 || stages > 8 {
            return Err(GraphError::unsupported("embed_dim", "need 1 to 8 stages"));
        }
        for (field, len) in [
            ("num_heads", self.num_heads.len()),
            ("depth", self.depth.len()),
            ("attn_ratio", self.attn_ratio.len()),
            ("mlp_ratio", self.mlp_ratio.len()),
        ] {
            if len != stages {
                return Err(GraphError::unsupported(
                    field,
                    format!("has {len} entries for {stages} stages"),
                ));
            }
        }
        check_img_size(self.img_size)?;
        if self.in_chans == 0 || self.in_chans > 64 {
            return Err(GraphError::unsupported(
                "in_chans",
                format!("{}", self.in_chans),
            ));
        }
        if self.num_classes == 0 || self.num_classes > MAX_CLASSES {
            return Err(GraphError::unsupported(
                "num_classes",
                format!("{}", self.num_classes),
            ));
        }
        if self.key_dim == 0 || self.key_dim > 1024 {
            return Err(GraphError::unsupported(
                "key_dim",
                format!("{}", self.key_dim),
            ));
        }
        for &d in &self.embed_dim {
            if d == 0 || d > MAX_DIM {
                return Err(GraphError::unsupported(
                    "embed_dim",
                    format!("{d} must be in 1..={MAX_DIM}"),
                ));
            }
        }
        // The stem's first conv has E0 // 8 channels (timm's integer division).
        if self.embed_dim[0] < 8 {
            return Err(GraphError::unsupported(
                "embed_dim",
                format!(
                    "the first stage width {} must be at least 8",
                    self.embed_dim[0]
                ),
            ));
        }
        let e0 = self.embed_dim[0];
        let mut side = self.img_size;
        let mut stem = [(0, 0, 0); 4];
        let chans = [self.in_chans, e0 / 8, e0 / 4, e0 / 2, e0];
        for (i, conv) in stem.iter_mut().enumerate() {
            *conv = (chans[i], chans[i + 1], side);
            side = levit_kernels::conv::conv_out_size(side);
        }
        let mut resolution = side;
        let mut out = Vec::with_capacity(stages);
        for s in 0..stages {
            let dim = self.embed_dim[s];
            let heads = self.num_heads[s];
            if heads == 0 || heads > 1024 {
                return Err(GraphError::unsupported("num_heads", format!("{heads}")));
            }
            if self.depth[s] > MAX_DEPTH {
                return Err(GraphError::unsupported(
                    "depth",
                    format!("{}", self.depth[s]),
                ));
            }
            let downsample = if s == 0 {
                None
            } else {
                let dim_in = self.embed_dim[s - 1];
                if !dim_in.is_multiple_of(self.key_dim) {
                    return Err(GraphError::unsupported(
                        "key_dim",
                        format!("{} does not divide embed_dim {dim_in}", self.key_dim),
                    ));
                }
                let r_out = (resolution - 1) / 2 + 1;
                let attn = AttnDims {
                    heads: dim_in / self.key_dim,
                    key_dim: self.key_dim,
                    val_dim: ratio_times(self.down_attn_ratio, self.key_dim, "down_attn_ratio")?,
                    r_in: resolution,
                    r_out,
                    stride: 2,
                    dim_in,
                    dim_out: dim,
                };
                resolution = r_out;
                Some((
                    attn,
                    ratio_times(self.down_mlp_ratio, dim, "down_mlp_ratio")?,
                ))
            };
            let attn = AttnDims {
                heads,
                key_dim: self.key_dim,
                val_dim: ratio_times(self.attn_ratio[s], self.key_dim, "attn_ratio")?,
                r_in: resolution,
                r_out: resolution,
                stride: 1,
                dim_in: dim,
                dim_out: dim,
            };
            out.push(StageDims {
                dim,
                resolution,
                downsample,
                attn,
                mlp_hidden: ratio_times(self.mlp_ratio[s], dim, "mlp_ratio")?,
                depth: self.depth[s],
            });
        }
        Ok(Dims {
            stem,
            stages: out,
            num_classes: self.num_classes,
        })
    }
}
