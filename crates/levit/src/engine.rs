//! The engine: a model plus one fixed arena. `infer` allocates nothing.

use std::path::Path;
use std::sync::Arc;

use levit_graph::BatchLayout;
use levit_kernels::parallel::{Inline, SpinPool};

use crate::arena::Arena;
use crate::{run, Error, Model, Result};

/// Most intra-op threads one engine may use. Each is an OS thread spinning between
/// kernels and a slice of attention scratch; past a few dozen cores LeViT's kernels
/// have too little work to split, so a larger request is a mistake worth an error
/// rather than thousands of threads (or an abort when the OS refuses them).
pub const MAX_THREADS: usize = 256;

/// Most images one engine runs at once ([`EngineOptions::max_batch`]). Past a few
/// dozen the weights are already reused enough and the arena only grows; the plan's
/// memory limit (`levit_graph::MAX_PLAN_BYTES`) may refuse a smaller batch of a
/// large model first.
pub const MAX_BATCH: usize = 1024;

/// Per-engine settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineOptions {
    /// Intra-op threads for one inference. 1 (the default) runs inline on the caller's
    /// thread with no pool; more threads start `threads - 1` spinning workers owned by
    /// the engine (the caller's thread works too) and split each kernel over output
    /// rows, panels and query rows, never over a reduction, so results are bitwise
    /// identical for every thread count. Idle workers spin ~0.3 ms, then sleep.
    pub threads: usize,
    /// Most images one kernel sequence runs at once (1, the default, is the
    /// single-image arena). With more, the arena holds `max_batch` images and
    /// [`Engine::infer_batch`] runs every token-wise GEMM (qkv, projections, MLPs,
    /// subsample queries, head) once over the tokens of all images of a chunk, so each
    /// weight panel is read once per chunk instead of once per image; the stem and
    /// attention still run per image. Logits are bitwise equal to [`Engine::infer`]'s
    /// on each image alone. 0 means 1; more than [`MAX_BATCH`] is [`Error::Batch`].
    pub max_batch: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            threads: 1,
            max_batch: 1,
        }
    }
}

/// Runs inference for one caller at a time. Cheap to create from a shared [`Model`];
/// one per thread for parallel inference.
pub struct Engine {
    model: Arc<Model>,
    /// The plan laid out for `layout.images` images (the model's own for one).
    layout: Arc<BatchLayout>,
    arena: Arena,
    /// One attention scratch region per thread.
    scratch: Arena,
    pool: Option<SpinPool>,
    threads: usize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("model", &self.model)
            .finish()
    }
}

impl Engine {
    /// Loads a `.lvt` file and makes an engine for it.
    pub fn load(path: impl AsRef<Path>) -> Result<Engine> {
        Ok(Engine::new(Arc::new(Model::load(path)?)))
    }

    /// A single-threaded engine over an already loaded (possibly shared) model.
    /// Allocates the arena ([`Model::engine_bytes`]; the load bounded it by the plan
    /// limit). Panics if that memory cannot be had; [`Engine::with_options`] returns
    /// [`Error::OutOfMemory`] instead.
    pub fn new(model: Arc<Model>) -> Engine {
        Engine::with_options(model, EngineOptions::default()).expect("one thread needs no pool")
    }

    /// An engine with explicit options (intra-op threads, batch size). More than
    /// [`MAX_THREADS`] threads is [`Error::Threads`], more than [`MAX_BATCH`] images
    /// [`Error::Batch`], a batch arena over the plan limit [`Error::Graph`]; 0 means 1
    /// for both.
    pub fn with_options(model: Arc<Model>, options: EngineOptions) -> Result<Engine> {
        if options.threads > MAX_THREADS {
            return Err(Error::Threads {
                requested: options.threads,
                max: MAX_THREADS,
            });
        }
        if options.max_batch > MAX_BATCH {
            return Err(Error::Batch {
                requested: options.max_batch,
                max: MAX_BATCH,
            });
        }
        let layout = if options.max_batch <= 1 {
            model.single.clone()
        } else {
            let layout = model.plan.batch_layout(options.max_batch)?;
            run::check_plan(&model, &layout)?;
            Arc::new(layout)
        };
        let threads = options.threads.max(1);
        let pool = if threads > 1 {
            Some(SpinPool::new(threads).map_err(|e| Error::ThreadPool(e.to_string()))?)
        } else {
            None
        };
        let bytes =
            (layout.arena_len as u64 + model.plan.attention_scratch as u64 * threads as u64) * 4;
        let out_of_memory = || Error::OutOfMemory {
            what: "the engine's activation arena",
            mib: bytes.div_ceil(1 << 20),
        };
        Ok(Engine {
            arena: Arena::try_new(layout.arena_len).ok_or_else(out_of_memory)?,
            layout,
            // threads <= MAX_THREADS and the scratch is within the plan limit: no overflow.
            scratch: Arena::try_new(model.plan.attention_scratch * threads)
                .ok_or_else(out_of_memory)?,
            model,
            pool,
            threads,
        })
    }

    /// Intra-op threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Most images run at once ([`EngineOptions::max_batch`]).
    pub fn max_batch(&self) -> usize {
        self.layout.images
    }

    /// Bytes of the activation arena (sized for [`Engine::max_batch`] images).
    pub fn arena_bytes(&self) -> usize {
        self.layout.arena_len * 4
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Classifies one normalized `[in_chans, img_size, img_size]` CHW image and returns
    /// the logits (eval mode: the average of the classifier and distillation heads).
    /// NaN or infinite inputs propagate to the output; they never panic.
    pub fn infer(&mut self, input: &[f32]) -> Result<&[f32]> {
        self.infer_traced(input, None)
    }

    /// Like [`Engine::infer`], calling `tracer` with each named intermediate
    /// (`stem`, `stage0`, ...: `[tokens, channels]` row-major) as it completes.
    pub fn infer_traced(&mut self, input: &[f32], tracer: Option<run::Tracer>) -> Result<&[f32]> {
        self.infer_inner(input, tracer, None)
    }

    /// Like [`Engine::infer`], adding each step's wall time in nanoseconds to
    /// `step_nanos[i]` (one entry per step of the plan; names in `Plan::labels`).
    /// For profiles; allocates nothing.
    pub fn infer_profiled(&mut self, input: &[f32], step_nanos: &mut [u64]) -> Result<&[f32]> {
        let steps = self.model.plan.steps.len();
        if step_nanos.len() < steps {
            return Err(Error::OutputLength {
                expected: steps,
                found: step_nanos.len(),
            });
        }
        self.infer_inner(input, None, Some(step_nanos))
    }

    fn infer_inner(
        &mut self,
        input: &[f32],
        tracer: Option<run::Tracer>,
        profile: Option<&mut [u64]>,
    ) -> Result<&[f32]> {
        let expected = self.model.input_len();
        if input.len() != expected {
            let c = &self.model.plan.config;
            return Err(Error::InputLength {
                expected,
                found: input.len(),
                what: format!("one image of {}x{}x{}", c.in_chans, c.img_size, c.img_size),
            });
        }
        Ok(self.run(input, 1, tracer, profile))
    }

    /// Runs `images` images (`1..=max_batch`, checked by the callers) and returns their
    /// logits, `[images, classes]`.
    fn run(
        &mut self,
        inputs: &[f32],
        images: usize,
        tracer: Option<run::Tracer>,
        profile: Option<&mut [u64]>,
    ) -> &[f32] {
        let (model, layout, arena, scratch) = (
            &self.model,
            &self.layout,
            self.arena.as_mut_slice(),
            self.scratch.as_mut_slice(),
        );
        match &self.pool {
            None => run::run(
                model, layout, inputs, images, arena, scratch, &Inline, tracer, profile,
            ),
            Some(pool) => run::run(
                model, layout, inputs, images, arena, scratch, pool, tracer, profile,
            ),
        }
        let out = self.layout.output;
        let classes = self.model.num_classes();
        &self.arena.as_slice()[out.offset..][..images * classes]
    }

    /// Like [`Engine::infer_batch`], adding each step's wall time in nanoseconds to
    /// `step_nanos[i]`, summed over the batch's chunks (a stem step's time is summed over
    /// its images). For profiles; allocates nothing.
    pub fn infer_batch_profiled(
        &mut self,
        inputs: &[f32],
        outputs: &mut [f32],
        step_nanos: &mut [u64],
    ) -> Result<()> {
        let steps = self.model.plan.steps.len();
        if step_nanos.len() < steps {
            return Err(Error::OutputLength {
                expected: steps,
                found: step_nanos.len(),
            });
        }
        self.batch_inner(inputs, outputs, Some(step_nanos))
    }

    /// Classifies `N` images stored back to back in `inputs` (`[N, C, H, W]`), writing
    /// `[N, classes]` logits into `outputs`, in chunks of up to
    /// [`Engine::max_batch`] images that share every weight read (see
    /// [`EngineOptions::max_batch`]). Each image's logits are bitwise equal to
    /// [`Engine::infer`]'s. Allocates nothing.
    pub fn infer_batch(&mut self, inputs: &[f32], outputs: &mut [f32]) -> Result<()> {
        self.batch_inner(inputs, outputs, None)
    }

    fn batch_inner(
        &mut self,
        inputs: &[f32],
        outputs: &mut [f32],
        mut profile: Option<&mut [u64]>,
    ) -> Result<()> {
        let per_image = self.model.input_len();
        let classes = self.model.num_classes();
        if inputs.is_empty() || !inputs.len().is_multiple_of(per_image) {
            let c = &self.model.plan.config;
            return Err(Error::InputLength {
                expected: per_image * inputs.len().div_ceil(per_image).max(1),
                found: inputs.len(),
                what: format!("N images of {}x{}x{}", c.in_chans, c.img_size, c.img_size),
            });
        }
        let images = inputs.len() / per_image;
        if outputs.len() != images * classes {
            return Err(Error::OutputLength {
                expected: images * classes,
                found: outputs.len(),
            });
        }
        let batch = self.layout.images;
        for (chunk, out) in inputs
            .chunks(batch * per_image)
            .zip(outputs.chunks_mut(batch * classes))
        {
            let images = chunk.len() / per_image;
            out.copy_from_slice(self.run(chunk, images, None, profile.as_deref_mut()));
        }
        Ok(())
    }
}
