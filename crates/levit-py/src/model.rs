//! `levit.Model`: one loaded model shared by every Python thread that calls it.
//!
//! The model (weights mapped once, plan, kernels) lives in an `Arc`; the engines (one
//! activation arena each) live in a pool. A call takes an idle engine out of the pool,
//! or makes one, releases the GIL, runs, and puts the engine back: two threads calling
//! at once run on two engines in parallel and no lock is held across an inference. The
//! pool never holds more engines than there were calls in flight at once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use levit::{Engine, EngineOptions, Isa, LoadMode, ModelOptions, Precision};
use numpy::{PyArray2, PyArray3, PyArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::errors::{from_preprocess, to_py};
use crate::images;
use crate::input;

/// A LeViT model loaded from a `.lvt` file; call it on normalized float32 images.
///
/// `Model(path, *, threads=1, isa=None, mmap=True, verify=False, precision=None,
/// batch=1)`: `threads` is the intra-op threads of each engine (1: the calling thread
/// only); `batch` the images one engine runs at once: a call on `[N, 3, H, W]` then
/// runs every token-wise GEMM once per chunk of up to `batch` images, reading each
/// weight once per chunk (faster for batches; the logits are bitwise the same as
/// `batch=1`'s; the engine's memory grows with it, see `info["engine_bytes"]`);
/// `isa` forces a SIMD path (portable, avx2, avx512, avx512bf16, amx; default: the
/// best this CPU has, or `LEVIT_ISA`); `mmap=False` reads the file into memory
/// instead of mapping it; `verify=True` checks every tensor's CRC-32 and that every
/// weight is finite; `precision="bf16"` runs the GEMMs in bfloat16 (default: the
/// file's own precision).
///
/// `model(x)` / `model.infer(x)`: `x` float32 `[3, H, W]` or `[N, 3, H, W]`,
/// normalized (see `levit.preprocess`); returns `[N, classes]` float32 logits.
///
/// One Model serves any number of Python threads: each call in flight runs on an
/// engine of its own with the GIL released, so threads run in parallel.
///
/// Raises FileNotFoundError / OSError for unreadable files, `levit.FormatError` for
/// damaged or foreign ones, ValueError for bad options.
#[pyclass(module = "levit", name = "Model", frozen)]
pub struct Model {
    model: Arc<levit::Model>,
    path: PathBuf,
    threads: usize,
    /// Images each engine runs at once (`EngineOptions::max_batch`).
    batch: usize,
    /// Engines not running a call right now.
    idle: Mutex<Vec<Engine>>,
    /// Engines made so far (the most calls that were ever in flight at once).
    engines_made: AtomicUsize,
    /// Address of the float buffer the last call ran on (see `_last_input_address`).
    last_input: AtomicUsize,
}

impl Model {
    fn idle(&self) -> MutexGuard<'_, Vec<Engine>> {
        // A panic cannot leave the list half-changed (push and pop only).
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn new_engine(&self) -> levit::Result<Engine> {
        let options = EngineOptions {
            threads: self.threads,
            max_batch: self.batch,
        };
        let engine = Engine::with_options(self.model.clone(), options)?;
        self.engines_made.fetch_add(1, Ordering::Relaxed);
        Ok(engine)
    }

    /// Runs `work` on an engine of its own (the GIL already released).
    fn with_engine<T>(&self, work: impl FnOnce(&mut Engine) -> T) -> levit::Result<T> {
        let taken = self.idle().pop();
        let mut engine = match taken {
            Some(e) => e,
            None => self.new_engine()?,
        };
        let result = work(&mut engine);
        self.idle().push(engine);
        Ok(result)
    }

    fn check_images(&self) -> PyResult<()> {
        if self.model.config().in_chans != 3 {
            return Err(PyValueError::new_err(format!(
                "the model takes {}-channel inputs, not RGB images",
                self.model.config().in_chans
            )));
        }
        Ok(())
    }
}

#[pymethods]
impl Model {
    #[new]
    // One Rust argument per Python keyword argument: the signature is the Python API.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (path, *, threads=1, isa=None, mmap=true, verify=false, precision=None, batch=1))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        threads: usize,
        isa: Option<&str>,
        mmap: bool,
        verify: bool,
        precision: Option<&str>,
        batch: usize,
    ) -> PyResult<Model> {
        if batch == 0 || batch > levit::MAX_BATCH {
            return Err(PyValueError::new_err(format!(
                "batch must be in 1..={}, got {batch}",
                levit::MAX_BATCH
            )));
        }
        let isa = isa
            .map(Isa::parse)
            .transpose()
            .map_err(|e| to_py(e.into()))?;
        let precision = precision
            .map(Precision::parse)
            .transpose()
            .map_err(PyValueError::new_err)?;
        let options = ModelOptions {
            mode: if mmap {
                LoadMode::Mmap
            } else {
                LoadMode::Owned
            },
            verify_checksums: verify,
            isa,
            precision,
            ..ModelOptions::default()
        };
        let loaded = py
            .detach(|| levit::Model::load_with(&path, options))
            .map_err(to_py)?;
        let model = Model {
            model: Arc::new(loaded),
            path,
            threads: threads.max(1),
            batch,
            idle: Mutex::new(Vec::new()),
            engines_made: AtomicUsize::new(0),
            last_input: AtomicUsize::new(0),
        };
        // The first engine now: a bad `threads` or too little memory fails here.
        let first = model.new_engine().map_err(to_py)?;
        model.idle().push(first);
        Ok(model)
    }

    /// Same as `infer`.
    #[pyo3(signature = (x, /))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        self.infer(py, x)
    }

    /// Logits of normalized images: `x` is float32 `[3, H, W]` or `[N, 3, H, W]`; returns
    /// float32 `[N, classes]`. A C-contiguous float32 array is read in place.
    #[pyo3(signature = (x, /))]
    fn infer<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let c = self.model.config();
        let images = input::images(x, c.in_chans, c.img_size)?;
        let classes = self.model.num_classes();
        let out = PyArray2::<f32>::zeros(py, [images.count, classes], false);
        if images.count == 0 {
            return Ok(out);
        }
        let inputs = images.array.as_slice().expect("checked C-contiguous");
        {
            let mut guard = out.readwrite();
            let outputs = guard.as_slice_mut().expect("a new array is contiguous");
            self.last_input
                .store(inputs.as_ptr() as usize, Ordering::Relaxed);
            py.detach(|| self.with_engine(|engine| engine.infer_batch(inputs, outputs)))
                .and_then(|r| r)
                .map_err(to_py)?;
        }
        Ok(out)
    }

    /// timm's eval tensor of an image file for this model's input size (see
    /// `levit.preprocess`, which also takes bytes and PIL images).
    #[pyo3(signature = (path, /))]
    fn preprocess<'py>(
        &self,
        py: Python<'py>,
        path: PathBuf,
    ) -> PyResult<Bound<'py, PyArray3<f32>>> {
        self.check_images()?;
        images::preprocess_file(py, path, self.model.config().img_size as u32, None)
    }

    /// Decodes, preprocesses and classifies image files; returns one dict per path,
    /// `{"path": str, "top": [{"class", "label", "synset", "probability", "logit"}, ...]}`,
    /// best class first: what `levit classify --json` prints. A file that cannot be
    /// read or decoded raises (OSError, ValueError).
    #[pyo3(signature = (paths, /, top=5))]
    fn classify<'py>(
        &self,
        py: Python<'py>,
        paths: Vec<PathBuf>,
        top: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        self.check_images()?;
        let preprocess = self.model.preprocessing();
        let mut buf = vec![0.0f32; preprocess.output_len()];
        let mut rows = Vec::with_capacity(paths.len());
        for path in &paths {
            let logits = py.detach(|| -> PyResult<Vec<f32>> {
                let image = images::open(path).map_err(from_preprocess)?;
                preprocess
                    .run_into(&image, &mut buf)
                    .map_err(from_preprocess)?;
                self.with_engine(|engine| engine.infer(&buf).map(<[f32]>::to_vec))
                    .and_then(|r| r)
                    .map_err(to_py)
            })?;
            let row = PyDict::new(py);
            row.set_item("path", path.display().to_string())?;
            row.set_item("top", images::ranked(py, &logits, top)?)?;
            rows.push(row);
        }
        PyList::new(py, rows)
    }

    /// What the model is and how it runs here: variant, classes, input size, MACs per
    /// image, SIMD path, precision, file size, threads.
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = &self.model;
        let c = m.config();
        let d = PyDict::new(py);
        d.set_item("path", self.path.display().to_string())?;
        d.set_item("variant", &c.variant)?;
        d.set_item("classes", c.num_classes)?;
        d.set_item("img_size", c.img_size)?;
        d.set_item("in_chans", c.in_chans)?;
        d.set_item("macs", m.macs())?;
        d.set_item("isa", m.isa().name())?;
        d.set_item("precision", m.precision().name())?;
        d.set_item("file_size", m.file().file_len())?;
        d.set_item("threads", self.threads)?;
        d.set_item("batch", self.batch)?;
        let options = EngineOptions {
            threads: self.threads,
            max_batch: self.batch,
        };
        d.set_item("engine_bytes", m.engine_bytes_with(options).map_err(to_py)?)?;
        Ok(d)
    }

    /// Classes per output row.
    #[getter]
    fn num_classes(&self) -> usize {
        self.model.num_classes()
    }

    /// The shape of one input image, `(channels, img_size, img_size)`.
    #[getter]
    fn input_shape(&self) -> (usize, usize, usize) {
        let c = self.model.config();
        (c.in_chans, c.img_size, c.img_size)
    }

    /// Images each engine runs at once (the `batch` option).
    #[getter]
    fn batch(&self) -> usize {
        self.batch
    }

    /// Intra-op threads of each engine.
    #[getter]
    fn threads(&self) -> usize {
        self.threads
    }

    /// Checks every tensor's CRC-32 and that every weight is finite (FormatError if not).
    fn verify(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.model.verify_checksums()).map_err(to_py)
    }

    /// Test hook: the address of the float buffer the last `infer` ran on (equal to
    /// `x.ctypes.data` when `x` was read in place).
    fn _last_input_address(&self) -> usize {
        self.last_input.load(Ordering::Relaxed)
    }

    /// Test hook: engines made so far (the most calls that ran at once).
    fn _engines_made(&self) -> usize {
        self.engines_made.load(Ordering::Relaxed)
    }

    fn __repr__(&self) -> String {
        let c = self.model.config();
        format!(
            "levit.Model({:?}, variant={:?}, classes={}, img_size={}, isa={:?}, precision={:?}, threads={}, batch={})",
            self.path.display().to_string(),
            c.variant,
            c.num_classes,
            c.img_size,
            self.model.isa().name(),
            self.model.precision().name(),
            self.threads,
            self.batch
        )
    }
}
