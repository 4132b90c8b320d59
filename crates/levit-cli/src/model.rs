//! Loading a model for a command, with errors that name the file.

use std::path::Path;

use anyhow::{anyhow, Result};
use levit::{FormatError, Isa, Model, ModelOptions, Precision};

/// Model loading settings shared by the commands.
#[derive(Clone, Debug, Default)]
pub struct LoadSettings {
    /// Force a SIMD path by name (`amx`, `avx512bf16`, `avx512`, `avx2`, `portable`).
    pub isa: Option<String>,
    /// Run the GEMMs in this precision (`f32`, `bf16`); default: the file's own.
    pub precision: Option<String>,
    /// Verify every tensor's CRC-32 at load.
    pub verify_checksums: bool,
}

impl LoadSettings {
    /// The engine's options for these settings.
    pub fn options(&self) -> Result<ModelOptions> {
        let isa = match &self.isa {
            Some(name) => Some(
                Isa::parse(name)
                    .and_then(Isa::require_supported)
                    .map_err(|e| anyhow!("--isa {name}: {e}"))?,
            ),
            None => None,
        };
        let precision = match &self.precision {
            Some(name) => {
                Some(Precision::parse(name).map_err(|e| anyhow!("--precision {name}: {e}"))?)
            }
            None => None,
        };
        Ok(ModelOptions {
            isa,
            precision,
            verify_checksums: self.verify_checksums,
            ..ModelOptions::default()
        })
    }
}

/// Loads `path`, turning every failure into one line that names the file.
pub fn load(path: &Path, settings: &LoadSettings) -> Result<Model> {
    let options = settings.options()?;
    Model::load_with(path, options).map_err(|e| describe(path, e))
}

/// One line for a model that failed to load.
pub fn describe(path: &Path, e: levit::Error) -> anyhow::Error {
    let shown = path.display();
    match e {
        levit::Error::Format(FormatError::Io { source, .. }) => {
            anyhow!(
                "cannot read model {shown}: {}",
                crate::classify::io_reason(&source)
            )
        }
        levit::Error::Format(FormatError::NotAFile { .. }) => {
            anyhow!("model {shown} is not a regular file")
        }
        // The conversion hint first: the likeliest cause is a checkpoint passed as is.
        levit::Error::Format(FormatError::NotLevit(why)) => anyhow!(
            "{shown} is a safetensors file but not a levit model: convert checkpoints first \
             with `levit-weights convert {shown} -o model.lvt` ({why})"
        ),
        levit::Error::Format(FormatError::Container(why)) => anyhow!(
            "{shown} is not a levit model file: convert PyTorch checkpoints first with \
             `levit-weights convert {shown} -o model.lvt` ({why})"
        ),
        other => anyhow!("model {shown}: {other}"),
    }
}
