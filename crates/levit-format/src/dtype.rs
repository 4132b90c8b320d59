//! The element types a weight file may store.

/// Element type of a stored tensor (the safetensors dtype strings `"F32"`, `"BF16"`,
/// `"I8"`, `"I32"`). Format version 1 stores only [`Dtype::F32`]; version 2 adds the
/// others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// IEEE-754 binary32, little-endian.
    F32,
    /// bfloat16 (the upper 16 bits of an f32), little-endian `u16` bit patterns.
    Bf16,
    /// Signed 8-bit integers: the quantized weights of int8 files.
    I8,
    /// Signed 32-bit integers, little-endian: the zero-point compensations beside the
    /// quantized weights of int8 files.
    I32,
}

impl Dtype {
    /// Every dtype, in this order (F32, BF16, I8, I32).
    pub const ALL: [Dtype; 4] = [Dtype::F32, Dtype::Bf16, Dtype::I8, Dtype::I32];

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::Bf16 => 2,
            Dtype::I8 => 1,
            Dtype::I32 => 4,
        }
    }

    /// The safetensors spelling: `"F32"`, `"BF16"`, `"I8"`, `"I32"`.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::Bf16 => "BF16",
            Dtype::I8 => "I8",
            Dtype::I32 => "I32",
        }
    }

    /// The dtype spelled `name` exactly as safetensors does (case-sensitive).
    pub fn from_name(name: &str) -> Option<Dtype> {
        Dtype::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Whether files of format version `version` may store this dtype
    /// (version 1: only F32; version 2: all).
    pub fn allowed_in(self, version: u32) -> bool {
        match version {
            1 => self == Dtype::F32,
            2 => true,
            _ => false,
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
