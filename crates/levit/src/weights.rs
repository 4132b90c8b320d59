//! The plan's weights bound to storage: views of the weight file (an int8 file's
//! weights with their per-column scales and compensations, all mapped in place), or,
//! when a model is asked for bf16 or int8 from an f32 file, bf16 panels or int8 panels
//! (with their scales and compensations) converted once at load into owned, 64-byte
//! aligned memory.

use levit_format::{Dtype, TensorView, WeightFile};
use levit_graph::{Plan, TensorSpec, WeightId};
use levit_kernels::gemm::PackedB;
use levit_kernels::{bf16, int8, Precision};

use crate::{Error, Result};

/// The element type a tensor of `precision` is stored as.
pub(crate) fn dtype_of(precision: Precision) -> Dtype {
    match precision {
        Precision::F32 => Dtype::F32,
        Precision::Bf16 => Dtype::Bf16,
        Precision::Int8 => Dtype::I8,
    }
}

/// The precision a stored element type holds, if the engine runs it.
pub(crate) fn precision_of(dtype: Dtype) -> Option<Precision> {
    match dtype {
        Dtype::F32 => Some(Precision::F32),
        Dtype::Bf16 => Some(Precision::Bf16),
        Dtype::I8 => Some(Precision::Int8),
        Dtype::I32 => None,
    }
}

/// One cache line of bf16 values: the unit of the owned repacked storage, so every
/// repacked panel starts 64-byte aligned like the file's.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u16; 32]);

/// A weight converted at load: its range of lines in [`BoundWeights::owned`] and the
/// element type they hold.
#[derive(Clone, Debug)]
enum Owned {
    Bf16(std::ops::Range<usize>),
    F32(std::ops::Range<usize>),
    /// Lines of the int8 data, then of the f32 scales, then of the i32 compensations.
    Int8 {
        data: std::ops::Range<usize>,
        scale: std::ops::Range<usize>,
        comp: std::ops::Range<usize>,
    },
}

/// Where each plan weight's values live.
pub(crate) struct BoundWeights {
    /// File tensor index of each plan weight (`WeightId` order).
    slots: Vec<usize>,
    /// For the int8 weights of an int8 file: the file tensor indices of their scales
    /// and compensations.
    int8_slots: Vec<Option<(usize, usize)>>,
    /// For weights converted at load: where they are in `owned`.
    repacked: Vec<Option<Owned>>,
    owned: Vec<Line>,
}

impl BoundWeights {
    /// Binds `plan`'s weights to `file`, whose tensors were checked against
    /// `stored_specs` (shapes and dtypes, in plan weight order; `int8_slots` holds the
    /// scales and compensations of its int8 weights). Weights the plan wants in
    /// another precision are repacked.
    pub(crate) fn bind(
        file: &WeightFile,
        plan: &Plan,
        slots: Vec<usize>,
        int8_slots: Vec<Option<(usize, usize)>>,
        stored_specs: &[TensorSpec],
    ) -> Result<BoundWeights> {
        let mut repacked = vec![None; plan.weights.len()];
        let mut owned = Vec::new();
        for (i, (want, have)) in plan.weights.iter().zip(stored_specs).enumerate() {
            let view = file.tensor_at(slots[i]);
            // A bf16 model (and a layer an int8 model keeps in float) holds bf16
            // weights everywhere, also in the small convs that run in f32: from an f32
            // file those are rounded (and widened back) here, so that an f32 file run
            // in bf16 and the same weights converted to a bf16 file give the same bits.
            let packed_weight = want.shape.len() == 3;
            if want.precision == have.precision
                && !(packed_weight
                    && have.precision == Precision::F32
                    && plan.holds_bf16(&want.name))
            {
                continue;
            }
            if want.precision == have.precision {
                let values = f32_of(&view);
                let lines = values.len().div_ceil(16);
                let start = owned.len();
                grow(&mut owned, start + lines)?;
                let dst = &mut lines_as_f32_mut(&mut owned[start..])[..values.len()];
                for (d, &x) in dst.iter_mut().zip(values) {
                    *d = bf16::from_bf16(bf16::to_bf16(x));
                }
                repacked[i] = Some(Owned::F32(start..start + lines));
                continue;
            }
            match (have.precision, want.precision) {
                (Precision::F32, Precision::Bf16) => {
                    // Stored [panels, K, 16] -> bf16 [panels, KP/2, 16, 2].
                    let (np, k) = (have.shape[0], have.shape[1]);
                    let n = np * levit_kernels::NR;
                    let len = bf16::packed_len(k, n);
                    debug_assert_eq!(len, want.len());
                    let lines = len.div_ceil(32);
                    let start = owned.len();
                    grow(&mut owned, start + lines)?;
                    let dst = lines_as_u16_mut(&mut owned[start..]);
                    bf16::repack_f32_panels(f32_of(&view), k, n, &mut dst[..len]);
                    repacked[i] = Some(Owned::Bf16(start..start + lines));
                }
                (Precision::F32, Precision::Int8) => {
                    // Stored [panels, K, 16] -> int8 [panels, KQ/4, 16, 4] plus
                    // per-column scales and compensations (`levit_kernels::int8`).
                    let (np, k) = (have.shape[0], have.shape[1]);
                    let n = np * levit_kernels::NR;
                    let len = int8::packed_len(k, n);
                    debug_assert_eq!(len, want.len());
                    let (data_lines, col_lines) = (len.div_ceil(64), np);
                    let start = owned.len();
                    grow(&mut owned, start + data_lines + 2 * col_lines)?;
                    let (data, cols) = owned[start..].split_at_mut(data_lines);
                    let (scale, comp) = cols.split_at_mut(col_lines);
                    int8::quantize_f32_panels(
                        f32_of(&view),
                        k,
                        n,
                        lines_as_i8_mut(data),
                        lines_as_f32_mut(scale),
                        lines_as_i32_mut(comp),
                    );
                    let scale_start = start + data_lines;
                    let comp_start = scale_start + col_lines;
                    repacked[i] = Some(Owned::Int8 {
                        data: start..scale_start,
                        scale: scale_start..comp_start,
                        comp: comp_start..comp_start + col_lines,
                    });
                }
                (Precision::Bf16, Precision::F32) => {
                    // Widened exactly: the step runs the file's rounded weights in f32
                    // (only small stem convs do, see `levit_graph` `conv_precision`).
                    let (np, kp2) = (have.shape[0], have.shape[1]);
                    let k = want.shape[1];
                    debug_assert_eq!(kp2, bf16::padded_k(k) / 2);
                    let n = np * levit_kernels::NR;
                    let len = levit_kernels::packed_len(k, n);
                    let lines = len.div_ceil(16);
                    let start = owned.len();
                    grow(&mut owned, start + lines)?;
                    let dst = lines_as_f32_mut(&mut owned[start..]);
                    let src = PackedB::Bf16(view.bf16().expect("dtype checked at load"));
                    for p in 0..np {
                        for kk in 0..k {
                            for j in 0..levit_kernels::NR {
                                let col = p * levit_kernels::NR + j;
                                dst[(p * k + kk) * levit_kernels::NR + j] = src.at(k, kk, col);
                            }
                        }
                    }
                    repacked[i] = Some(Owned::F32(start..start + lines));
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
            int8_slots,
            repacked,
            owned,
        })
    }

    /// A GEMM or conv weight, in its plan precision.
    pub(crate) fn packed<'a>(&'a self, file: &'a WeightFile, id: WeightId) -> PackedB<'a> {
        match &self.repacked[id.0] {
            Some(Owned::Bf16(lines)) => {
                return PackedB::Bf16(lines_as_u16(&self.owned[lines.clone()]))
            }
            Some(Owned::F32(lines)) => {
                return PackedB::F32(lines_as_f32(&self.owned[lines.clone()]))
            }
            Some(Owned::Int8 { data, scale, comp }) => {
                return PackedB::Int8(int8::WeightsRef {
                    data: lines_as_i8(&self.owned[data.clone()]),
                    scale: lines_as_f32(&self.owned[scale.clone()]),
                    comp: lines_as_i32(&self.owned[comp.clone()]),
                })
            }
            None => {}
        }
        let view = file.tensor_at(self.slots[id.0]);
        match (view.dtype, self.int8_slots[id.0]) {
            (Dtype::Bf16, _) => PackedB::Bf16(view.bf16().expect("checked at load")),
            (Dtype::I8, Some((scale, comp))) => PackedB::Int8(int8::WeightsRef {
                data: view.i8().expect("checked at load"),
                scale: f32_of(&file.tensor_at(scale)),
                comp: file.tensor_at(comp).i32().expect("checked at load"),
            }),
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

fn lines_as_f32(lines: &[Line]) -> &[f32] {
    // SAFETY: a `Line` is 64 initialised bytes at 64-byte alignment, so `lines.len()`
    // lines are `16 * lines.len()` f32 (every bit pattern is a valid f32), borrowed for
    // the result's lifetime.
    unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<f32>(), lines.len() * 16) }
}

fn lines_as_i8(lines: &[Line]) -> &[i8] {
    // SAFETY: a `Line` is 64 initialised bytes, so `lines.len()` lines are `64 *
    // lines.len()` i8 (every bit pattern is valid, alignment 1), borrowed for the
    // result's lifetime.
    unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<i8>(), lines.len() * 64) }
}

fn lines_as_i32(lines: &[Line]) -> &[i32] {
    // SAFETY: a `Line` is 64 initialised bytes at 64-byte alignment, so `lines.len()`
    // lines are `16 * lines.len()` i32 (every bit pattern is valid), borrowed for the
    // result's lifetime.
    unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<i32>(), lines.len() * 16) }
}

fn lines_as_i8_mut(lines: &mut [Line]) -> &mut [i8] {
    // SAFETY: as in `lines_as_i8`, with the exclusive borrow passed on.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<i8>(), lines.len() * 64) }
}

fn lines_as_i32_mut(lines: &mut [Line]) -> &mut [i32] {
    // SAFETY: as in `lines_as_i32`, with the exclusive borrow passed on.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<i32>(), lines.len() * 16) }
}

fn lines_as_f32_mut(lines: &mut [Line]) -> &mut [f32] {
    // SAFETY: as in `lines_as_f32`, with the exclusive borrow passed on.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<f32>(), lines.len() * 16) }
}

fn lines_as_u16_mut(lines: &mut [Line]) -> &mut [u16] {
    // SAFETY: as in `lines_as_u16`, with the exclusive borrow passed on.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<u16>(), lines.len() * 32) }
}

/// Grows the owned weight lines to `len`, reserving fallibly: the repacked weights are
/// as large as the file's, which a hostile config can make large.
fn grow(owned: &mut Vec<Line>, len: usize) -> Result<()> {
    owned
        .try_reserve(len.saturating_sub(owned.len()))
        .map_err(|_| crate::Error::OutOfMemory {
            what: "the repacked weights",
            mib: (len as u64 * 64) >> 20,
        })?;
    owned.resize(len, Line([0; 32]));
    Ok(())
}
