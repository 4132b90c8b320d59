//! The bytes behind a weight file: a read-only memory map or an owned aligned copy.

use memmap2::Mmap;

/// How the file's bytes are brought into memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoadMode {
    /// Map the file read-only: load is nearly free and pages are shared between
    /// processes. If another process truncates or rewrites the file while it is mapped,
    /// reads may see the new bytes or fault (SIGBUS): use it for files nobody modifies
    /// in place (the normal case for model files).
    #[default]
    Mmap,
    /// Read the whole file into owned 64-byte-aligned memory: costs a copy and the
    /// memory, but is immune to the file changing afterwards (network file systems,
    /// files that get replaced in place, untrusted locations).
    Owned,
}

/// One 64-byte block, so that a `Vec` of them is 64-byte aligned.
#[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
#[repr(C, align(64))]
pub(crate) struct Block([u8; 64]);

/// Read-only bytes of a weight file, whose start is at least 64-byte aligned.
pub(crate) enum StorageBytes {
    /// A memory map (page aligned).
    Mapped(Mmap),
    /// An owned copy.
    Owned {
        /// Backing blocks.
        blocks: Vec<Block>,
        /// Used length in bytes.
        len: usize,
    },
}

impl StorageBytes {
    /// Copies `bytes` into owned aligned memory (an `OutOfMemory` I/O error if it
    /// cannot be allocated).
    pub fn copy_from(bytes: &[u8]) -> std::io::Result<Self> {
        let mut blocks = Vec::new();
        grow_zeroed(&mut blocks, bytes.len().div_ceil(64))?;
        bytemuck::cast_slice_mut::<Block, u8>(&mut blocks)[..bytes.len()].copy_from_slice(bytes);
        Ok(StorageBytes::Owned {
            blocks,
            len: bytes.len(),
        })
    }

    /// Reads everything from `reader` into owned aligned memory, allocated fallibly:
    /// a file the process cannot hold is an `OutOfMemory` error, not an abort.
    pub fn read_from(mut reader: impl std::io::Read, len_hint: usize) -> std::io::Result<Self> {
        let mut blocks = Vec::new();
        grow_zeroed(&mut blocks, len_hint.div_ceil(64))?;
        let mut len = 0;
        loop {
            if len == blocks.len() * 64 {
                let doubled = blocks.len() * 2 + 1;
                grow_zeroed(&mut blocks, doubled)?;
            }
            let buf = &mut bytemuck::cast_slice_mut::<Block, u8>(&mut blocks)[len..];
            match reader.read(buf) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(StorageBytes::Owned { blocks, len })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            StorageBytes::Mapped(m) => m,
            StorageBytes::Owned { blocks, len } => {
                &bytemuck::cast_slice::<Block, u8>(blocks)[..*len]
            }
        }
    }

    /// Which mode produced these bytes.
    pub fn mode(&self) -> LoadMode {
        match self {
            StorageBytes::Mapped(_) => LoadMode::Mmap,
            StorageBytes::Owned { .. } => LoadMode::Owned,
        }
    }
}

/// Grows `blocks` to `len` zeroed blocks, reserving fallibly.
fn grow_zeroed(blocks: &mut Vec<Block>, len: usize) -> std::io::Result<()> {
    let extra = len.saturating_sub(blocks.len());
    blocks.try_reserve_exact(extra).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::OutOfMemory,
            format!(
                "out of memory for {} MiB of weights",
                (len as u64 * 64) >> 20
            ),
        )
    })?;
    blocks.resize(len, Block([0; 64]));
    Ok(())
}
