//! Loading a model for a command, with errors that name the file.

use std::path::Path;

use anyhow::{anyhow, Result};
use levit::{FormatError, Isa, Model, ModelOptions, Precision};

/// Model loading settings shared by the commands.
#[derive(Clone, Debug, Default)]
pub struct LoadSettings {
    /// Force a SIMD path by name (`amx`, `avx512bf16`, `avx512`, `avx2`, `portable`).
    pub isa: Option<String>,
    /// Run the GEMMs in this precision (`f32`, `bf16`, `int8`); default: the file's own.
    pub precision: Option<String>,
    /// Layers an int8 model keeps in float (`--keep-float`, comma separated).
    pub keep_float: Option<String>,
    /// Verify every tensor's CRC-32 at load.
    pub verify_checksums: bool,
    /// Most GMAC per image the model may need (`None`: the library's default, 250).
    pub max_gmac: Option<u64>,
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
        let keep_float = match &self.keep_float {
            Some(list) => {
                levit::KeepFloat::parse(list).map_err(|e| anyhow!("--keep-float {list}: {e}"))?
            }
            None => levit::KeepFloat::none(),
        };
        Ok(ModelOptions {
            isa,
            precision,
            keep_float,
            verify_checksums: self.verify_checksums,
            max_macs: self
                .max_gmac
                .map_or(levit::DEFAULT_MAX_MACS, |g| g.saturating_mul(1_000_000_000)),
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
        levit::Error::Format(FormatError::NotLevit(why) | FormatError::Container(why)) => {
            match checkpoint_kind(path) {
                Some(kind) => anyhow!(
                    "{shown} is {kind}, not a levit model: convert it first with \
                     `levit-weights convert {shown} -o model.lvt` ({why})"
                ),
                None => anyhow!(
                    "{shown} is not a levit model file: convert checkpoints with \
                     `levit-weights convert` ({why})"
                ),
            }
        }
        other => anyhow!("model {shown}: {other}"),
    }
}

/// What kind of PyTorch checkpoint `path` looks like from its first bytes, if any: a
/// safetensors file (8-byte little-endian header length, then a JSON object), a
/// `torch.save` zip archive or a legacy pickle.
fn checkpoint_kind(path: &Path) -> Option<&'static str> {
    use std::io::Read;
    let mut head = [0u8; 9];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    match head {
        [.., b'{'] => Some("a safetensors checkpoint"),
        [b'P', b'K', 3, 4, ..] => Some("a PyTorch checkpoint"),
        [0x80, 2..=5, ..] => Some("a PyTorch checkpoint (pickle)"),
        _ => None,
    }
}
