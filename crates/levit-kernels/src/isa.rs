//! Instruction-set selection, decided once when a model loads.

use std::fmt;

/// A SIMD code path. Ordered from most to least capable: each level includes the ones
/// below it (AMX CPUs have AVX512_BF16, which implies AVX-512F). The two levels above
/// `Avx512` change only the bf16 GEMM kernels; every other kernel runs its
/// [`Isa::vector`] family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// AVX-512 plus Intel AMX tiles (AMX-BF16): bf16 GEMMs on the tile unit.
    Amx,
    /// AVX-512 plus AVX512_BF16: bf16 GEMMs through `vdpbf16ps`.
    Avx512Bf16,
    /// x86-64 AVX-512F (+VL/DQ/BW).
    Avx512,
    /// x86-64 AVX2 + FMA.
    Avx2,
    /// Plain Rust / `wide`: every target, including aarch64.
    Portable,
}

/// Environment variable that forces a lower path: `amx`, `avx512bf16`, `avx512`,
/// `avx2` or `portable`.
pub const ISA_ENV: &str = "LEVIT_ISA";

impl Isa {
    /// Every path, best first.
    pub const ALL: [Isa; 5] = [
        Isa::Amx,
        Isa::Avx512Bf16,
        Isa::Avx512,
        Isa::Avx2,
        Isa::Portable,
    ];

    /// The vector family the non-GEMM kernels (attention, convolution taps, vector
    /// math) and the f32 GEMMs run on this level: `Avx512`, `Avx2` or `Portable`.
    pub fn vector(self) -> Isa {
        match self {
            Isa::Amx | Isa::Avx512Bf16 | Isa::Avx512 => Isa::Avx512,
            Isa::Avx2 => Isa::Avx2,
            Isa::Portable => Isa::Portable,
        }
    }

    /// Whether this level includes `other` (`Amx` includes everything, `Portable`
    /// only itself).
    pub fn includes(self, other: Isa) -> bool {
        self <= other
    }

    /// Whether this CPU can run the path.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Bf16 => {
                Isa::Avx512.is_supported() && std::arch::is_x86_feature_detected!("avx512bf16")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Amx => Isa::Avx512Bf16.is_supported() && crate::amx_os::amx_bf16_usable(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The paths tests and benchmarks loop over: every path this CPU supports, best
    /// first; or, when `LEVIT_ISA` is set, only the path it names (so that
    /// `LEVIT_ISA=avx2 cargo test` tests that path alone, as `.ci/valgrind.sh` does).
    ///
    /// # Panics
    /// If `LEVIT_ISA` names an unknown path or one this CPU lacks: a forced run must
    /// not silently test another path, or none.
    pub fn supported() -> Vec<Isa> {
        match std::env::var(ISA_ENV) {
            Ok(name) if !name.trim().is_empty() => {
                vec![Isa::from_env().unwrap_or_else(|e| panic!("{ISA_ENV}={name}: {e}"))]
            }
            _ => Isa::ALL.into_iter().filter(|i| i.is_supported()).collect(),
        }
    }

    /// The best supported path, by what the CPU does rather than what it lists: on
    /// Intel cores `vdpbf16ps` runs at half the f32 FMA rate (measured on a Sapphire
    /// Rapids-class Xeon: 21 against 45 G multiply-adds/s per core), so there the
    /// `Avx512Bf16` level is skipped and bf16 weights are widened to f32 on `Avx512`
    /// instead (unless AMX is there); on AMD Zen 4 it runs at twice the FMA rate.
    pub fn best() -> Isa {
        Isa::ALL
            .into_iter()
            .filter(|&i| i != Isa::Avx512Bf16 || bf16_dot_is_fast())
            .find(|i| i.is_supported())
            .unwrap_or(Isa::Portable)
    }

    /// The best path, lowered to the one named by `LEVIT_ISA` if set. An unknown name
    /// or an unsupported path is an error (silently running another path would make a
    /// test that forces a path meaningless).
    pub fn from_env() -> Result<Isa, IsaError> {
        match std::env::var(ISA_ENV) {
            Ok(name) if !name.trim().is_empty() => Isa::parse(&name)?.require_supported(),
            _ => Ok(Isa::best()),
        }
    }

    /// Parses a [`Isa::name`] (case-insensitive).
    pub fn parse(name: &str) -> Result<Isa, IsaError> {
        match name.trim().to_ascii_lowercase().as_str() {
            "amx" => Ok(Isa::Amx),
            "avx512bf16" | "avx512_bf16" => Ok(Isa::Avx512Bf16),
            "avx512" | "avx-512" => Ok(Isa::Avx512),
            "avx2" => Ok(Isa::Avx2),
            "portable" => Ok(Isa::Portable),
            _ => Err(IsaError::Unknown(name.to_string())),
        }
    }

    /// `Ok(self)` if this CPU supports it.
    pub fn require_supported(self) -> Result<Isa, IsaError> {
        if self.is_supported() {
            Ok(self)
        } else {
            Err(IsaError::Unsupported(self))
        }
    }

    /// Lower-case name, as `LEVIT_ISA` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Amx => "amx",
            Isa::Avx512Bf16 => "avx512bf16",
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an ISA request cannot be honoured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IsaError {
    /// The name is not one of `avx512`, `avx2`, `portable`.
    Unknown(String),
    /// The CPU lacks the instructions.
    Unsupported(Isa),
}

impl fmt::Display for IsaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IsaError::Unknown(n) => write!(
                f,
                "unknown SIMD path {n:?} (expected amx, avx512bf16, avx512, avx2 or portable)"
            ),
            IsaError::Unsupported(i) => write!(f, "this CPU does not support the {i} path"),
        }
    }
}

impl std::error::Error for IsaError {}

/// Whether this CPU's `vdpbf16ps` is faster than f32 FMAs on widened weights: AMD's
/// (Zen 4 and later) runs it at twice the f32 rate, Intel's at half (see [`Isa::best`]).
fn bf16_dot_is_fast() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let r = core::arch::x86_64::__cpuid(0);
        let vendor = [
            r.ebx.to_le_bytes(),
            r.edx.to_le_bytes(),
            r.ecx.to_le_bytes(),
        ]
        .concat();
        vendor != b"GenuineIntel"
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
