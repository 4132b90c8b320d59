//! A loaded model: the weight file (mapped or owned), its plan and the SIMD path.
//! Immutable and `Send + Sync`: share it between engines with an `Arc`.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use levit_format::{Dtype, LoadMode, LoadOptions, WeightFile};
use levit_graph::{BatchLayout, Config, KeepFloat, Plan, TensorSpec};
use levit_kernels::attention::AttentionKernel;
use levit_kernels::gemm::{GemmKernel, PackedB};
use levit_kernels::{Isa, Precision};

use crate::weights::{dtype_of, precision_of, BoundWeights};
use crate::{Error, Result};

/// How to load a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelOptions {
    /// Map the file (default) or read it into owned memory; see [`LoadMode`].
    pub mode: LoadMode,
    /// Verify every tensor's CRC-32 at load. Off by default: it reads every weight
    /// byte (about 10-20 ms for LeViT-384) where a plain load only maps the file and
    /// checks the header (structure, bounds, alignment, shapes, config checksum).
    /// Turn it on for files from untrusted storage, or call [`Model::verify_checksums`].
    pub verify_checksums: bool,
    /// Force a SIMD path; `None` picks the best one, lowered by `LEVIT_ISA` if set.
    pub isa: Option<Isa>,
    /// Precision to run the GEMMs and convolutions in; `None` runs the file's own.
    /// `Bf16` on an f32 file repacks the weights once at load into owned memory
    /// (LeViT-384: about 20 ms and 76 MiB); `Int8` on an f32 file quantizes them at
    /// load (per output channel; LeViT-384: about 0.2 s on a shared core and 37 MiB,
    /// a quarter of the f32 weights; activations are quantized per token at run time,
    /// so no calibration is needed); `F32` on a bf16 file is an error (the rounding
    /// cannot be undone), and so are `F32` and `Bf16` on an int8 file (whose default
    /// precision is int8; its weights are mapped in place, nothing is quantized at
    /// load).
    pub precision: Option<Precision>,
    /// Layers an int8 model keeps in float (bf16; see [`KeepFloat`], e.g.
    /// `KeepFloat::parse("stem,head")`): on an f32 file they are repacked to bf16 at
    /// load instead of quantized. An int8 file keeps the layers it was converted with
    /// (`levit-weights convert --precision int8 --keep-float ...`); naming a layer the
    /// file stores in int8 is an error. Empty (the default) keeps nothing; non-empty
    /// with a precision other than int8 is an error.
    pub keep_float: KeepFloat,
    /// Most multiply-accumulates per image a model may need ([`DEFAULT_MAX_MACS`],
    /// 250 G: LeViT-384 at 224 x 224 needs 2.4 G). A small file can declare a config
    /// costing thousands of GMAC per image (minutes each); past the limit the load is
    /// [`Error::TooMuchCompute`]. Raise it (or `u64::MAX`) to run such a model anyway.
    pub max_macs: u64,
}

/// The default [`ModelOptions::max_macs`]: 250 GMAC per image, about 100x LeViT-384 at
/// its native 224 x 224 and above every timm config up to `img_size` 1024.
pub const DEFAULT_MAX_MACS: u64 = 250_000_000_000;

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            mode: LoadMode::Mmap,
            verify_checksums: false,
            isa: None,
            precision: None,
            keep_float: KeepFloat::none(),
            max_macs: DEFAULT_MAX_MACS,
        }
    }
}

/// A validated weight file plus the execution plan built from its config.
pub struct Model {
    pub(crate) file: WeightFile,
    pub(crate) plan: Plan,
    /// The plan laid out for one image (what a default engine runs), checked at load.
    pub(crate) single: Arc<BatchLayout>,
    pub(crate) weights: BoundWeights,
    pub(crate) isa: Isa,
    /// The GEMM kernel of each precision the plan's steps use, chosen once here.
    kernels: [Option<GemmKernel>; Precision::ALL.len()],
    /// The attention kernel per precision, chosen at load like the GEMM kernels (an
    /// f32 kernel where a precision has none on this level).
    attention_kernels: [AttentionKernel; Precision::ALL.len()],
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("variant", &self.plan.config.variant)
            .field("precision", &self.plan.precision)
            .field("isa", &self.isa)
            .field("gemm", &self.gemm_kernel(self.plan.precision))
            .field("file", &self.file)
            .finish()
    }
}

/// The precision the file's GEMM weights are stored in: int8 if any tensor is I8 (an
/// int8 file, whose small stem convs and kept layers are f32 or bf16), else that of
/// `stem.0.weight` (every other weight is then checked against it).
fn stored_precision(file: &WeightFile) -> Result<Precision> {
    if file.tensors().any(|t| t.dtype == Dtype::I8) {
        return Ok(Precision::Int8);
    }
    let name = "stem.0.weight";
    let view = file
        .tensor(name)
        .ok_or_else(|| Error::MissingTensors(vec![name.to_string()]))?;
    precision_of(view.dtype).ok_or_else(|| Error::TensorDtype {
        name: name.to_string(),
        precision: Precision::F32,
        expected: "F32, BF16 or (in int8 files) I8".into(),
        found: view.dtype.name().into(),
    })
}

impl Model {
    /// Loads and validates a `.lvt` file with default options.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Model::load_with(path, ModelOptions::default())
    }

    /// Loads with explicit options.
    pub fn load_with(path: impl AsRef<Path>, options: ModelOptions) -> Result<Model> {
        let file = WeightFile::open(
            path,
            LoadOptions {
                mode: options.mode,
                verify_checksums: options.verify_checksums,
            },
        )?;
        Model::from_file(file, options)
    }

    /// Loads from bytes in memory (copied into aligned storage).
    pub fn from_bytes(bytes: &[u8], options: ModelOptions) -> Result<Model> {
        let file = WeightFile::from_bytes(bytes, options.verify_checksums)?;
        Model::from_file(file, options)
    }

    fn from_file(file: WeightFile, options: ModelOptions) -> Result<Model> {
        if options.verify_checksums {
            check_finite(&file)?; // the CRCs were checked when the file was opened
        }
        let isa = match options.isa {
            Some(i) => i.require_supported()?,
            None => Isa::from_env()?,
        };
        let config = Config::from_json(file.config_json())?;
        let dims = config.dims()?;
        let stored = stored_precision(&file)?;
        let precision = options.precision.unwrap_or(stored);
        if stored == Precision::Bf16 && precision == Precision::F32 {
            return Err(Error::Precision {
                stored,
                requested: precision,
                why: "bf16 weights cannot be widened back to the original f32; convert the \
                      checkpoint again with --precision f32"
                    .into(),
            });
        }
        if stored == Precision::Int8 && precision != Precision::Int8 {
            return Err(Error::Precision {
                stored,
                requested: precision,
                why: "int8 weights cannot be widened back to the original floats; convert the \
                      checkpoint again with --precision f32 or bf16 (or keep layers in float \
                      with --keep-float)"
                    .into(),
            });
        }
        let keep_float = if stored == Precision::Int8 {
            int8_file_keep_float(&file, &dims, &options.keep_float)?
        } else {
            options.keep_float.clone()
        };
        let specs = if stored == Precision::Int8 {
            levit_graph::int8_file_specs(&dims, &keep_float)
        } else {
            levit_graph::tensor_specs(&dims, stored)
        };

        let mut missing = Vec::new();
        let mut slots = Vec::with_capacity(specs.len());
        let mut int8_slots = vec![None; specs.len()];
        let mut companions = Vec::new();
        for (w, spec) in specs.iter().enumerate() {
            match file.tensor_index(&spec.name) {
                Some(i) => {
                    check_stored(spec, &file.tensor_at(i))?;
                    slots.push(i);
                }
                None => missing.push(spec.name.clone()),
            }
            if spec.precision == Precision::Int8 {
                // The per-column scales (F32) and compensations (I32) beside it.
                let cols = vec![spec.shape[0] * levit_kernels::NR];
                let [scale, comp] = levit_graph::int8_companion_names(&spec.name);
                let mut found = [0; 2];
                for (slot, (name, dtype)) in found
                    .iter_mut()
                    .zip([(scale, Dtype::F32), (comp, Dtype::I32)])
                {
                    match file.tensor_index(&name) {
                        Some(i) => {
                            check_companion(&name, dtype, &cols, &file.tensor_at(i))?;
                            *slot = i;
                        }
                        None => missing.push(name.clone()),
                    }
                    companions.push(name);
                }
                int8_slots[w] = Some((found[0], found[1]));
            }
        }
        if !missing.is_empty() {
            return Err(Error::MissingTensors(missing));
        }
        let wanted: HashSet<&str> = specs
            .iter()
            .map(|s| s.name.as_str())
            .chain(companions.iter().map(String::as_str))
            .collect();
        let unexpected: Vec<String> = file
            .tensors()
            .filter(|t| !wanted.contains(t.name))
            .map(|t| t.name.to_string())
            .collect();
        if !unexpected.is_empty() {
            return Err(Error::UnexpectedTensors(unexpected));
        }

        let lookup = |name: &str| file.tensor(name).and_then(|t| t.f32());
        let plan = Plan::build_with(&config, precision, &keep_float, &lookup)?;
        if plan.macs() > options.max_macs {
            return Err(Error::TooMuchCompute {
                macs: plan.macs(),
                limit: options.max_macs,
            });
        }
        let weights = BoundWeights::bind(&file, &plan, slots, int8_slots, &specs)?;
        let mut kernels = [None; Precision::ALL.len()];
        let step_precisions = plan.steps.iter().filter_map(|s| s.precision());
        for p in [Precision::F32, precision]
            .into_iter()
            .chain(step_precisions)
        {
            if kernels[p as usize].is_some() {
                continue;
            }
            let kernel = GemmKernel::select(p, isa).ok_or(Error::Precision {
                stored,
                requested: p,
                why: format!("no {p} GEMM kernel for the {isa} path on this CPU"),
            })?;
            kernels[p as usize] = Some(kernel);
        }
        let attention_kernels = Precision::ALL.map(|p| AttentionKernel::select(p, isa));
        let single = Arc::new(plan.batch_layout(1)?);
        let model = Model {
            file,
            plan,
            single,
            weights,
            isa,
            kernels,
            attention_kernels,
        };
        crate::run::check_plan(&model, &model.single)?;
        Ok(model)
    }

    /// The model config.
    pub fn config(&self) -> &Config {
        &self.plan.config
    }

    /// The execution plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The SIMD path inference runs on.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The precision the GEMMs and convolutions run in.
    pub fn precision(&self) -> Precision {
        self.plan.precision
    }

    /// The layers an int8 model keeps in float (empty unless asked for at load or
    /// stored so in an int8 file).
    pub fn keep_float(&self) -> &KeepFloat {
        &self.plan.keep_float
    }

    /// The GEMM kernel chosen for `precision` (the plan's, and f32 for steps that stay
    /// f32), or `None` if the model has no steps in it.
    pub fn gemm_kernel(&self, precision: Precision) -> Option<GemmKernel> {
        self.kernels[precision as usize]
    }

    /// Bytes of weights repacked into owned memory at load (0 unless the model runs
    /// in another precision than its file stores).
    pub fn repacked_bytes(&self) -> usize {
        self.weights.owned_bytes()
    }

    /// Floats per input image (`in_chans * img_size²`).
    pub fn input_len(&self) -> usize {
        self.plan.input_len
    }

    /// Number of classes (floats per output row).
    pub fn num_classes(&self) -> usize {
        self.plan.config.num_classes
    }

    /// The eval transform that makes this model's input from an image: timm's settings
    /// (crop 0.9, ImageNet mean and std) at the model's `img_size` (feature
    /// `preprocess`).
    #[cfg(feature = "preprocess")]
    pub fn preprocessing(&self) -> crate::preprocess::Preprocess {
        crate::preprocess::Preprocess::for_img_size(self.plan.config.img_size as u32)
    }

    /// Bytes one [`Engine`](crate::Engine) with `threads` intra-op threads allocates:
    /// its activation arena and the attention scratch of each thread. Shared bias
    /// tables and weights are the model's, counted once. A program running several
    /// engines (one per worker) needs this per engine.
    pub fn engine_bytes(&self, threads: usize) -> u64 {
        let floats =
            self.plan.arena_len as u64 + self.plan.attention_scratch as u64 * threads.max(1) as u64;
        floats * 4
    }

    /// Bytes one [`Engine`](crate::Engine) with these options allocates (as
    /// [`Model::engine_bytes`], with the arena of a batch of
    /// [`EngineOptions::max_batch`](crate::EngineOptions::max_batch) images); an
    /// error if that arena is over the plan limit.
    pub fn engine_bytes_with(&self, options: crate::EngineOptions) -> Result<u64> {
        let arena = if options.max_batch <= 1 {
            self.single.arena_len
        } else {
            self.plan.batch_layout(options.max_batch)?.arena_len
        };
        let scratch = self.plan.attention_scratch as u64 * options.threads.max(1) as u64;
        Ok((arena as u64 + scratch) * 4)
    }

    /// Multiply-accumulates per image.
    pub fn macs(&self) -> u64 {
        self.plan.macs()
    }

    /// Values stored (padding included; f32 and bf16 count one each).
    pub fn stored_floats(&self) -> usize {
        self.file.tensors().map(|t| t.len()).sum()
    }

    /// Recomputes every tensor's CRC-32 and compares it with the file's header, then
    /// checks that every F32 and BF16 weight is finite: a NaN or infinity written by a
    /// broken export has consistent checksums but makes every prediction garbage
    /// ([`Error::NonFiniteWeight`]).
    pub fn verify_checksums(&self) -> Result<()> {
        self.file.verify_checksums()?;
        check_finite(&self.file)
    }

    /// The weight file.
    pub fn file(&self) -> &WeightFile {
        &self.file
    }

    /// A GEMM or conv weight in its plan precision.
    pub(crate) fn packed(&self, id: levit_graph::WeightId) -> PackedB<'_> {
        self.weights.packed(&self.file, id)
    }

    /// An f32 tensor of the plan (a bias).
    pub(crate) fn f32(&self, id: levit_graph::WeightId) -> &[f32] {
        self.weights.f32(&self.file, id)
    }

    /// The attention kernel for a step's precision (selected at load).
    pub(crate) fn attention_kernel(&self, precision: Precision) -> &AttentionKernel {
        &self.attention_kernels[precision as usize]
    }

    /// The kernel for a step's precision (selected at load for every precision the
    /// plan uses).
    pub(crate) fn kernel(&self, precision: Precision) -> &GemmKernel {
        self.kernels[precision as usize]
            .as_ref()
            .expect("a kernel was selected at load for every precision of the plan")
    }
}

/// A file tensor against the spec the config needs: element type, then shape.
fn check_stored(spec: &TensorSpec, view: &levit_format::TensorView) -> Result<()> {
    let expected = dtype_of(spec.precision);
    if view.dtype != expected {
        return Err(Error::TensorDtype {
            name: spec.name.clone(),
            precision: spec.precision,
            expected: expected.name().into(),
            found: view.dtype.name().into(),
        });
    }
    if view.shape != spec.shape.as_slice() {
        return Err(Error::TensorShape {
            name: spec.name.clone(),
            expected: spec.shape.clone(),
            found: view.shape.to_vec(),
        });
    }
    Ok(())
}

/// The layers an int8 file keeps in float, from the dtypes of its weights (bf16 where
/// the int8 scheme would store I8, `docs/weight-format.md`), checked against what the
/// options ask for: a layer the file stores in int8 cannot be kept in float.
fn int8_file_keep_float(
    file: &WeightFile,
    dims: &levit_graph::Dims,
    asked: &KeepFloat,
) -> Result<KeepFloat> {
    let mut kept = KeepFloat::none();
    let mut quantized = Vec::new();
    for spec in levit_graph::int8_file_specs(dims, &KeepFloat::none()) {
        let Some(layer) = spec.name.strip_suffix(".weight") else {
            continue;
        };
        match file.tensor(&spec.name).map(|t| t.dtype) {
            Some(Dtype::Bf16) => kept.push(layer)?,
            Some(Dtype::I8) => quantized.push(layer.to_string()),
            _ => {} // F32 small convs; a missing or mistyped tensor is reported later
        }
    }
    asked.check(dims)?;
    if let Some(layer) = quantized.iter().find(|l| asked.keeps(l)) {
        return Err(Error::Precision {
            stored: Precision::Int8,
            requested: Precision::Bf16,
            why: format!(
                "`{layer}` (kept in float: {asked}) is stored in int8 in this file; convert the \
                 checkpoint again with --precision int8 --keep-float {asked}"
            ),
        });
    }
    Ok(kept)
}

/// A scale or compensation tensor of an int8 weight against its dtype and shape.
fn check_companion(
    name: &str,
    dtype: Dtype,
    shape: &[usize],
    view: &levit_format::TensorView,
) -> Result<()> {
    if view.dtype != dtype {
        return Err(Error::TensorDtype {
            name: name.to_string(),
            precision: Precision::Int8,
            expected: dtype.name().into(),
            found: view.dtype.name().into(),
        });
    }
    if view.shape != shape {
        return Err(Error::TensorShape {
            name: name.to_string(),
            expected: shape.to_vec(),
            found: view.shape.to_vec(),
        });
    }
    Ok(())
}

/// [`Error::NonFiniteWeight`] for the first NaN or infinite F32 or BF16 value.
fn check_finite(file: &WeightFile) -> Result<()> {
    for t in file.tensors() {
        let found = if let Some(data) = t.f32() {
            data.iter()
                .position(|v| !v.is_finite())
                .map(|i| (i, data[i]))
        } else if let Some(data) = t.bf16() {
            // Exponent bits all ones: infinity or NaN.
            let widen = |b: u16| f32::from_bits(u32::from(b) << 16);
            data.iter()
                .position(|&b| b & 0x7f80 == 0x7f80)
                .map(|i| (i, widen(data[i])))
        } else {
            None // I8 and I32 values are all finite.
        };
        if let Some((index, value)) = found {
            return Err(Error::NonFiniteWeight {
                tensor: t.name.to_string(),
                index,
                value,
            });
        }
    }
    Ok(())
}
