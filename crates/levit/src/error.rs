//! The engine's error type: everything a caller can get wrong or a file can hold wrong.

pub use levit_format::{os_reason, FormatError};
pub use levit_graph::GraphError;
pub use levit_kernels::isa::IsaError;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why loading a model, preprocessing an image, running the model or reading its
/// output failed: the one error type of every public call, so `?` works for all of them
/// in a function returning [`levit::Result`](crate::Result).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The weight file is unreadable or malformed.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The model config cannot be planned.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// The requested SIMD path is unknown or unsupported here.
    #[error(transparent)]
    Isa(#[from] IsaError),
    /// Tensors the config needs are absent from the file.
    #[error("weight file lacks {} tensor(s) the config needs: {}", .0.len(), .0.join(", "))]
    MissingTensors(Vec<String>),
    /// The file holds tensors the config does not use.
    #[error("weight file has {} tensor(s) the config does not use: {}", .0.len(), .0.join(", "))]
    UnexpectedTensors(Vec<String>),
    /// A tensor's stored shape disagrees with the config.
    #[error("tensor `{name}` has shape {found:?}, but the config needs {expected:?}")]
    TensorShape {
        /// Tensor.
        name: String,
        /// Shape the config implies.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// A tensor is stored in another element type than the config and precision need.
    #[error("tensor `{name}` is stored as {found}, but a {precision} model needs {expected}")]
    TensorDtype {
        /// Tensor.
        name: String,
        /// The model's precision.
        precision: levit_kernels::Precision,
        /// Element type needed.
        expected: String,
        /// Element type in the file.
        found: String,
    },
    /// The requested precision cannot be made from the stored one.
    #[error("cannot run a {stored} weight file in {requested}: {why}")]
    Precision {
        /// Precision of the file's weights.
        stored: levit_kernels::Precision,
        /// Precision asked for.
        requested: levit_kernels::Precision,
        /// Why not.
        why: String,
    },
    /// The input is not `images * in_chans * img_size²` floats.
    #[error("input has {found} floats, expected {expected} ({what})")]
    InputLength {
        /// Expected length.
        expected: usize,
        /// Actual length.
        found: usize,
        /// The shape that was expected, in words.
        what: String,
    },
    /// The output buffer of a batch call has the wrong length.
    #[error("output buffer has {found} floats, expected {expected} (images x classes)")]
    OutputLength {
        /// Expected length.
        expected: usize,
        /// Actual length.
        found: usize,
    },
    /// An image could not be opened, decoded or preprocessed (cargo feature
    /// `preprocess`).
    #[cfg(feature = "preprocess")]
    #[error(transparent)]
    Image(#[from] levit_image::PreprocessError),
    /// A weight is NaN or infinite (found by [`Model::verify_checksums`](crate::Model::verify_checksums)
    /// or a verified load; its checksum may well be consistent).
    #[error("tensor `{tensor}` holds a non-finite value ({value}) at element {index}: the weights are damaged")]
    NonFiniteWeight {
        /// Tensor name.
        tensor: String,
        /// Element index of the first such value.
        index: usize,
        /// The value.
        value: f32,
    },
    /// A logit is NaN or infinite: damaged weights or input (ranking it would be garbage).
    #[error("logit of class {class} is {value}, not a finite number (damaged weights or input)")]
    NonFiniteLogits {
        /// The first such class.
        class: usize,
        /// Its value.
        value: f32,
    },
    /// More intra-op threads were asked for than an engine may use.
    #[error("{requested} intra-op threads requested; an engine uses at most {max}")]
    Threads {
        /// Threads asked for.
        requested: usize,
        /// [`MAX_THREADS`](crate::MAX_THREADS).
        max: usize,
    },
    /// A larger batch was asked for than an engine may hold.
    #[error("a batch of {requested} images requested; an engine holds at most {max}")]
    Batch {
        /// Images asked for.
        requested: usize,
        /// [`MAX_BATCH`](crate::MAX_BATCH).
        max: usize,
    },
    /// Memory the model or an engine needs could not be allocated.
    #[error("out of memory for {what} ({mib} MiB)")]
    OutOfMemory {
        /// What was being allocated.
        what: &'static str,
        /// Its size in MiB.
        mib: u64,
    },
    /// The model's compute per image exceeds [`ModelOptions::max_macs`](crate::ModelOptions::max_macs).
    #[error("the model needs {} GMAC per image, over the limit of {} GMAC (raise ModelOptions::max_macs / --max-gmac to run it)", .macs / 1_000_000_000, .limit / 1_000_000_000)]
    TooMuchCompute {
        /// Multiply-accumulates per image.
        macs: u64,
        /// The limit.
        limit: u64,
    },
    /// The intra-op thread pool could not be created.
    #[error("cannot start the inference thread pool: {0}")]
    ThreadPool(String),
    /// A plan step failed its bounds check at load (a bug in the planner, reported
    /// rather than risked).
    #[error("internal plan check failed at step {step}: {reason}")]
    PlanCheck {
        /// Step index.
        step: usize,
        /// What was out of bounds.
        reason: String,
    },
}
