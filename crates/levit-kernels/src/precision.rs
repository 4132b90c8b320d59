//! The number format a model's weights (and the dot products that read them) use.
//! The second axis of kernel choice, beside [`Isa`](crate::Isa): a GEMM kernel is
//! chosen by (precision, ISA) once, when a model loads (see [`crate::gemm::GemmKernel`]).

use std::fmt;

/// Precision of packed weights and of the products that consume them. Activations in
/// memory, biases and everything outside the GEMM dot products stay f32 (int8 kernels
/// quantize their rows of A on the fly and accumulate in exact i32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// IEEE single precision: bit-exact to the f32 reference path.
    #[default]
    F32,
    /// bfloat16 weights (8-bit mantissa), f32 accumulation. Kernels with a bf16 dot
    /// instruction (AMX, AVX512_BF16) also round the activations to bf16; the others
    /// widen the weights to f32 and keep f32 activations.
    Bf16,
    /// int8 weights (symmetric, per output column) times int8 activations quantized
    /// per row at run time, exact i32 accumulation ([`crate::int8`] has the scheme).
    /// Every int8 kernel gives the same bits as the scalar int8 reference.
    Int8,
}

impl Precision {
    /// Every precision, in the order tests loop over them.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::Int8];

    /// Lower-case name, as command-line flags spell it.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }

    /// Parses `f32`, `bf16` or `int8` (case-insensitive).
    pub fn parse(name: &str) -> Result<Precision, String> {
        match name.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "int8" | "i8" => Ok(Precision::Int8),
            _ => Err(format!(
                "unknown precision {name:?} (expected f32, bf16 or int8)"
            )),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Precision::parse(s)
    }
}
