//! Point-wise activations applied in kernel epilogues.

/// The non-linearity fused into a kernel's output store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// Identity.
    None,
    /// `x * clamp(x + 3, 0, 6) / 6`, bit-identical to PyTorch's `hardswish` on CPU.
    HardSwish,
    /// `x * sigmoid(x)` (timm's `levit_256d`, `levit_512`, ... use it).
    Silu,
}

impl Activation {
    /// Scalar definition: the truth for every vectorised path.
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::HardSwish => hardswish(x),
            Activation::Silu => silu(x),
        }
    }
}

/// PyTorch's Hardswish. Dividing by 6 (not multiplying by 1/6) keeps it bit-exact.
#[inline]
pub fn hardswish(x: f32) -> f32 {
    x * (x + 3.0).clamp(0.0, 6.0) / 6.0
}

/// `x / (1 + exp(-x))`, as PyTorch computes SiLU.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}
