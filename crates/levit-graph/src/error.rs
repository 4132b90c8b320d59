//! Errors from turning a config into a plan.

/// Why a config cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The config JSON does not parse.
    #[error("model config is not valid JSON for a LeViT config: {0}")]
    ConfigJson(String),
    /// A config field has a value the engine cannot run.
    #[error("unsupported model config: {field}: {reason}")]
    Unsupported {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The config asks for more memory at load (gathered attention-bias tables plus the
    /// activation arena) than [`crate::MAX_PLAN_BYTES`]: a corrupted or hostile file
    /// must not make a small file allocate gigabytes.
    #[error("model config needs {needed_mib} MiB of activations and attention-bias tables, over the {limit_mib} MiB limit (img_size, depth and num_heads set it)")]
    TooLarge {
        /// MiB the plan would need.
        needed_mib: u64,
        /// The limit in MiB.
        limit_mib: u64,
    },
    /// Memory for a plan table could not be allocated (within the limit, but not
    /// available to this process).
    #[error("out of memory for the plan's {what} ({mib} MiB)")]
    OutOfMemory {
        /// What was being allocated.
        what: &'static str,
        /// Its size in MiB.
        mib: u64,
    },
    /// A tensor needed by the plan was not provided.
    #[error("missing tensor `{0}`")]
    MissingTensor(String),
}

impl GraphError {
    pub(crate) fn unsupported(field: &'static str, reason: impl Into<String>) -> Self {
        GraphError::Unsupported {
            field,
            reason: reason.into(),
        }
    }
}
