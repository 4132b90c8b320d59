//! Reading and writing f32 `.npy` tensors with clear errors, from any file a user can
//! be handed.
//!
//! The header is parsed by a small bounded parser ([`parse_header`]), not a general
//! Python-literal evaluator: its work is linear in the header's length, which is capped
//! at [`MAX_HEADER_LEN`] bytes (numpy's own cap for untrusted files), and literals nest
//! at most [`MAX_DEPTH`] deep. It accepts what numpy writes (format versions 1.0, 2.0
//! and 3.0, any key order, any whitespace and padding) and refuses what numpy's
//! `_read_array_header` refuses: a header that is not a dictionary literal, keys other
//! than exactly `descr`, `fortran_order` and `shape`, a shape that is not a tuple of
//! integers, a `fortran_order` that is not a bool, names or expressions anywhere.
//!
//! Every size that comes from a file is checked arithmetic, the data size is compared
//! with the file's before anything is allocated, and the data buffer is allocated
//! fallibly. [`read_f32`] opens without blocking and refuses anything but a regular
//! file (FIFOs, devices, directories, also behind symlinks). [`write_f32`] writes
//! atomically: a temporary file in the target's folder, synced, then renamed over the
//! target, so a failed write never leaves a truncated `.npy` behind.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{anyhow, bail, Context, Result};

use crate::classify::io_reason;

/// The most header bytes (the dictionary literal and its padding) accepted, as numpy's
/// `max_header_size` default for untrusted input.
pub const MAX_HEADER_LEN: usize = 10_000;

/// The deepest nesting of literals (tuples, lists, dicts) accepted in a header. numpy
/// writes at most 4 (a nested structured dtype goes deeper, but is refused anyway).
pub const MAX_DEPTH: usize = 16;

/// The most dimensions accepted (numpy 2's `NPY_MAXDIMS`).
pub const MAX_DIMS: usize = 64;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// A dense f32 tensor read from `.npy`: C-order data and its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Row-major data.
    pub data: Vec<f32>,
}

/// What a `.npy` header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Format version (major, minor): (1, 0), (2, 0) or (3, 0).
    pub version: (u8, u8),
    /// The dtype: the string for a plain dtype (`<f4`), the literal's text (control
    /// characters escaped) for a structured one (`[('a', '<f4')]`).
    pub descr: String,
    /// Whether the data is in Fortran (column-major) order.
    pub fortran_order: bool,
    /// Dimensions, as the file states them.
    pub shape: Vec<u64>,
    /// Where the data starts: magic, version, length field and header.
    pub data_offset: usize,
}

impl Header {
    /// Checks that the header describes little-endian f32 data in C order and returns
    /// the element count and the data's size in bytes (checked arithmetic).
    pub fn f32_layout(&self) -> Result<(usize, u64)> {
        let little = cfg!(target_endian = "little");
        let ok = match self.descr.as_str() {
            "<f4" | "<f" => true,
            // Native order, as numpy reads it on this machine.
            "=f4" | "|f4" | "f4" | "f" | "float32" => little,
            _ => false,
        };
        if !ok {
            if self.descr == ">f4" {
                bail!(
                    "dtype is >f4 (big-endian), expected float32 (<f4); convert with x.astype('<f4')"
                );
            }
            bail!(
                "dtype is {}, expected float32 (<f4); convert with x.astype(np.float32)",
                self.descr
            );
        }
        if self.fortran_order {
            bail!("Fortran-ordered arrays are not supported; save a C-contiguous array");
        }
        let too_big = || {
            anyhow!(
                "shape {:?} is too large: its size overflows this machine's arithmetic",
                self.shape
            )
        };
        let elements = if self.shape.contains(&0) {
            0
        } else {
            self.shape
                .iter()
                .try_fold(1u64, |n, &d| n.checked_mul(d))
                .ok_or_else(too_big)?
        };
        let bytes = elements.checked_mul(4).ok_or_else(too_big)?;
        let elements = usize::try_from(elements).map_err(|_| too_big())?;
        usize::try_from(bytes).map_err(|_| too_big())?;
        Ok((elements, bytes))
    }
}

/// Reads a little-endian f32, C-order `.npy` file: a regular file only (after
/// following symlinks), opened without blocking, read no further than its header says.
pub fn read_f32(path: &Path) -> Result<Tensor> {
    let (file, len) = open_regular(path)?;
    read_from(file, len).with_context(|| path.display().to_string())
}

/// Decodes a whole `.npy` file held in memory, with the checks of [`read_f32`].
pub fn decode_f32(bytes: &[u8]) -> Result<Tensor> {
    read_from(bytes, bytes.len() as u64)
}

/// Opens `path` for reading without blocking on open (a FIFO with no writer) and
/// refuses anything but a regular file (`levit::preprocess::open_regular_file`, the
/// rule for every input file). Returns the file and its length.
fn open_regular(path: &Path) -> Result<(File, u64)> {
    use levit::preprocess::{open_regular_file, OpenError};
    match open_regular_file(path) {
        Ok((file, meta)) => Ok((file, meta.len())),
        Err(OpenError::Io(e)) => bail!("cannot open {}: {}", path.display(), io_reason(&e)),
        Err(OpenError::NotAFile(kind)) => {
            bail!("{} is not a regular file ({kind})", path.display())
        }
    }
}

/// Reads a `.npy` file of `len` bytes from `r`: the header, then exactly the data it
/// describes, allocated only once the size is known to match the file.
fn read_from<R: Read>(mut r: R, len: u64) -> Result<Tensor> {
    // Magic, version, and the 2- or 4-byte header length.
    let mut prefix = [0u8; 12];
    let short = |what: &str| anyhow!("not a valid .npy file: truncated {what} ({len} bytes)");
    read_exact(&mut r, &mut prefix[..8]).map_err(|e| e.or(|| short("header")))?;
    let (version, len_bytes) = parse_magic(&prefix[..8])?;
    read_exact(&mut r, &mut prefix[8..8 + len_bytes]).map_err(|e| e.or(|| short("header")))?;
    let header_len = header_len(&prefix[8..8 + len_bytes]);
    if header_len > MAX_HEADER_LEN {
        bail!(
            "not a valid .npy file: the header is {header_len} bytes, more than the \
             {MAX_HEADER_LEN} accepted"
        );
    }
    let data_offset = 8 + len_bytes + header_len;
    if data_offset as u64 > len {
        return Err(short("header"));
    }
    let mut text = vec![0u8; header_len];
    read_exact(&mut r, &mut text).map_err(|e| e.or(|| short("header")))?;
    let header = parse_dict(&text, version, data_offset)?;
    let (elements, bytes) = header.f32_layout()?;
    let available = len - data_offset as u64;
    if bytes > available {
        bail!("truncated: header says {bytes} bytes of data, file has {available}");
    }
    if bytes < available {
        bail!(
            "{} bytes after the {bytes} bytes of data the header describes (several arrays \
             in one file?)",
            available - bytes
        );
    }
    let mut data: Vec<f32> = Vec::new();
    data.try_reserve_exact(elements)
        .map_err(|_| anyhow!("cannot allocate {bytes} bytes for the data"))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut remaining = bytes as usize;
    while remaining > 0 {
        let n = remaining.min(buf.len());
        read_exact(&mut r, &mut buf[..n]).map_err(|e| {
            e.or(|| anyhow!("truncated: the file ended inside the data (did it shrink?)"))
        })?;
        data.extend(
            buf[..n]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        remaining -= n;
    }
    let shape = header
        .shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<Vec<usize>, _>>()
        .map_err(|_| anyhow!("shape {:?} does not fit this machine", header.shape))?;
    Ok(Tensor { shape, data })
}

/// A read failure: the stream ended early, or another I/O error.
enum ReadError {
    Eof,
    Io(std::io::Error),
}

impl ReadError {
    fn or(self, eof: impl FnOnce() -> anyhow::Error) -> anyhow::Error {
        match self {
            ReadError::Eof => eof(),
            ReadError::Io(e) => anyhow!("read error: {}", io_reason(&e)),
        }
    }
}

fn read_exact<R: Read>(r: &mut R, buf: &mut [u8]) -> std::result::Result<(), ReadError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == ErrorKind::UnexpectedEof {
            ReadError::Eof
        } else {
            ReadError::Io(e)
        }
    })
}

/// Checks the magic and version (`prefix`: the first 8 bytes); returns the version and
/// the size of the header-length field.
fn parse_magic(prefix: &[u8]) -> Result<((u8, u8), usize)> {
    if prefix.len() < 8 || &prefix[..6] != MAGIC {
        bail!("not a valid .npy file (no \\x93NUMPY magic)");
    }
    let version = (prefix[6], prefix[7]);
    let len_bytes = match version {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        (major, minor) => {
            bail!(
                "not a valid .npy file: format version {major}.{minor} (1.0, 2.0 and 3.0 are read)"
            )
        }
    };
    Ok((version, len_bytes))
}

fn header_len(field: &[u8]) -> usize {
    field
        .iter()
        .rev()
        .fold(0usize, |n, &b| (n << 8) | usize::from(b))
}

/// Parses the header of a `.npy` file whose first bytes are `bytes` (the data may
/// follow or not): magic, version, header length (at most [`MAX_HEADER_LEN`]) and the
/// dictionary literal. Work is linear in the header's length.
pub fn parse_header(bytes: &[u8]) -> Result<Header> {
    let (version, len_bytes) = parse_magic(bytes.get(..8).unwrap_or(bytes))?;
    let field = bytes
        .get(8..8 + len_bytes)
        .ok_or_else(|| anyhow!("not a valid .npy file: truncated header"))?;
    let header_len = header_len(field);
    if header_len > MAX_HEADER_LEN {
        bail!(
            "not a valid .npy file: the header is {header_len} bytes, more than the \
             {MAX_HEADER_LEN} accepted"
        );
    }
    let data_offset = 8 + len_bytes + header_len;
    let text = bytes
        .get(8 + len_bytes..data_offset)
        .ok_or_else(|| anyhow!("not a valid .npy file: truncated header"))?;
    parse_dict(text, version, data_offset)
}

/// A parsed literal.
enum Lit {
    Str(String),
    /// A non-negative integer; `None` when it does not fit in a u64.
    Int(Option<u64>),
    NegInt,
    Bool(bool),
    None,
    Tuple(Vec<Lit>),
    List,
    Dict(Vec<(Lit, Lit, std::ops::Range<usize>)>),
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    utf8: bool,
    /// Python 2 long suffixes (`3L`), which numpy strips for versions 1.0 and 2.0.
    long_suffix: bool,
}

fn bad(msg: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("not a valid .npy file: header {msg}")
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        self.ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{}'", c as char)))
        }
    }

    fn unexpected(&self, wanted: &str) -> anyhow::Error {
        match self.peek() {
            None => bad(format!("ends where {wanted} was expected")),
            Some(c) => bad(format!(
                "has {} at byte {} where {wanted} was expected",
                escape(&[c]),
                self.pos
            )),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Lit> {
        self.ws();
        let Some(c) = self.peek() else {
            return Err(self.unexpected("a value"));
        };
        let open = matches!(c, b'{' | b'(' | b'[');
        if open && depth >= MAX_DEPTH {
            return Err(bad(format!("nests literals more than {MAX_DEPTH} deep")));
        }
        match c {
            b'{' => {
                self.pos += 1;
                let mut entries = Vec::new();
                loop {
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        return Ok(Lit::Dict(entries));
                    }
                    let key = self.value(depth + 1)?;
                    self.expect(b':')?;
                    self.ws();
                    let start = self.pos;
                    let value = self.value(depth + 1)?;
                    entries.push((key, value, start..self.pos));
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {}
                        _ => return Err(self.unexpected("',' or '}'")),
                    }
                }
            }
            b'(' | b'[' => {
                self.pos += 1;
                let close = if c == b'(' { b')' } else { b']' };
                let mut items = Vec::new();
                let mut comma = false;
                loop {
                    self.ws();
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        break;
                    }
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.peek() {
                        Some(b',') => {
                            self.pos += 1;
                            comma = true;
                        }
                        Some(x) if x == close => {}
                        _ => return Err(self.unexpected(&format!("',' or '{}'", close as char))),
                    }
                }
                if c == b'(' {
                    // `(x)` is `x`; `(x,)` and `()` are tuples.
                    if items.len() == 1 && !comma {
                        return Ok(items.pop().unwrap_or(Lit::None));
                    }
                    Ok(Lit::Tuple(items))
                } else {
                    Ok(Lit::List)
                }
            }
            b'\'' | b'"' => self.string(c),
            b'-' | b'+' | b'0'..=b'9' => self.number(),
            _ if c.is_ascii_alphabetic() || c == b'_' => {
                let start = self.pos;
                while matches!(self.peek(), Some(x) if x.is_ascii_alphanumeric() || x == b'_') {
                    self.pos += 1;
                }
                match &self.s[start..self.pos] {
                    b"True" => Ok(Lit::Bool(true)),
                    b"False" => Ok(Lit::Bool(false)),
                    b"None" => Ok(Lit::None),
                    name => Err(bad(format!(
                        "holds the name {}, not a literal",
                        escape(name)
                    ))),
                }
            }
            _ => Err(self.unexpected("a literal")),
        }
    }

    fn string(&mut self, quote: u8) -> Result<Lit> {
        let start = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(bad(format!("has an unterminated string at byte {start}")));
            };
            self.pos += 1;
            match c {
                b'\n' | b'\r' => {
                    return Err(bad(format!("has an unterminated string at byte {start}")))
                }
                b'\\' => {
                    let Some(e) = self.peek() else { continue };
                    self.pos += 1;
                    match e {
                        b'\\' | b'\'' | b'"' => out.push(e),
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'0' => out.push(0),
                        _ => out.extend([b'\\', e]),
                    }
                }
                _ if c == quote => break,
                _ => out.push(c),
            }
        }
        let s = if self.utf8 {
            String::from_utf8(out).map_err(|_| bad("has a string that is not UTF-8"))?
        } else {
            out.iter().map(|&b| char::from(b)).collect() // latin-1
        };
        Ok(Lit::Str(s))
    }

    fn number(&mut self) -> Result<Lit> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.pos += 1;
            self.ws();
        }
        let digits = self.pos;
        while matches!(self.peek(), Some(x) if x.is_ascii_alphanumeric() || x == b'_' || x == b'.')
        {
            self.pos += 1;
        }
        let mut token = &self.s[digits..self.pos];
        if self.long_suffix {
            if let Some(t) = token.strip_suffix(b"L").or(token.strip_suffix(b"l")) {
                token = t;
            }
        }
        if token.is_empty() || !token.iter().all(u8::is_ascii_digit) {
            return Err(bad(format!(
                "holds {}, not an integer",
                escape(&self.s[start..self.pos])
            )));
        }
        if negative && token.iter().any(|&d| d != b'0') {
            return Ok(Lit::NegInt);
        }
        let value = token.iter().try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        });
        Ok(Lit::Int(value))
    }
}

/// Escapes a header fragment for an error message: printable ASCII as is, the rest
/// as `\xNN`.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        if b == b' ' || b.is_ascii_graphic() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Parses the header's dictionary literal (`text`: the bytes after the length field).
fn parse_dict(text: &[u8], version: (u8, u8), data_offset: usize) -> Result<Header> {
    let mut p = Parser {
        s: text,
        pos: 0,
        utf8: version.0 >= 3,
        long_suffix: version.0 <= 2,
    };
    let top = p.value(0)?;
    p.ws();
    if p.pos != text.len() {
        return Err(p.unexpected("the end of the header"));
    }
    let Lit::Dict(entries) = top else {
        return Err(bad("is not a dictionary"));
    };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (key, value, span) in entries {
        let Lit::Str(key) = key else {
            return Err(bad("has a key that is not a string"));
        };
        let slot = match key.as_str() {
            "descr" => &mut descr,
            "fortran_order" => &mut fortran,
            "shape" => &mut shape,
            _ => {
                return Err(bad(format!(
                    "has the key '{}'; the keys are 'descr', 'fortran_order' and 'shape'",
                    escape(key.as_bytes())
                )))
            }
        };
        if slot.is_some() {
            return Err(bad(format!("has the key '{key}' twice")));
        }
        *slot = Some((value, escape(&text[span])));
    }
    let missing = |k: &str| bad(format!("lacks the key '{k}'"));
    let (descr, descr_text) = descr.ok_or_else(|| missing("descr"))?;
    let (fortran, fortran_text) = fortran.ok_or_else(|| missing("fortran_order"))?;
    let (shape, shape_text) = shape.ok_or_else(|| missing("shape"))?;
    let descr = match descr {
        Lit::Str(s) => escape(s.as_bytes()),
        Lit::List => descr_text,
        _ => return Err(bad(format!("descr is not a dtype: {descr_text}"))),
    };
    let Lit::Bool(fortran_order) = fortran else {
        return Err(bad(format!("fortran_order is not a bool: {fortran_text}")));
    };
    let not_shape = || bad(format!("shape is not a tuple of integers: {shape_text}"));
    let Lit::Tuple(dims) = shape else {
        return Err(not_shape());
    };
    if dims.len() > MAX_DIMS {
        return Err(bad(format!(
            "shape has {} dimensions, more than {MAX_DIMS}",
            dims.len()
        )));
    }
    let shape = dims
        .into_iter()
        .map(|d| match d {
            Lit::Int(Some(d)) => Ok(d),
            Lit::Int(None) => Err(bad(format!(
                "shape has a dimension too large for 64 bits: {shape_text}"
            ))),
            Lit::NegInt => Err(bad(format!("shape has a negative dimension: {shape_text}"))),
            _ => Err(not_shape()),
        })
        .collect::<Result<Vec<u64>>>()?;
    Ok(Header {
        version,
        descr,
        fortran_order,
        shape,
        data_offset,
    })
}

/// The bytes numpy's `np.save` writes before the data of a little-endian f32 C-order
/// array of `shape`: version 1.0 (2.0 for a header over 64 KiB), padded with spaces
/// and a newline so the data starts at a multiple of 64 bytes.
pub fn encode_header(shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        _ => {
            let d: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", d.join(", "))
        }
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    let (version, prefix) = if dict.len() + 11 + 63 <= usize::from(u16::MAX) {
        (1u8, 10)
    } else {
        (2u8, 12)
    };
    while !(prefix + dict.len() + 1).is_multiple_of(64) {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend([version, 0]);
    if version == 1 {
        out.extend((dict.len() as u16).to_le_bytes());
    } else {
        out.extend((dict.len() as u32).to_le_bytes());
    }
    out.extend(dict.as_bytes());
    out
}

/// Writes `data` with `shape` as a little-endian f32 C-order `.npy` file, atomically:
/// into a temporary file in the same folder (`.{name}.{pid}-{n}.tmp`), flushed and
/// synced, then renamed over `path` (over a symlink's target, when `path` is one). On
/// any error the temporary file is removed and `path` is left as it was. A `path` that
/// exists and is not a regular file (`/dev/stdout`, a FIFO) is written directly.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let elements = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if elements != Some(data.len()) {
        bail!(
            "cannot write {}: {} values do not fill shape {shape:?}",
            path.display(),
            data.len()
        );
    }
    let cannot = || format!("cannot write {}", path.display());
    // Follow a symlink, so the link stays and its target is replaced.
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).ok(),
        _ => None,
    }
    .unwrap_or_else(|| path.to_path_buf());
    if let Ok(meta) = std::fs::metadata(&target) {
        if !meta.is_file() {
            let file = OpenOptions::new()
                .write(true)
                .open(&target)
                .with_context(cannot)?;
            write_data(file, shape, data)
                .map_err(lower)
                .with_context(cannot)?;
            return Ok(());
        }
    }
    let name = target
        .file_name()
        .ok_or_else(|| anyhow!("cannot write {}: not a file name", path.display()))?;
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut tmp = TempFile {
        path: dir.join(format!(
            ".{}.{}-{}.tmp",
            name.to_string_lossy(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        )),
        renamed: false,
    };
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp.path)
        .map_err(lower)
        .with_context(cannot)?;
    let file = write_data(file, shape, data)
        .map_err(lower)
        .with_context(cannot)?;
    file.sync_all().map_err(lower).with_context(cannot)?;
    drop(file);
    std::fs::rename(&tmp.path, &target)
        .map_err(lower)
        .with_context(cannot)?;
    tmp.renamed = true;
    // Make the rename durable; a folder that cannot be synced is no error.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// An OS error as the CLI prints it: lowercase, without the code.
fn lower(e: std::io::Error) -> anyhow::Error {
    anyhow!("{}", io_reason(&e))
}

/// The temporary file of [`write_f32`], removed on drop unless renamed.
struct TempFile {
    path: PathBuf,
    renamed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn write_data(file: File, shape: &[usize], data: &[f32]) -> std::io::Result<File> {
    let mut w = BufWriter::with_capacity(1 << 16, file);
    w.write_all(&encode_header(shape))?;
    for chunk in data.chunks(1 << 14) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
        w.write_all(&bytes)?;
    }
    w.into_inner().map_err(|e| e.into_error())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A version-1.0 file: magic, length, `dict` padded as numpy pads, then `data`.
    fn v1(dict: &str, data: &[u8]) -> Vec<u8> {
        file((1, 0), dict.as_bytes(), data)
    }

    fn file(version: (u8, u8), dict: &[u8], data: &[u8]) -> Vec<u8> {
        let prefix = if version.0 == 1 { 10 } else { 12 };
        let mut text = dict.to_vec();
        while !(prefix + text.len() + 1).is_multiple_of(64) {
            text.push(b' ');
        }
        text.push(b'\n');
        let mut out = MAGIC.to_vec();
        out.extend([version.0, version.1]);
        if version.0 == 1 {
            out.extend((text.len() as u16).to_le_bytes());
        } else {
            out.extend((text.len() as u32).to_le_bytes());
        }
        out.extend(text);
        out.extend(data);
        out
    }

    fn err(bytes: &[u8]) -> String {
        format!("{:#}", decode_f32(bytes).unwrap_err())
    }

    fn floats(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| (i as f32 + 0.5).to_le_bytes())
            .collect()
    }

    /// Headers exactly as numpy 2.4 `np.save` / `format.write_array` writes them.
    #[test]
    fn numpy_written_headers_parse() {
        let pad = |s: &str, total: usize| format!("{s:<w$}\n", w = total - 1);
        type Case = (Vec<u8>, (u8, u8), &'static str, bool, Vec<u64>);
        let cases: Vec<Case> = vec![
            (
                [b"\x93NUMPY\x01\x00v\x00".as_slice(), pad("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 118).as_bytes()].concat(),
                (1, 0), "<f4", false, vec![],
            ),
            (
                [b"\x93NUMPY\x01\x00v\x00".as_slice(), pad("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 118).as_bytes()].concat(),
                (1, 0), "<f4", false, vec![3],
            ),
            (
                [b"\x93NUMPY\x01\x00v\x00".as_slice(), pad("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 2, 2), }", 118).as_bytes()].concat(),
                (1, 0), "<f4", false, vec![1, 3, 2, 2],
            ),
            (
                [b"\x93NUMPY\x02\x00t\x00\x00\x00".as_slice(), pad("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 116).as_bytes()].concat(),
                (2, 0), "<f4", false, vec![2, 3],
            ),
            (
                [b"\x93NUMPY\x03\x00t\x00\x00\x00".as_slice(), pad("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 116).as_bytes()].concat(),
                (3, 0), "<f4", false, vec![2, 3],
            ),
            (
                [b"\x93NUMPY\x01\x00v\x00".as_slice(), pad("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 118).as_bytes()].concat(),
                (1, 0), "<f4", true, vec![2, 3],
            ),
            (
                [b"\x93NUMPY\x01\x00v\x00".as_slice(), pad("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 118).as_bytes()].concat(),
                (1, 0), ">f4", false, vec![2],
            ),
            (
                [b"\x93NUMPY\x01\x00v\x00".as_slice(), pad("{'descr': [('a', '<f4'), ('b', '<i2')], 'fortran_order': False, 'shape': (2,), }", 118).as_bytes()].concat(),
                (1, 0), "[('a', '<f4'), ('b', '<i2')]", false, vec![2],
            ),
            (
                [b"\x93NUMPY\x01\x00v\x00".as_slice(), pad("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }", 118).as_bytes()].concat(),
                (1, 0), "<f4", false, vec![0, 3],
            ),
        ];
        for (bytes, version, descr, fortran, shape) in cases {
            let h = parse_header(&bytes).unwrap();
            assert_eq!(h.version, version);
            assert_eq!(h.descr, descr);
            assert_eq!(h.fortran_order, fortran);
            assert_eq!(h.shape, shape);
            assert_eq!(h.data_offset, bytes.len());
            assert_eq!(h.data_offset % 64, 0);
        }
    }

    #[test]
    fn the_writer_writes_numpys_bytes() {
        let numpy = |s: &str| {
            let mut v = b"\x93NUMPY\x01\x00v\x00".to_vec();
            v.extend(format!("{s:<117}\n").as_bytes());
            v
        };
        assert_eq!(
            encode_header(&[]),
            numpy("{'descr': '<f4', 'fortran_order': False, 'shape': (), }")
        );
        assert_eq!(
            encode_header(&[3]),
            numpy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }")
        );
        assert_eq!(
            encode_header(&[1, 3, 2, 2]),
            numpy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 2, 2), }")
        );
    }

    #[test]
    fn data_round_trips_through_the_parser() {
        for shape in [vec![], vec![3], vec![2, 3], vec![1, 3, 2, 2], vec![0, 3]] {
            let n: usize = shape.iter().product();
            let mut bytes = encode_header(&shape);
            bytes.extend(floats(n));
            let t = decode_f32(&bytes).unwrap();
            assert_eq!(t.shape, shape);
            assert_eq!(t.data, (0..n).map(|i| i as f32 + 0.5).collect::<Vec<_>>());
        }
        // Versions 2.0 and 3.0, other spellings of little-endian float32, any key order,
        // whitespace, double quotes, no trailing comma.
        for (version, dict) in [
            (
                (2, 0),
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
            ),
            (
                (3, 0),
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
            ),
            (
                (1, 0),
                "{'shape':(2,3),'fortran_order':False,'descr':'<f4'}",
            ),
            (
                (1, 0),
                "  {\"descr\" : \"=f4\" ,\n 'fortran_order': False, 'shape': ( 2 , 3 ) }",
            ),
            (
                (1, 0),
                "{'descr': '|f4', 'fortran_order': False, 'shape': (2, 3)}",
            ),
            (
                (1, 0),
                "{'descr': 'float32', 'fortran_order': False, 'shape': (2, 3)}",
            ),
            (
                (1, 0),
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L)}",
            ),
            (
                (2, 0),
                "{'descr': '<f4', 'fortran_order': False, 'shape': ((2), +3)}",
            ),
        ] {
            let t = decode_f32(&file(version, dict.as_bytes(), &floats(6))).unwrap();
            assert_eq!(t.shape, vec![2, 3], "{dict}");
            assert_eq!(t.data[5], 5.5);
        }
    }

    #[test]
    fn nested_literals_are_refused_in_linear_time() {
        // The attack: a header of a few hundred bytes with a deeply nested extra value.
        for (open, close) in [("[", "]"), ("(", ")"), ("{1:", "}"), ("(", ",)")] {
            for depth in [10, 24, 200, 2000] {
                let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
                let dict = format!(
                    "{{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': {nested}}}"
                );
                let bytes = v1(&dict, &floats(2));
                let start = Instant::now();
                let e = err(&bytes);
                assert!(start.elapsed() < Duration::from_secs(1), "{depth}: slow");
                assert!(
                    e.contains("'x'") || e.contains("more than 16 deep"),
                    "{depth}: {e}"
                );
            }
        }
        // As large as accepted, all of it nesting or all of it a value.
        for fill in ["[", "(", "[1,", "'", "1"] {
            let body = fill.repeat(MAX_HEADER_LEN / fill.len() - 1);
            let start = Instant::now();
            assert!(decode_f32(&v1(&body, &[])).is_err());
            assert!(start.elapsed() < Duration::from_secs(1), "{fill}: slow");
        }
        // Within the depth limit, nesting is fine where it is a value (then refused as a
        // shape that is not a tuple of integers).
        let e = err(&v1(
            "{'descr': '<f4', 'fortran_order': False, 'shape': ((((1,),),),)}",
            &[],
        ));
        assert!(
            e.contains("shape is not a tuple of integers: ((((1,),),),)"),
            "{e}"
        );
    }

    #[test]
    fn what_numpy_refuses_is_refused() {
        let cases = [
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}",
                "has the key 'x'",
            ),
            (
                "{'descr': '<f4', 'shape': (2,)}",
                "lacks the key 'fortran_order'",
            ),
            (
                "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
                "twice",
            ),
            (
                "{1: '<f4', 'fortran_order': False, 'shape': (2,)}",
                "key that is not a string",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': [2]}",
                "shape is not a tuple of integers: [2]",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': 2}",
                "shape is not a tuple",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (True,)}",
                "shape is not a tuple",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': ('2',)}",
                "shape is not a tuple",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2.0,)}",
                "2.0, not an integer",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (0x2,)}",
                "0x2, not an integer",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': range(2)}",
                "the name range",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1+1,)}",
                "has + at byte 52",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
                "negative dimension",
            ),
            (
                "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}",
                "fortran_order is not a bool: 0",
            ),
            (
                "{'descr': 4, 'fortran_order': False, 'shape': (2,)}",
                "descr is not a dtype: 4",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} 1",
                "the end of the header",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)",
                "',' or '}'",
            ),
            (
                "{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}",
                "'",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2,),,}",
                "has , at byte 55 where a literal",
            ),
            ("['descr', 'fortran_order', 'shape']", "is not a dictionary"),
            ("__import__('os')", "the name __import__"),
            ("", "a value"),
            (
                "{'descr': '\x1b[2J', 'fortran_order': False, 'shape': (2,)}",
                "dtype is \\x1b[2J",
            ),
        ];
        for (dict, want) in cases {
            let e = err(&v1(dict, &floats(2)));
            assert!(e.contains(want), "{dict}: {e}");
            assert!(!e.contains('\x1b') && !e.contains('\n'), "{e:?}");
        }
        // Python 2 long suffixes only where numpy strips them.
        let e = err(&file(
            (3, 0),
            b"{'descr': '<f4', 'fortran_order': False, 'shape': (2L,)}",
            &floats(2),
        ));
        assert!(e.contains("2L, not an integer"), "{e}");
        // Version 3.0 headers are UTF-8; 1.0 and 2.0 latin-1.
        let e = err(&file(
            (3, 0),
            b"{'descr': '\xff', 'fortran_order': False, 'shape': (2,)}",
            &[],
        ));
        assert!(e.contains("not UTF-8"), "{e}");
        let e = err(&file(
            (1, 0),
            b"{'descr': '\xff', 'fortran_order': False, 'shape': (2,)}",
            &[],
        ));
        assert!(e.contains("dtype is \\xc3\\xbf"), "{e}");
    }

    #[test]
    fn other_dtypes_and_orders_get_clear_messages() {
        let e = err(&v1(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2,)}",
            &[0; 16],
        ));
        assert!(
            e.contains("dtype is <f8, expected float32 (<f4); convert with x.astype(np.float32)"),
            "{e}"
        );
        let e = err(&v1(
            "{'descr': '>f4', 'fortran_order': False, 'shape': (2,)}",
            &[0; 8],
        ));
        assert!(e.contains("big-endian"), "{e}");
        let e = err(&v1(
            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}",
            &[0; 8],
        ));
        assert!(e.contains("dtype is [('a', '<f4')]"), "{e}");
        let e = err(&v1(
            "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3)}",
            &[0; 24],
        ));
        assert!(e.contains("Fortran-ordered"), "{e}");
    }

    #[test]
    fn huge_dimensions_are_errors_not_wraps_or_panics() {
        let dict =
            |shape: &str| format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}}}");
        // 2^61 * 3 * 224 * 224 * 4 wraps to 0 bytes in 64 bits.
        let e = err(&v1(&dict("(2305843009213693952, 3, 224, 224)"), &[]));
        assert!(e.contains("is too large"), "{e}");
        let e = err(&v1(&dict("(4611686018427387904,)"), &[]));
        assert!(e.contains("is too large"), "{e}");
        let e = err(&v1(
            &dict("(18446744073709551615, 18446744073709551615)"),
            &[],
        ));
        assert!(e.contains("is too large"), "{e}");
        let e = err(&v1(&dict("(18446744073709551616,)"), &[]));
        assert!(e.contains("too large for 64 bits"), "{e}");
        let e = err(&v1(&dict(&format!("(1{},)", "0".repeat(5000))), &[]));
        assert!(e.contains("too large for 64 bits"), "{e}");
        // Consistent arithmetic, but more than the file holds: nothing is allocated.
        let e = err(&v1(&dict("(1099511627776, 3, 224, 224)"), &floats(4)));
        assert!(
            e.contains("truncated: header says 662029145223462912 bytes of data, file has 16"),
            "{e}"
        );
        // A zero dimension makes the rest irrelevant.
        let t = decode_f32(&v1(&dict("(0, 18446744073709551615)"), &[])).unwrap();
        assert_eq!(t.shape, vec![0, usize::MAX]);
        assert!(t.data.is_empty());
        let many = format!("({})", "1, ".repeat(65));
        let e = err(&v1(&dict(&many), &floats(1)));
        assert!(e.contains("65 dimensions, more than 64"), "{e}");
    }

    #[test]
    fn truncated_and_malformed_prefixes() {
        let good = {
            let mut b = encode_header(&[2, 3]);
            b.extend(floats(6));
            b
        };
        // Every prefix is an error, never a panic; the short ones say truncated.
        for n in 0..good.len() {
            let e = err(&good[..n]);
            assert!(e.contains("truncated") || e.contains("magic"), "{n}: {e}");
        }
        let e = err(&good[..good.len() - 1]);
        assert!(
            e.contains("truncated: header says 24 bytes of data, file has 23"),
            "{e}"
        );
        let mut extra = good.clone();
        extra.extend([0; 8]);
        let e = err(&extra);
        assert!(e.contains("8 bytes after the 24 bytes of data"), "{e}");
        let e = err(b"PK\x03\x04 not npy at all");
        assert!(e.contains("no \\x93NUMPY magic"), "{e}");
        let mut v4 = good.clone();
        v4[6] = 4;
        assert!(err(&v4).contains("format version 4.0"));
        // Header length over the cap, whether or not the file is that long.
        let mut long = b"\x93NUMPY\x02\x00".to_vec();
        long.extend(20_000u32.to_le_bytes());
        long.extend(vec![b' '; 20_000]);
        assert!(err(&long).contains("the header is 20000 bytes, more than the 10000 accepted"));
        let mut huge = b"\x93NUMPY\x03\x00".to_vec();
        huge.extend(u32::MAX.to_le_bytes());
        assert!(err(&huge).contains("more than the 10000 accepted"));
        assert!(parse_header(&huge).is_err());
        // parse_header on a prefix that ends inside the header.
        assert!(parse_header(&good[..20])
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        assert_eq!(parse_header(&good[..128]).unwrap().shape, vec![2, 3]);
    }

    #[test]
    fn npyz_written_files_read_back() {
        use npyz::WriterBuilder;
        let mut buf = Vec::new();
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&[2, 5])
            .writer(&mut buf)
            .begin_nd()
            .unwrap();
        w.extend((0..10).map(|i| i as f32)).unwrap();
        w.finish().unwrap();
        let t = decode_f32(&buf).unwrap();
        assert_eq!(t.shape, vec![2, 5]);
        assert_eq!(t.data[9], 9.0);
    }

    #[test]
    fn writes_are_atomic_and_failures_leave_nothing() {
        let dir = std::env::temp_dir().join(format!("levit-npy-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let y = dir.join("y.npy");
        std::fs::write(&y, b"old").unwrap();
        write_f32(&y, &[2], &[1.0, 2.0]).unwrap();
        assert_eq!(read_f32(&y).unwrap().data, vec![1.0, 2.0]);
        // A missing folder, a folder as the target, values that do not fill the shape.
        let e = write_f32(&dir.join("missing/y.npy"), &[1], &[1.0]).unwrap_err();
        assert!(
            format!("{e:#}").contains("no such file or directory"),
            "{e:#}"
        );
        let e = write_f32(&dir, &[1], &[1.0]).unwrap_err();
        assert!(format!("{e:#}").starts_with("cannot write"), "{e:#}");
        assert!(write_f32(&y, &[3], &[1.0]).is_err());
        assert!(write_f32(&y, &[usize::MAX, 2], &[1.0]).is_err());
        // Through a symlink: the link stays, its target is replaced.
        #[cfg(unix)]
        {
            let link = dir.join("link.npy");
            std::os::unix::fs::symlink(&y, &link).unwrap();
            write_f32(&link, &[1], &[7.0]).unwrap();
            assert!(std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink());
            assert_eq!(read_f32(&y).unwrap().data, vec![7.0]);
        }
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn special_files_are_refused_without_reading() {
        let e = format!("{:#}", read_f32(Path::new("/dev/zero")).unwrap_err());
        assert!(
            e.contains("/dev/zero is not a regular file (a character device)"),
            "{e}"
        );
        let e = format!("{:#}", read_f32(Path::new("/")).unwrap_err());
        assert!(e.contains("is not a regular file (a directory)"), "{e}");
    }
}
