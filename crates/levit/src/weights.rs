//! The plan's weights bound to storage: views of the weight file, or, when a model is
//! asked for bf16 from an f32 file, bf16 panels repacked once at load into owned,
//! 64-byte aligned memory.

use levit_format::{Dtype, TensorView, WeightFile};
use levit_graph::{Plan, TensorSpec, WeightId};
use levit_kernels::gemm::PackedB;
use levit_kernels::{bf16, Precision};

use crate::{Error, Result};

/// The element type a tensor of `precision` is stored as.
pub(crate) fn dtype_of(precision: Precision) -> Dtype {
    match precision {
        Precision::F32 => Dtype::F32,
        Precision::Bf16 => Dtype::Bf16,
    }
}

/// The precision a stored element type holds, if the engine runs it.
pub(crate) fn precision_of(dtype: Dtype) -> Option<Precision> {
    match dtype {
        Dtype::F32 => Some(Precision::F32),
        Dtype::Bf16 => Some(Precision::Bf16),
        Dtype::I8 => None,
    }
}

/// One cache line of bf16 values: the unit of the owned repacked storage, so every
/// repacked panel starts 64-byte aligned like the file's.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u16; 32]);

/// Where each plan weight's values live.
pub(crate) struct BoundWeights {
    /// File tensor index of each plan weight (`WeightId` order).
    slots: Vec<usize>,
    /// For weights repacked at load: their range in `owned`, in lines.
    repacked: Vec<Option<std::ops::Range<usize>>>,
    owned: Vec<Line>,
}

impl BoundWeights {
    /// Binds `plan`'s weights to `file`, whose GEMM weights are stored in `stored`
    /// precision (the shapes and dtypes were checked against `stored_specs`, in plan
    /// weight order). Weights the plan wants in another precision are repacked.
    pub(crate) fn bind(
        file: &WeightFile,
        plan: &Plan,
        slots: Vec<usize>,
        stored_specs: &[TensorSpec],
    ) -> Result<BoundWeights> {
        let mut repacked = vec![None; plan.weights.len()];
        let mut owned = Vec::new();
        for (i, (want, have)) in plan.weights.iter().zip(stored_specs).enumerate() {
            if want.precision == have.precision {
                continue;
            }
            let view = file.tensor_at(slots[i]);
            match (have.precision, want.precision) {
                (Precision::F32, Precision::Bf16) => {
                    // Stored [panels, K, 16] -> bf16 [panels, KP/2, 16, 2].
                    let (np, k) = (have.shape[0], have.shape[1]);
                    let n = np * levit_kernels::NR;
                    let len = bf16::packed_len(k, n);
                    debug_assert_eq!(len, want.len());
                    let lines = len.div_ceil(32);
                    let start = owned.len();
                    owned.resize(start + lines, Line([0; 32]));
                    let dst = lines_as_u16_mut(&mut owned[start..]);
                    bf16::repack_f32_panels(f32_of(&view), k, n, &mut dst[..len]);
                    repacked[i] = Some(start..start + lines);
                }
                (stored, requested) => {
                    return Err(Error::Precision {
                        stored,
                        requested,
                        why: format!(
                            "`{}` cannot be widened back without the original weights; \
                             convert the checkpoint again with --precision {requested}",
                            want.name
                        ),
                    })
                }
            }
        }
        Ok(BoundWeights {
            slots,
            repacked,
            owned,
        })
    }

    /// A GEMM or conv weight, in its plan precision.
    pub(crate) fn packed<'a>(&'a self, file: &'a WeightFile, id: WeightId) -> PackedB<'a> {
        if let Some(lines) = &self.repacked[id.0] {
            return PackedB::Bf16(lines_as_u16(&self.owned[lines.clone()]));
        }
        let view = file.tensor_at(self.slots[id.0]);
        match view.dtype {
            Dtype::Bf16 => PackedB::Bf16(view.bf16().expect("checked at load")),
            _ => PackedB::F32(f32_of(&view)),
        }
    }

    /// An f32 tensor (bias, attention-bias table).
    pub(crate) fn f32<'a>(&self, file: &'a WeightFile, id: WeightId) -> &'a [f32] {
        f32_of(&file.tensor_at(self.slots[id.0]))
    }

    /// Bytes of weights repacked at load.
    pub(crate) fn owned_bytes(&self) -> usize {
        self.owned.len() * 64
    }
}

fn f32_of<'a>(view: &TensorView<'a>) -> &'a [f32] {
    view.f32().expect("dtype checked at load")
}

fn lines_as_u16(lines: &[Line]) -> &[u16] {
    // SAFETY: `Line` is `repr(C)` around `[u16; 32]` with no padding (64 bytes, align
    // 64), so `lines.len()` lines are `32 * lines.len()` initialised u16, and the
    // borrow keeps them alive and unaliased-mutably for the result's lifetime.
    unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<u16>(), lines.len() * 32) }
}

fn lines_as_u16_mut(lines: &mut [Line]) -> &mut [u16] {
    // SAFETY: as in `lines_as_u16`, with the exclusive borrow passed on.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<u16>(), lines.len() * 32) }
}
