//! A loaded model: the weight file (mapped or owned), its plan and the SIMD path.
//! Immutable and `Send + Sync`: share it between engines with an `Arc`.

use std::collections::HashSet;
use std::path::Path;

use levit_format::{LoadMode, LoadOptions, WeightFile};
use levit_graph::{Config, Plan};
use levit_kernels::Isa;

use crate::{Error, Result};

/// How to load a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            mode: LoadMode::Mmap,
            verify_checksums: false,
            isa: None,
        }
    }
}

/// A validated weight file plus the execution plan built from its config.
pub struct Model {
    pub(crate) file: WeightFile,
    pub(crate) plan: Plan,
    /// File tensor index of each plan weight (`WeightId` order).
    pub(crate) slots: Vec<usize>,
    pub(crate) isa: Isa,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("variant", &self.plan.config.variant)
            .field("isa", &self.isa)
            .field("file", &self.file)
            .finish()
    }
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
        Model::from_file(file, options.isa)
    }

    /// Loads from bytes in memory (copied into aligned storage).
    pub fn from_bytes(bytes: &[u8], options: ModelOptions) -> Result<Model> {
        let file = WeightFile::from_bytes(bytes, options.verify_checksums)?;
        Model::from_file(file, options.isa)
    }

    fn from_file(file: WeightFile, isa: Option<Isa>) -> Result<Model> {
        let isa = match isa {
            Some(i) => i.require_supported()?,
            None => Isa::from_env()?,
        };
        let config = Config::from_json(file.config_json())?;
        let dims = config.dims()?;
        let specs = levit_graph::tensor_specs(&dims);

        let mut missing = Vec::new();
        let mut slots = Vec::with_capacity(specs.len());
        for spec in &specs {
            match file.tensor_index(&spec.name) {
                Some(i) => {
                    let found = file.tensor_at(i).shape;
                    if found != spec.shape.as_slice() {
                        return Err(Error::TensorShape {
                            name: spec.name.clone(),
                            expected: spec.shape.clone(),
                            found: found.to_vec(),
                        });
                    }
                    slots.push(i);
                }
                None => missing.push(spec.name.clone()),
            }
        }
        if !missing.is_empty() {
            return Err(Error::MissingTensors(missing));
        }
        let wanted: HashSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        let unexpected: Vec<String> = file
            .tensors()
            .filter(|t| !wanted.contains(t.name))
            .map(|t| t.name.to_string())
            .collect();
        if !unexpected.is_empty() {
            return Err(Error::UnexpectedTensors(unexpected));
        }

        let lookup = |name: &str| file.tensor(name).and_then(|t| t.f32());
        let plan = Plan::build(&config, &lookup)?;
        let model = Model {
            file,
            plan,
            slots,
            isa,
        };
        crate::run::check_plan(&model)?;
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

    /// Floats per input image (`in_chans * img_size²`).
    pub fn input_len(&self) -> usize {
        self.plan.input_len
    }

    /// Number of classes (floats per output row).
    pub fn num_classes(&self) -> usize {
        self.plan.config.num_classes
    }

    /// Multiply-accumulates per image.
    pub fn macs(&self) -> u64 {
        self.plan.macs()
    }

    /// Parameters stored (padding excluded is not tracked: this counts stored floats).
    pub fn stored_floats(&self) -> usize {
        self.file.tensors().map(|t| t.len()).sum()
    }

    /// Recomputes every tensor's CRC-32 and compares it with the file's header.
    pub fn verify_checksums(&self) -> Result<()> {
        Ok(self.file.verify_checksums()?)
    }

    /// The weight file.
    pub fn file(&self) -> &WeightFile {
        &self.file
    }

    pub(crate) fn weight(&self, id: levit_graph::WeightId) -> &[f32] {
        self.file
            .tensor_at(self.slots[id.0])
            .f32()
            .expect("the plan was built from f32 tensors")
    }
}
