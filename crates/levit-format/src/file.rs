//! Opening and validating a weight file.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use safetensors::{Dtype as StDtype, SafeTensorError, SafeTensors};

use crate::{
    Dtype, FormatError, LoadMode, StorageBytes, ALIGNMENT, FORMAT_VERSION, MAGIC,
    MIN_FORMAT_VERSION,
};

/// How to open a weight file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Map or copy the bytes.
    pub mode: LoadMode,
    /// Check every tensor's CRC-32 (reads every byte once: about 10 ms per 100 MB;
    /// off by default so a load only maps the file). The header checks (bounds,
    /// alignment, dtypes, config checksum) always run.
    pub verify_checksums: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            mode: LoadMode::Mmap,
            verify_checksums: false,
        }
    }
}

/// One tensor's entry in the table, with an absolute byte range into the file.
#[derive(Clone, Debug)]
struct TensorEntry {
    name: String,
    shape: Vec<usize>,
    dtype: Dtype,
    begin: usize,
    end: usize,
    crc32: u32,
}

/// A borrowed tensor: name, shape, dtype and the data bytes living in the file.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    /// Tensor name.
    pub name: &'a str,
    /// Shape as stored.
    pub shape: &'a [usize],
    /// Element type.
    pub dtype: Dtype,
    /// Data bytes (little-endian), 64-byte aligned, exactly
    /// `product(shape) * dtype.size()` long.
    pub bytes: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// The data as f32s: `Some` only when the dtype is F32.
    pub fn f32(&self) -> Option<&'a [f32]> {
        match self.dtype {
            Dtype::F32 => bytemuck::try_cast_slice(self.bytes).ok(),
            _ => None,
        }
    }

    /// The data as raw bf16 bit patterns (the upper half of an f32): `Some` only when
    /// the dtype is BF16.
    pub fn bf16(&self) -> Option<&'a [u16]> {
        match self.dtype {
            Dtype::Bf16 => bytemuck::try_cast_slice(self.bytes).ok(),
            _ => None,
        }
    }

    /// The data as signed bytes: `Some` only when the dtype is I8.
    pub fn i8(&self) -> Option<&'a [i8]> {
        match self.dtype {
            Dtype::I8 => bytemuck::try_cast_slice(self.bytes).ok(),
            _ => None,
        }
    }

    /// The data as little-endian `i32`s: `Some` only when the dtype is I32.
    pub fn i32(&self) -> Option<&'a [i32]> {
        match self.dtype {
            Dtype::I32 => bytemuck::try_cast_slice(self.bytes).ok(),
            _ => None,
        }
    }

    /// Number of elements (`product(shape)`).
    pub fn len(&self) -> usize {
        self.bytes.len() / self.dtype.size()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// A validated weight file. Tensor data is used in place (no copy for `Mmap`).
pub struct WeightFile {
    bytes: StorageBytes,
    config_json: String,
    format_version: u32,
    source: Option<String>,
    tensors: Vec<TensorEntry>,
    index: HashMap<String, usize>,
    checksums_verified: bool,
}

impl std::fmt::Debug for WeightFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightFile")
            .field("bytes", &self.bytes.as_slice().len())
            .field("mode", &self.bytes.mode())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl WeightFile {
    /// Opens and validates `path`.
    pub fn open(path: impl AsRef<Path>, options: LoadOptions) -> Result<Self, FormatError> {
        let path = path.as_ref();
        let io = |source| FormatError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if !meta.is_file() {
            return Err(FormatError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        let file = File::open(path).map_err(io)?;
        let bytes = match options.mode {
            LoadMode::Mmap if meta.len() > 0 => {
                // SAFETY: the map is read-only and we never create a `&mut` into it. The
                // remaining risk, another process truncating the file while mapped, is
                // documented on `LoadMode::Mmap`; `LoadMode::Owned` avoids it.
                StorageBytes::Mapped(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?)
            }
            _ => StorageBytes::read_from(&file, meta.len() as usize).map_err(io)?,
        };
        Self::from_storage(bytes, options.verify_checksums)
    }

    /// Validates bytes already in memory (copied into aligned storage).
    pub fn from_bytes(bytes: &[u8], verify_checksums: bool) -> Result<Self, FormatError> {
        let storage = StorageBytes::copy_from(bytes).map_err(|e| {
            FormatError::Container(format!("cannot copy {} bytes: {e}", bytes.len()))
        })?;
        Self::from_storage(storage, verify_checksums)
    }

    fn from_storage(bytes: StorageBytes, verify_checksums: bool) -> Result<Self, FormatError> {
        let buf = bytes.as_slice();
        if buf.len() < 8 {
            return Err(FormatError::Container(format!(
                "file is {} bytes long, too short to hold a header",
                buf.len()
            )));
        }
        let header_len = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
        if header_len > (buf.len() - 8) as u64 {
            return Err(FormatError::Container(format!(
                "header claims {header_len} bytes but the file has only {} after the length field (truncated?)",
                buf.len() - 8
            )));
        }
        let (header_len, metadata) =
            SafeTensors::read_metadata(buf).map_err(|e| diagnose(buf, e))?;
        let data_start = 8 + header_len;
        if !data_start.is_multiple_of(ALIGNMENT) {
            return Err(FormatError::Container(format!(
                "tensor data starts at byte {data_start}, not a multiple of {ALIGNMENT}"
            )));
        }

        let meta = metadata
            .metadata()
            .as_ref()
            .ok_or_else(|| FormatError::NotLevit("no __metadata__ in the header".into()))?;
        let get = |key: &str| {
            meta.get(key)
                .ok_or_else(|| FormatError::metadata(key, "missing"))
        };
        match meta.get("format") {
            Some(m) if m == MAGIC => {}
            Some(m) => {
                return Err(FormatError::NotLevit(format!(
                    "format is {m:?}, not {MAGIC:?}"
                )))
            }
            None => {
                return Err(FormatError::NotLevit(
                    "no `format` entry in __metadata__".into(),
                ))
            }
        }
        let version_text = get("format_version")?;
        let format_version = match version_text.trim().parse::<u32>() {
            Ok(v) if (MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&v) => v,
            _ => {
                return Err(FormatError::UnsupportedVersion {
                    found: version_text.clone(),
                    supported: FORMAT_VERSION,
                })
            }
        };
        let config_json = get("config")?.clone();
        let config_crc = parse_crc("config_crc32", get("config_crc32")?)?;
        let actual = crc32fast::hash(config_json.as_bytes());
        if actual != config_crc {
            return Err(FormatError::ConfigChecksum {
                expected: config_crc,
                actual,
            });
        }
        let mut checksums = parse_checksums(get("checksums")?)?;

        let mut tensors = Vec::with_capacity(metadata.tensors().len());
        let mut index = HashMap::new();
        for name in metadata.offset_keys() {
            let info = metadata
                .info(&name)
                .ok_or_else(|| FormatError::Container(format!("tensor `{name}` vanished")))?;
            let dtype = match info.dtype {
                StDtype::F32 => Dtype::F32,
                StDtype::BF16 => Dtype::Bf16,
                StDtype::I8 => Dtype::I8,
                StDtype::I32 => Dtype::I32,
                other => {
                    return Err(FormatError::Dtype {
                        tensor: name,
                        dtype: format!("{other:?}"),
                    })
                }
            };
            if !dtype.allowed_in(format_version) {
                return Err(FormatError::DtypeVersion {
                    tensor: name,
                    dtype,
                    version: format_version,
                });
            }
            let (begin, end) = (
                data_start + info.data_offsets.0,
                data_start + info.data_offsets.1,
            );
            // safetensors checked `end - begin == product(shape) * size`; check it again
            // here so that the views below can rely on it whatever that crate does.
            let expected = info
                .shape
                .iter()
                .try_fold(dtype.size(), |n, &d| n.checked_mul(d));
            if expected != Some(end - begin) {
                return Err(FormatError::TensorSize {
                    tensor: name,
                    dtype,
                    shape: info.shape.clone(),
                    expected: expected.unwrap_or(usize::MAX),
                    found: end - begin,
                });
            }
            if !begin.is_multiple_of(ALIGNMENT) {
                return Err(FormatError::Misaligned {
                    tensor: name,
                    offset: begin,
                });
            }
            let crc32 = checksums.remove(&name).ok_or_else(|| {
                FormatError::ChecksumTable(format!("no checksum for tensor `{name}`"))
            })?;
            index.insert(name.clone(), tensors.len());
            tensors.push(TensorEntry {
                name,
                shape: info.shape.clone(),
                dtype,
                begin,
                end,
                crc32,
            });
        }
        // Every start is aligned and the tensors are contiguous, so only the last one
        // can be unpadded; the file must end on a whole 64-byte block too.
        if let Some(t) = tensors
            .iter()
            .find(|t| !(t.end - t.begin).is_multiple_of(ALIGNMENT))
        {
            return Err(FormatError::Unpadded {
                tensor: t.name.clone(),
                bytes: t.end - t.begin,
            });
        }
        if let Some(extra) = checksums.keys().min() {
            return Err(FormatError::ChecksumTable(format!(
                "checksum for `{extra}`, which is not a tensor in the file"
            )));
        }
        let source = meta.get("source").cloned();
        let file = WeightFile {
            bytes,
            config_json,
            format_version,
            source,
            tensors,
            index,
            checksums_verified: false,
        };
        if verify_checksums {
            file.verify_checksums()?;
            return Ok(WeightFile {
                checksums_verified: true,
                ..file
            });
        }
        Ok(file)
    }

    /// Recomputes every tensor's CRC-32 and compares it with the header.
    pub fn verify_checksums(&self) -> Result<(), FormatError> {
        for t in &self.tensors {
            let actual = crc32fast::hash(&self.bytes.as_slice()[t.begin..t.end]);
            if actual != t.crc32 {
                return Err(FormatError::Checksum {
                    tensor: t.name.clone(),
                    expected: t.crc32,
                    actual,
                });
            }
        }
        Ok(())
    }

    /// Whether the tensor checksums were verified at load.
    pub fn checksums_verified(&self) -> bool {
        self.checksums_verified
    }

    /// The model config (JSON text).
    pub fn config_json(&self) -> &str {
        &self.config_json
    }

    /// The format version of the file.
    pub fn format_version(&self) -> u32 {
        self.format_version
    }

    /// The `source` note written by the converter, if any.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> usize {
        self.bytes.as_slice().len()
    }

    /// Whether the bytes are mapped or owned.
    pub fn mode(&self) -> LoadMode {
        self.bytes.mode()
    }

    /// Looks a tensor up by name.
    pub fn tensor(&self, name: &str) -> Option<TensorView<'_>> {
        self.index.get(name).map(|&i| self.view(&self.tensors[i]))
    }

    /// Position of a tensor in the table, for repeated cheap access via [`Self::tensor_at`].
    pub fn tensor_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The tensor at a position returned by [`Self::tensor_index`].
    ///
    /// # Panics
    /// If `i` is not below [`Self::tensor_count`].
    pub fn tensor_at(&self, i: usize) -> TensorView<'_> {
        self.view(&self.tensors[i])
    }

    /// Number of tensors.
    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    /// All tensors, in file order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorView<'_>> {
        self.tensors.iter().map(|t| self.view(t))
    }

    /// How many tensors the file stores in each dtype: the dtypes present, in the
    /// order of [`Dtype::ALL`] (F32, BF16, I8, I32).
    pub fn precision_summary(&self) -> Vec<(Dtype, usize)> {
        Dtype::ALL
            .into_iter()
            .map(|d| (d, self.tensors.iter().filter(|t| t.dtype == d).count()))
            .filter(|&(_, n)| n > 0)
            .collect()
    }

    fn view<'a>(&'a self, t: &'a TensorEntry) -> TensorView<'a> {
        // Begin/end are 64-byte aligned offsets into 64-byte aligned storage and the
        // load proved `end - begin == dtype.size() * elements`, so the typed views'
        // casts cannot fail.
        TensorView {
            name: &t.name,
            shape: &t.shape,
            dtype: t.dtype,
            bytes: &self.bytes.as_slice()[t.begin..t.end],
        }
    }
}

fn parse_crc(key: &str, text: &str) -> Result<u32, FormatError> {
    if text.len() != 8 {
        return Err(FormatError::metadata(
            key,
            format!("{text:?} is not 8 hex digits"),
        ));
    }
    u32::from_str_radix(text, 16)
        .map_err(|_| FormatError::metadata(key, format!("{text:?} is not 8 hex digits")))
}

fn parse_checksums(text: &str) -> Result<HashMap<String, u32>, FormatError> {
    let map: HashMap<String, String> = serde_json::from_str(text).map_err(|e| {
        FormatError::metadata("checksums", format!("not a JSON map of strings: {e}"))
    })?;
    map.into_iter()
        .map(|(name, crc)| {
            Ok((
                name.clone(),
                parse_crc(&format!("checksums[{name}]"), &crc)?,
            ))
        })
        .collect()
}

/// The error for a header safetensors refused: a typed error naming the tensor when the
/// header is JSON and one of its tensors has an unknown dtype or a byte span that does
/// not match its shape and dtype (what safetensors reports without a name), else the
/// container error.
fn diagnose(buf: &[u8], e: SafeTensorError) -> FormatError {
    let named = match e {
        SafeTensorError::InvalidHeaderDeserialization(_)
        | SafeTensorError::TensorInvalidInfo
        | SafeTensorError::MisalignedSlice => named_tensor_error(buf),
        _ => None,
    };
    named.unwrap_or_else(|| container_error(e))
}

fn named_tensor_error(buf: &[u8]) -> Option<FormatError> {
    use serde_json::Value;
    let len = usize::try_from(u64::from_le_bytes(buf.get(..8)?.try_into().ok()?)).ok()?;
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(buf.get(8..8usize.checked_add(len)?)?).ok()?;
    let mut entries: Vec<(u64, &String, &Value)> = header
        .iter()
        .filter(|(name, _)| name.as_str() != "__metadata__")
        .map(|(name, info)| {
            let begin = info
                .pointer("/data_offsets/0")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            (begin, name, info)
        })
        .collect();
    // The order safetensors validates in: by offset (ties and garbage by name).
    entries.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    for (_, name, info) in entries {
        let Some(text) = info.get("dtype").and_then(Value::as_str) else {
            continue;
        };
        let Some(dtype) = Dtype::from_name(text) else {
            return Some(FormatError::Dtype {
                tensor: name.clone(),
                dtype: text.to_string(),
            });
        };
        let shape: Option<Vec<usize>> = info.get("shape").and_then(Value::as_array).and_then(|s| {
            s.iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect()
        });
        let offsets = info.get("data_offsets").and_then(Value::as_array);
        let span = offsets.filter(|o| o.len() == 2).and_then(|o| {
            let begin = usize::try_from(o[0].as_u64()?).ok()?;
            let end = usize::try_from(o[1].as_u64()?).ok()?;
            end.checked_sub(begin)
        });
        let (Some(shape), Some(found)) = (shape, span) else {
            continue;
        };
        let Some(expected) = shape
            .iter()
            .try_fold(dtype.size(), |n, &d| n.checked_mul(d))
        else {
            continue;
        };
        if expected != found {
            return Some(FormatError::TensorSize {
                tensor: name.clone(),
                dtype,
                shape,
                expected,
                found,
            });
        }
    }
    None
}

fn container_error(e: SafeTensorError) -> FormatError {
    let text = match e {
        SafeTensorError::MetadataIncompleteBuffer => {
            "tensor data does not end exactly at the end of the file (truncated or trailing bytes)"
                .to_string()
        }
        SafeTensorError::InvalidOffset(name) => format!(
            "tensor `{name}` has data_offsets that overlap another tensor, leave a gap, or run backwards"
        ),
        SafeTensorError::TensorInvalidInfo => {
            "a tensor's shape does not match its byte size".to_string()
        }
        SafeTensorError::ValidationOverflow => "a tensor's shape overflows".to_string(),
        SafeTensorError::HeaderTooLarge => "header length is larger than 100 MB".to_string(),
        other => format!("bad header: {other}"),
    };
    FormatError::Container(text)
}
