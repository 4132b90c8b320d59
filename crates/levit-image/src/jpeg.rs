//! A JPEG decoder that reproduces libjpeg-turbo's default output bit for bit (the
//! library PIL decodes with, so what timm's models were trained and evaluated on).
//!
//! Entropy decoding is lossless, so any correct decoder recovers the same DCT
//! coefficients; the pixels then depend on three choices that differ between
//! decoders, and this module makes libjpeg-turbo's (`jpeg_decompress` defaults, as
//! Pillow calls it):
//!
//! * the "islow" integer inverse DCT (`jidctint.c`, 13-bit constants, 2 pass-1 bits);
//! * "fancy" (triangle-filter) chroma upsampling (`jdsample.c`: h2v1, h2v2, h1v2;
//!   box replication for other integral factors and for components 2 samples wide);
//! * the fixed-point YCbCr -> RGB tables of `jdcolor.c`.
//!
//! Supported: 8-bit Huffman-coded baseline, extended and progressive JPEGs with one
//! (grey) or three (YCbCr or RGB) components, any integral sampling factors, restart
//! intervals. Anything else (arithmetic coding, 12-bit, lossless, CMYK) returns
//! `Ok(None)` so the caller can fall back to another decoder. A frame over the caller's
//! pixel limit is refused before anything is allocated for it, and a stream of more
//! than [`MAX_SCANS`] scans is refused, so that a small hostile file can make it
//! neither allocate nor work without bound.

use image::{DynamicImage, GrayImage, RgbImage};

/// Why the stream could not be decoded here.
#[derive(Debug)]
pub(crate) enum Error {
    /// The stream is corrupt or has too many scans (the caller may try another
    /// decoder). The message is for `Debug` (tests, debugging).
    Corrupt(#[allow(dead_code)] &'static str),
    /// The data ends before the end-of-image marker: what PIL (with its default
    /// `LOAD_TRUNCATED_IMAGES = False`) refuses as "image file is truncated", where
    /// libjpeg alone would pad the image with grey.
    Truncated,
    /// The frame header declares more than the caller's pixel limit; nothing was
    /// allocated for it.
    TooLarge {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
}

impl From<&'static str> for Error {
    fn from(message: &'static str) -> Self {
        Error::Corrupt(message)
    }
}

/// Most scans a stream may have. Each scan may cover every block of the image and costs
/// a few bytes (an end-of-band run skips up to 32767 blocks), so without a cap a small
/// progressive file could make decoding take minutes. Real encoders write 1 to 3
/// (sequential) or about 10 (progressive) scans; the `image` crate's decoder
/// (zune-jpeg, the fallback) has the same cap of 100.
const MAX_SCANS: usize = 100;

/// Zigzag index -> natural (row-major) index, with libjpeg's 16 guard entries for
/// corrupt streams whose run lengths overshoot the block.
const NATURAL_ORDER: [usize; 80] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63,
];

#[derive(Clone, Default)]
struct Huffman {
    /// For codes of up to 8 bits: (length, symbol) indexed by the next 8 bits.
    fast: Vec<(u8, u8)>,
    /// Largest code of each length (-1: none), lengths 1..=16.
    maxcode: [i32; 18],
    /// `symbols` index of the first code of each length, minus that code.
    valoffset: [i32; 17],
    symbols: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8; 16], symbols: Vec<u8>) -> Result<Huffman, Error> {
        let mut h = Huffman {
            fast: vec![(0, 0); 256],
            maxcode: [-1; 18],
            valoffset: [0; 17],
            symbols,
        };
        let mut code = 0i32;
        let mut k = 0usize;
        for len in 1..=16usize {
            let n = counts[len - 1] as usize;
            if n > 0 {
                h.valoffset[len] = k as i32 - code;
                for _ in 0..n {
                    if code >= (1 << len) {
                        return Err("bad Huffman table".into());
                    }
                    if len <= 8 {
                        let sym = *h.symbols.get(k).ok_or("bad Huffman table")?;
                        let shift = 8 - len;
                        for low in 0..(1 << shift) {
                            h.fast[((code as usize) << shift) | low] = (len as u8, sym);
                        }
                    }
                    code += 1;
                    k += 1;
                }
                h.maxcode[len] = code - 1;
            }
            if code > (1 << len) {
                return Err("bad Huffman table".into());
            }
            code <<= 1;
        }
        h.maxcode[17] = i32::MAX; // sentinel: ends the slow search
        if k > h.symbols.len() {
            return Err("bad Huffman table".into());
        }
        Ok(h)
    }
}

/// Bit reader over entropy-coded data: unstuffs 0xFF00, stops at markers and then
/// supplies zeros, as libjpeg does.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    buf: u64,
    count: u32,
    /// A marker (or the end of the data) was reached.
    hit_marker: bool,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Bits {
            data,
            pos,
            buf: 0,
            count: 0,
            hit_marker: false,
        }
    }

    fn fill(&mut self) {
        while self.count <= 56 {
            let mut byte = 0u8;
            if !self.hit_marker {
                match self.data.get(self.pos) {
                    None => self.hit_marker = true,
                    Some(&0xFF) => {
                        let mut next = self.pos + 1;
                        while self.data.get(next) == Some(&0xFF) {
                            next += 1;
                        }
                        match self.data.get(next) {
                            Some(0) => {
                                byte = 0xFF;
                                self.pos = next + 1;
                            }
                            _ => self.hit_marker = true, // leave pos at the marker
                        }
                    }
                    Some(&b) => {
                        byte = b;
                        self.pos += 1;
                    }
                }
            }
            self.buf |= (byte as u64) << (56 - self.count);
            self.count += 8;
        }
    }

    #[inline]
    fn bits(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        if self.count < n {
            self.fill();
        }
        let v = (self.buf >> (64 - n)) as u32;
        self.buf <<= n;
        self.count -= n;
        v
    }

    #[inline]
    fn bit(&mut self) -> bool {
        self.bits(1) == 1
    }

    #[inline]
    fn decode(&mut self, h: &Huffman) -> Result<u8, Error> {
        if self.count < 16 {
            self.fill();
        }
        let peek = (self.buf >> 56) as usize;
        let (len, sym) = h.fast[peek];
        if len > 0 {
            self.buf <<= len;
            self.count -= len as u32;
            return Ok(sym);
        }
        let mut len = 9usize;
        let mut code = (self.buf >> (64 - 9)) as i32;
        while code > h.maxcode[len] {
            len += 1;
            code = (self.buf >> (64 - len)) as i32;
        }
        if len > 16 {
            return Err("corrupt Huffman code".into());
        }
        self.buf <<= len;
        self.count -= len as u32;
        h.symbols
            .get((h.valoffset[len] + code) as usize)
            .copied()
            .ok_or_else(|| "corrupt Huffman code".into())
    }

    /// Discards buffered bits and skips past the next restart marker.
    fn restart(&mut self) -> Result<(), Error> {
        self.buf = 0;
        self.count = 0;
        self.hit_marker = false;
        let mut p = self.pos;
        loop {
            while p < self.data.len() && self.data[p] != 0xFF {
                p += 1;
            }
            while self.data.get(p) == Some(&0xFF) {
                p += 1;
            }
            match self.data.get(p) {
                Some(&m) if (0xD0..=0xD7).contains(&m) => {
                    self.pos = p + 1;
                    return Ok(());
                }
                Some(0) => p += 1,
                _ => return Err("missing restart marker".into()),
            }
        }
    }
}

#[inline]
fn extend(v: u32, s: u32) -> i32 {
    if s == 0 {
        0
    } else if v < (1 << (s - 1)) {
        v as i32 + (-1i32 << s) + 1
    } else {
        v as i32
    }
}

#[derive(Clone, Default)]
struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// Quantization table latched at the component's first scan.
    quant: Option<[u16; 64]>,
    /// Blocks per row / column in the coefficient buffer (MCU-padded).
    bw: usize,
    bh: usize,
    /// Sample width/height (`downsampled_width/height`).
    width: usize,
    height: usize,
    coefs: Vec<[i16; 64]>,
    dc_pred: i32,
}

/// Decodes a JPEG file's bytes. `Ok(None)`: a feature this decoder leaves to others.
/// A frame of more than `max_pixels` pixels is refused (`Error::TooLarge`) before
/// anything is allocated for it.
pub(crate) fn decode(data: &[u8], max_pixels: u64) -> Result<Option<DynamicImage>, Error> {
    if data.len() < 4 || data[0] != 0xFF || data[1] != 0xD8 {
        return Err("not a JPEG".into());
    }
    let mut pos = 2;
    let mut qt: [Option<[u16; 64]>; 4] = [None; 4];
    let mut dc_tables: [Option<Huffman>; 4] = Default::default();
    let mut ac_tables: [Option<Huffman>; 4] = Default::default();
    let mut comps: Vec<Component> = Vec::new();
    let (mut width, mut height) = (0usize, 0usize);
    let (mut hmax, mut vmax) = (1usize, 1usize);
    let (mut mcux, mut mcuy) = (0usize, 0usize);
    let mut progressive = false;
    let mut restart_interval = 0usize;
    let (mut saw_jfif, mut adobe_transform) = (false, None::<u8>);
    let mut frame = false;
    let mut scans = 0usize;

    let seg = |pos: usize| -> Result<&[u8], Error> {
        let len = u16::from_be_bytes([
            *data.get(pos).ok_or(Error::Truncated)?,
            *data.get(pos + 1).ok_or(Error::Truncated)?,
        ]) as usize;
        if len < 2 {
            return Err("bad segment length".into());
        }
        data.get(pos + 2..pos + len).ok_or(Error::Truncated)
    };

    loop {
        // Find the next marker (skipping fill bytes and any garbage).
        while pos < data.len() && data[pos] != 0xFF {
            pos += 1;
        }
        while pos < data.len() && data[pos] == 0xFF {
            pos += 1;
        }
        let Some(&marker) = data.get(pos) else {
            return Err(Error::Truncated);
        };
        pos += 1;
        match marker {
            0xD9 => break, // EOI
            0xD0..=0xD7 | 0x01 => continue,
            0xC0..=0xC2 => {
                if frame {
                    return Err("two frames".into());
                }
                frame = true;
                progressive = marker == 0xC2;
                let s = seg(pos)?;
                pos += 2 + s.len();
                if s.len() < 6 || s[0] != 8 {
                    return Ok(None); // 12-bit and other precisions
                }
                height = u16::from_be_bytes([s[1], s[2]]) as usize;
                width = u16::from_be_bytes([s[3], s[4]]) as usize;
                let n = s[5] as usize;
                if width == 0 || height == 0 || !(n == 1 || n == 3) || s.len() < 6 + 3 * n {
                    return Ok(None); // DNL, CMYK, ...
                }
                if width as u64 * height as u64 > max_pixels {
                    return Err(Error::TooLarge {
                        width: width as u32,
                        height: height as u32,
                    });
                }
                for i in 0..n {
                    let c = &s[6 + 3 * i..];
                    let (h, v) = ((c[1] >> 4) as usize, (c[1] & 15) as usize);
                    if !(1..=4).contains(&h) || !(1..=4).contains(&v) || c[2] > 3 {
                        return Err("bad component".into());
                    }
                    comps.push(Component {
                        id: c[0],
                        h,
                        v,
                        tq: c[2] as usize,
                        ..Component::default()
                    });
                }
                hmax = comps.iter().map(|c| c.h).max().unwrap_or(1);
                vmax = comps.iter().map(|c| c.v).max().unwrap_or(1);
                if comps.iter().any(|c| hmax % c.h != 0 || vmax % c.v != 0) {
                    return Ok(None); // non-integral upsampling
                }
                mcux = width.div_ceil(8 * hmax);
                mcuy = height.div_ceil(8 * vmax);
                if mcux * mcuy * comps.iter().map(|c| c.h * c.v).sum::<usize>() > 1 << 22 {
                    return Err("image too large".into());
                }
                for c in comps.iter_mut() {
                    c.width = (width * c.h).div_ceil(hmax);
                    c.height = (height * c.v).div_ceil(vmax);
                    c.bw = mcux * c.h;
                    c.bh = mcuy * c.v;
                    c.coefs = vec![[0i16; 64]; c.bw * c.bh];
                }
            }
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return Ok(None),
            0xC4 => {
                let s = seg(pos)?;
                pos += 2 + s.len();
                let mut p = 0;
                while p < s.len() {
                    let (class, id) = (s[p] >> 4, (s[p] & 15) as usize);
                    let counts: [u8; 16] = s
                        .get(p + 1..p + 17)
                        .ok_or("bad DHT")?
                        .try_into()
                        .expect("16 bytes");
                    let total: usize = counts.iter().map(|&c| c as usize).sum();
                    let symbols = s.get(p + 17..p + 17 + total).ok_or("bad DHT")?.to_vec();
                    if id > 3 || class > 1 || total > 256 {
                        return Err("bad DHT".into());
                    }
                    let table = Huffman::new(&counts, symbols)?;
                    if class == 0 {
                        dc_tables[id] = Some(table);
                    } else {
                        ac_tables[id] = Some(table);
                    }
                    p += 17 + total;
                }
            }
            0xDB => {
                let s = seg(pos)?;
                pos += 2 + s.len();
                let mut p = 0;
                while p < s.len() {
                    let (pq, id) = (s[p] >> 4, (s[p] & 15) as usize);
                    if id > 3 || pq > 1 {
                        return Err("bad DQT".into());
                    }
                    let mut t = [0u16; 64];
                    for (k, q) in t.iter_mut().enumerate() {
                        let v = if pq == 0 {
                            *s.get(p + 1 + k).ok_or("bad DQT")? as u16
                        } else {
                            let i = p + 1 + 2 * k;
                            u16::from_be_bytes([
                                *s.get(i).ok_or("bad DQT")?,
                                *s.get(i + 1).ok_or("bad DQT")?,
                            ])
                        };
                        *q = v;
                    }
                    // Stored in zigzag order; keep natural order.
                    let mut natural = [0u16; 64];
                    for k in 0..64 {
                        natural[NATURAL_ORDER[k]] = t[k];
                    }
                    qt[id] = Some(natural);
                    p += 1 + 64 * (1 + pq as usize);
                }
            }
            0xDD => {
                let s = seg(pos)?;
                pos += 2 + s.len();
                restart_interval =
                    u16::from_be_bytes([*s.first().ok_or("bad DRI")?, *s.get(1).ok_or("bad DRI")?])
                        as usize;
            }
            0xE0 => {
                let s = seg(pos)?;
                pos += 2 + s.len();
                if s.starts_with(b"JFIF\0") {
                    saw_jfif = true;
                }
            }
            0xEE => {
                let s = seg(pos)?;
                pos += 2 + s.len();
                if s.len() >= 12 && s.starts_with(b"Adobe") {
                    adobe_transform = Some(s[11]);
                }
            }
            0xDA => {
                if !frame {
                    return Err("scan before frame".into());
                }
                scans += 1;
                if scans > MAX_SCANS {
                    return Err("too many scans".into());
                }
                let s = seg(pos)?;
                pos += 2 + s.len();
                let n = *s.first().ok_or("bad SOS")? as usize;
                if n == 0 || n > 4 || s.len() < 4 + 2 * n {
                    return Err("bad SOS".into());
                }
                let mut scan = Vec::with_capacity(n);
                for i in 0..n {
                    let (cid, tables) = (s[1 + 2 * i], s[2 + 2 * i]);
                    let ci = comps
                        .iter()
                        .position(|c| c.id == cid)
                        .ok_or("scan names an unknown component")?;
                    scan.push((ci, (tables >> 4) as usize & 3, (tables & 15) as usize & 3));
                }
                let (ss, se) = (s[1 + 2 * n] as usize, s[2 + 2 * n] as usize);
                let (ah, al) = ((s[3 + 2 * n] >> 4) as u32, (s[3 + 2 * n] & 15) as u32);
                if !progressive && (ss != 0 || se != 63 || ah != 0 || al != 0) {
                    return Err("bad sequential scan".into());
                }
                if progressive && (se > 63 || ss > se || (ss == 0 && se != 0) || (ss > 0 && n != 1))
                {
                    return Err("bad progressive scan".into());
                }
                for &(ci, _, _) in &scan {
                    let c = &mut comps[ci];
                    if c.quant.is_none() {
                        c.quant = Some(qt[c.tq].ok_or("missing quantization table")?);
                    }
                    c.dc_pred = 0;
                }
                let params = ScanParams {
                    ss,
                    se,
                    ah,
                    al,
                    progressive,
                    restart_interval,
                    mcux,
                    mcuy,
                };
                pos = decode_scan(
                    data, pos, &mut comps, &scan, &dc_tables, &ac_tables, &params,
                )?;
            }
            0xDC => return Ok(None), // DNL
            _ => {
                // APPn, COM and anything else with a length.
                let s = seg(pos)?;
                pos += 2 + s.len();
            }
        }
    }
    if !frame || comps.iter().any(|c| c.quant.is_none()) {
        return Err("no image data".into());
    }

    // libjpeg's colour space guess (jdapimin.c default_decompress_parms).
    let rgb_stored = comps.len() == 3
        && if saw_jfif {
            false
        } else if let Some(t) = adobe_transform {
            t == 0
        } else {
            let ids: Vec<u8> = comps.iter().map(|c| c.id).collect();
            ids == [b'R', b'G', b'B']
        };

    // One component at a time, each one's coefficients and plane freed once used: the
    // peak is the coefficients plus two planes, not all of them at once.
    let mut upsampled: Vec<Vec<u8>> = Vec::with_capacity(comps.len());
    for c in comps.iter_mut() {
        let plane = idct_component(c);
        c.coefs = Vec::new();
        upsampled.push(upsample(c, &plane, hmax, vmax, width, height));
    }
    if comps.len() == 1 {
        let grey = upsampled.pop().expect("one component");
        let img = GrayImage::from_raw(width as u32, height as u32, grey).ok_or("size")?;
        return Ok(Some(DynamicImage::ImageLuma8(img)));
    }
    let mut out = vec![0u8; width * height * 3];
    if rgb_stored {
        for (i, px) in out.chunks_exact_mut(3).enumerate() {
            px.copy_from_slice(&[upsampled[0][i], upsampled[1][i], upsampled[2][i]]);
        }
    } else {
        ycc_to_rgb(&upsampled[0], &upsampled[1], &upsampled[2], &mut out);
    }
    let img = RgbImage::from_raw(width as u32, height as u32, out).ok_or("size")?;
    Ok(Some(DynamicImage::ImageRgb8(img)))
}

struct ScanParams {
    ss: usize,
    se: usize,
    ah: u32,
    al: u32,
    progressive: bool,
    restart_interval: usize,
    mcux: usize,
    mcuy: usize,
}

/// Decodes one scan starting at `pos`; returns the position of the marker after it.
#[allow(clippy::too_many_arguments)]
fn decode_scan(
    data: &[u8],
    pos: usize,
    comps: &mut [Component],
    scan: &[(usize, usize, usize)],
    dc_tables: &[Option<Huffman>; 4],
    ac_tables: &[Option<Huffman>; 4],
    p: &ScanParams,
) -> Result<usize, Error> {
    let mut bits = Bits::new(data, pos);
    let mut eobrun = 0u32;
    let need_dc = p.ss == 0 && p.ah == 0;
    let need_ac = !p.progressive || p.ss > 0;
    for &(_, td, ta) in scan {
        if need_dc && dc_tables[td].is_none() {
            return Err("missing DC table".into());
        }
        if need_ac && ac_tables[ta].is_none() {
            return Err("missing AC table".into());
        }
    }
    // Non-interleaved scans cover the component's own blocks; interleaved ones MCUs.
    let (units_x, units_y) = if scan.len() == 1 {
        let c = &comps[scan[0].0];
        (c.width.div_ceil(8), c.height.div_ceil(8))
    } else {
        (p.mcux, p.mcuy)
    };
    let total = units_x * units_y;
    for unit in 0..total {
        if p.restart_interval > 0 && unit > 0 && unit % p.restart_interval == 0 {
            bits.restart()?;
            for &(ci, _, _) in scan {
                comps[ci].dc_pred = 0;
            }
            eobrun = 0;
        }
        let (ux, uy) = (unit % units_x, unit / units_x);
        for &(ci, td, ta) in scan {
            let c = &mut comps[ci];
            // One block of a non-interleaved scan; an MCU's h x v blocks, row by row.
            let ((bx0, by0), (nx, ny)) = if scan.len() == 1 {
                ((ux, uy), (1, 1))
            } else {
                ((ux * c.h, uy * c.v), (c.h, c.v))
            };
            for by in by0..by0 + ny {
                for bx in bx0..bx0 + nx {
                    let idx = by * c.bw + bx;
                    let mut pred = c.dc_pred;
                    let block = &mut c.coefs[idx];
                    decode_block(
                        &mut bits,
                        block,
                        &mut pred,
                        dc_tables[td].as_ref(),
                        ac_tables[ta].as_ref(),
                        p,
                        &mut eobrun,
                    )?;
                    c.dc_pred = pred;
                }
            }
        }
        if bits.hit_marker && bits.pos >= data.len() {
            return Err(Error::Truncated);
        }
    }
    // The scan's data ends at the next marker.
    let mut end = bits.pos;
    loop {
        while end < data.len() && data[end] != 0xFF {
            end += 1;
        }
        if end + 1 >= data.len() {
            return Err(Error::Truncated);
        }
        let m = data[end + 1];
        if m == 0 || m == 0xFF || (0xD0..=0xD7).contains(&m) {
            end += 1;
            continue;
        }
        return Ok(end);
    }
}

fn decode_block(
    bits: &mut Bits,
    block: &mut [i16; 64],
    pred: &mut i32,
    dc: Option<&Huffman>,
    ac: Option<&Huffman>,
    p: &ScanParams,
    eobrun: &mut u32,
) -> Result<(), Error> {
    if !p.progressive {
        let dc = dc.ok_or("missing DC table")?;
        let ac = ac.ok_or("missing AC table")?;
        let s = bits.decode(dc)? as u32;
        if s > 16 {
            return Err("bad DC".into());
        }
        *pred = pred.wrapping_add(extend(bits.bits(s), s));
        block[0] = *pred as i16;
        let mut k = 1;
        while k < 64 {
            let rs = bits.decode(ac)?;
            let (r, s) = ((rs >> 4) as usize, (rs & 15) as u32);
            if s != 0 {
                k += r;
                block[NATURAL_ORDER[k.min(79)]] = extend(bits.bits(s), s) as i16;
            } else if r != 15 {
                break;
            } else {
                k += 15;
            }
            k += 1;
        }
        return Ok(());
    }
    if p.ss == 0 {
        if p.ah == 0 {
            let s = bits.decode(dc.ok_or("missing DC table")?)? as u32;
            if s > 16 {
                return Err("bad DC".into());
            }
            *pred = pred.wrapping_add(extend(bits.bits(s), s));
            block[0] = (*pred << p.al) as i16;
        } else if bits.bit() {
            block[0] |= 1 << p.al;
        }
        return Ok(());
    }
    let ac = ac.ok_or("missing AC table")?;
    if p.ah == 0 {
        // AC first pass.
        if *eobrun > 0 {
            *eobrun -= 1;
            return Ok(());
        }
        let mut k = p.ss;
        while k <= p.se {
            let rs = bits.decode(ac)?;
            let (r, s) = ((rs >> 4) as u32, (rs & 15) as u32);
            if s != 0 {
                k += r as usize;
                let v = extend(bits.bits(s), s);
                block[NATURAL_ORDER[k.min(79)]] = (v << p.al) as i16;
            } else if r == 15 {
                k += 15;
            } else {
                *eobrun = (1 << r) + bits.bits(r) - 1;
                break;
            }
            k += 1;
        }
        return Ok(());
    }
    // AC refinement.
    let p1: i16 = 1 << p.al;
    let m1: i16 = (-1i16) << p.al;
    let mut k = p.ss;
    let refine = |bits: &mut Bits, coef: &mut i16| {
        if bits.bit() && (*coef & p1) == 0 {
            *coef = coef.wrapping_add(if *coef >= 0 { p1 } else { m1 });
        }
    };
    if *eobrun == 0 {
        while k <= p.se {
            let rs = bits.decode(ac)?;
            let mut r = (rs >> 4) as i32;
            let s = (rs & 15) as u32;
            let mut value = 0i16;
            if s != 0 {
                value = if bits.bit() { p1 } else { m1 };
            } else if r != 15 {
                *eobrun = (1 << r) + bits.bits(r as u32);
                break;
            }
            loop {
                let coef = &mut block[NATURAL_ORDER[k.min(79)]];
                if *coef != 0 {
                    refine(bits, coef);
                } else {
                    r -= 1;
                    if r < 0 {
                        break;
                    }
                }
                k += 1;
                if k > p.se {
                    break;
                }
            }
            if value != 0 {
                block[NATURAL_ORDER[k.min(79)]] = value;
            }
            k += 1;
        }
    }
    if *eobrun > 0 {
        while k <= p.se {
            let coef = &mut block[NATURAL_ORDER[k]];
            if *coef != 0 {
                refine(bits, coef);
            }
            k += 1;
        }
        *eobrun -= 1;
    }
    Ok(())
}

// ---- jidctint.c: jpeg_idct_islow ------------------------------------------------------

const CONST_BITS: i64 = 13;
const PASS1_BITS: i64 = 2;
const FIX_0_298631336: i64 = 2446;
const FIX_0_390180644: i64 = 3196;
const FIX_0_541196100: i64 = 4433;
const FIX_0_765366865: i64 = 6270;
const FIX_0_899976223: i64 = 7373;
const FIX_1_175875602: i64 = 9633;
const FIX_1_501321110: i64 = 12299;
const FIX_1_847759065: i64 = 15137;
const FIX_1_961570560: i64 = 16069;
const FIX_2_053119869: i64 = 16819;
const FIX_2_562915447: i64 = 20995;
const FIX_3_072711026: i64 = 25172;

#[inline]
fn descale(x: i64, n: i64) -> i64 {
    (x + (1 << (n - 1))) >> n
}

/// libjpeg's post-IDCT range limit: `x + 128` clamped, indexed modulo 1024 as
/// `IDCT_range_limit[x & RANGE_MASK]` does.
#[inline]
fn idct_limit(x: i64) -> u8 {
    let i = (x & 1023) as i32;
    match i {
        0..=127 => (i + 128) as u8,
        128..=511 => 255,
        512..=895 => 0,
        _ => (i - 896) as u8,
    }
}

/// The even/odd butterflies shared by both passes: returns the 8 outputs before
/// descaling, in order 0..8.
#[inline]
fn idct_1d(v: [i64; 8]) -> [i64; 8] {
    let (z2, z3) = (v[2], v[6]);
    let z1 = (z2 + z3) * FIX_0_541196100;
    let tmp2 = z1 + z3 * -FIX_1_847759065;
    let tmp3 = z1 + z2 * FIX_0_765366865;
    let tmp0 = (v[0] + v[4]) << CONST_BITS;
    let tmp1 = (v[0] - v[4]) << CONST_BITS;
    let (tmp10, tmp13) = (tmp0 + tmp3, tmp0 - tmp3);
    let (tmp11, tmp12) = (tmp1 + tmp2, tmp1 - tmp2);

    let (mut t0, mut t1, mut t2, mut t3) = (v[7], v[5], v[3], v[1]);
    let z1 = t0 + t3;
    let z2 = t1 + t2;
    let z3 = t0 + t2;
    let z4 = t1 + t3;
    let z5 = (z3 + z4) * FIX_1_175875602;
    t0 *= FIX_0_298631336;
    t1 *= FIX_2_053119869;
    t2 *= FIX_3_072711026;
    t3 *= FIX_1_501321110;
    let z1 = z1 * -FIX_0_899976223;
    let z2 = z2 * -FIX_2_562915447;
    let z3 = z3 * -FIX_1_961570560 + z5;
    let z4 = z4 * -FIX_0_390180644 + z5;
    t0 += z1 + z3;
    t1 += z2 + z4;
    t2 += z2 + z3;
    t3 += z1 + z4;
    [
        tmp10 + t3,
        tmp11 + t2,
        tmp12 + t1,
        tmp13 + t0,
        tmp13 - t0,
        tmp12 - t1,
        tmp11 - t2,
        tmp10 - t3,
    ]
}

fn idct_block(coefs: &[i16; 64], quant: &[u16; 64], out: &mut [u8], stride: usize) {
    let mut ws = [0i64; 64];
    for col in 0..8 {
        let v: [i64; 8] =
            std::array::from_fn(|r| coefs[r * 8 + col] as i64 * quant[r * 8 + col] as i64);
        let o = idct_1d(v);
        for r in 0..8 {
            // (int) cast of the descaled value, as libjpeg stores pass 1 in an int.
            ws[r * 8 + col] = descale(o[r], CONST_BITS - PASS1_BITS) as i32 as i64;
        }
    }
    for row in 0..8 {
        let v: [i64; 8] = std::array::from_fn(|c| ws[row * 8 + c]);
        let o = idct_1d(v);
        let dst = &mut out[row * stride..][..8];
        for c in 0..8 {
            dst[c] = idct_limit(descale(o[c], CONST_BITS + PASS1_BITS + 3));
        }
    }
}

/// The component's samples, `bw * 8` wide and `bh * 8` high.
fn idct_component(c: &Component) -> Vec<u8> {
    let stride = c.bw * 8;
    let mut plane = vec![0u8; stride * c.bh * 8];
    let quant = c.quant.expect("latched");
    // Only blocks that hold visible samples are needed.
    for by in 0..c.height.div_ceil(8).min(c.bh) {
        for bx in 0..c.width.div_ceil(8).min(c.bw) {
            let off = by * 8 * stride + bx * 8;
            idct_block(&c.coefs[by * c.bw + bx], &quant, &mut plane[off..], stride);
        }
    }
    plane
}

// ---- jdsample.c: upsampling -------------------------------------------------------------

/// Upsamples a component's plane to `width x height` as libjpeg-turbo does with
/// `do_fancy_upsampling` on.
fn upsample(
    c: &Component,
    plane: &[u8],
    hmax: usize,
    vmax: usize,
    width: usize,
    height: usize,
) -> Vec<u8> {
    let stride = c.bw * 8;
    let (hf, vf) = (hmax / c.h, vmax / c.v);
    let (cw, ch) = (c.width, c.height);
    let row = |y: usize| &plane[y * stride..][..cw];
    let mut out = vec![0u8; width * height];
    let mut line = vec![0u8; cw * hf];
    for y in 0..height {
        let sy = y / vf;
        match (hf, vf) {
            (1, 1) => line.copy_from_slice(row(sy)),
            (2, 1) if cw > 2 => h2v1_fancy(row(sy), &mut line),
            (2, 2) if cw > 2 => {
                // Upper output row of the pair looks at the row above, lower at below.
                let other = if y % 2 == 0 {
                    sy.saturating_sub(1)
                } else {
                    (sy + 1).min(ch - 1)
                };
                h2v2_fancy(row(sy), row(other), y % 2 == 0, &mut line);
            }
            (1, 2) => {
                let upper = y % 2 == 0;
                let other = if upper {
                    sy.saturating_sub(1)
                } else {
                    (sy + 1).min(ch - 1)
                };
                let bias = if upper { 1 } else { 2 };
                for ((o, &a), &b) in line.iter_mut().zip(row(sy)).zip(row(other)) {
                    *o = ((a as u32 * 3 + b as u32 + bias) >> 2) as u8;
                }
            }
            _ => {
                for (x, o) in line.iter_mut().enumerate() {
                    *o = row(sy)[x / hf];
                }
            }
        }
        out[y * width..][..width].copy_from_slice(&line[..width]);
    }
    out
}

fn h2v1_fancy(input: &[u8], out: &mut [u8]) {
    let n = input.len();
    let px = |i: usize| input[i] as u32;
    out[0] = input[0];
    out[1] = ((px(0) * 3 + px(1) + 2) >> 2) as u8;
    for i in 1..n - 1 {
        let v = px(i) * 3;
        out[2 * i] = ((v + px(i - 1) + 1) >> 2) as u8;
        out[2 * i + 1] = ((v + px(i + 1) + 2) >> 2) as u8;
    }
    out[2 * (n - 1)] = ((px(n - 1) * 3 + px(n - 2) + 1) >> 2) as u8;
    out[2 * n - 1] = input[n - 1];
}

fn h2v2_fancy(near: &[u8], far: &[u8], _upper: bool, out: &mut [u8]) {
    let n = near.len();
    let colsum = |i: usize| near[i] as u32 * 3 + far[i] as u32;
    let mut this = colsum(0);
    let mut next = colsum(1);
    out[0] = ((this * 4 + 8) >> 4) as u8;
    out[1] = ((this * 3 + next + 7) >> 4) as u8;
    let mut last = this;
    this = next;
    for i in 1..n - 1 {
        next = colsum(i + 1);
        out[2 * i] = ((this * 3 + last + 8) >> 4) as u8;
        out[2 * i + 1] = ((this * 3 + next + 7) >> 4) as u8;
        last = this;
        this = next;
    }
    out[2 * (n - 1)] = ((this * 3 + last + 8) >> 4) as u8;
    out[2 * n - 1] = ((this * 4 + 7) >> 4) as u8;
}

// ---- jdcolor.c: YCbCr -> RGB ------------------------------------------------------------

/// jdcolor.c's `ycc_rgb_convert`. libjpeg reads four tables built from
/// `FIX(c) * x` (x = chroma - 128); the same integer expressions computed in place
/// give the same values (`ycc_tables_equal_libjpegs` checks all 256) without a load per
/// term and a bounds check per lookup, and every sum fits in an i32 (|x| <= 128).
fn ycc_to_rgb(y: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
    let clamp = |v: i32| v.clamp(0, 255) as u8;
    let pixels = out.chunks_exact_mut(3).zip(y).zip(cb).zip(cr);
    for (((px, &yy), &b), &r) in pixels {
        let (yy, xb, xr) = (yy as i32, b as i32 - 128, r as i32 - 128);
        px[0] = clamp(yy + ycc::red(xr));
        px[1] = clamp(yy + ycc::green(xb, xr));
        px[2] = clamp(yy + ycc::blue(xb));
    }
}

/// jdcolor.c's colour terms of chroma offsets `x = c - 128`, `SCALEBITS = 16`.
mod ycc {
    const SCALEBITS: i32 = 16;
    const ONE_HALF: i32 = 1 << (SCALEBITS - 1);
    /// `FIX(x)`: `(x * 2^16 + 0.5)` truncated.
    const fn fix(x: f64) -> i32 {
        (x * (1 << SCALEBITS) as f64 + 0.5) as i32
    }
    const CR_R: i32 = fix(1.40200);
    const CB_B: i32 = fix(1.77200);
    const CR_G: i32 = fix(0.71414);
    const CB_G: i32 = fix(0.34414);

    /// `Cr_r_tab[cr]`.
    #[inline]
    pub(super) fn red(xr: i32) -> i32 {
        (CR_R * xr + ONE_HALF) >> SCALEBITS
    }
    /// `(Cb_g_tab[cb] + Cr_g_tab[cr]) >> SCALEBITS`, `Cb_g_tab` holding the `ONE_HALF`.
    #[inline]
    pub(super) fn green(xb: i32, xr: i32) -> i32 {
        (-CB_G * xb + ONE_HALF - CR_G * xr) >> SCALEBITS
    }
    /// `Cb_b_tab[cb]`.
    #[inline]
    pub(super) fn blue(xb: i32) -> i32 {
        (CB_B * xb + ONE_HALF) >> SCALEBITS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILES: [&[u8]; 4] = [
        include_bytes!("../../../tests/fixtures/images/camera_grey.jpg"),
        include_bytes!("../../../tests/fixtures/images/astronaut_progressive.jpg"),
        include_bytes!("../../../tests/fixtures/images/coffee_411_restarts.jpg"),
        include_bytes!("../../../tests/fixtures/images/rocket_progressive_420.jpg"),
    ];

    #[test]
    fn decodes_close_to_another_decoder() {
        // Exactness against PIL is the parity test's job (levit-cli); here: the same
        // picture as zune-jpeg's, within a few levels of IDCT/upsampling rounding.
        for bytes in FILES {
            let ours = decode(bytes, u64::MAX).unwrap().unwrap();
            let theirs = image::load_from_memory(bytes).unwrap();
            assert_eq!(ours.color(), theirs.color());
            let (a, b) = (ours.to_rgb8(), theirs.to_rgb8());
            assert_eq!(a.dimensions(), b.dimensions());
            let max = a
                .as_raw()
                .iter()
                .zip(b.as_raw())
                .map(|(x, y)| x.abs_diff(*y))
                .max()
                .unwrap();
            assert!(max <= 12, "max diff {max}");
        }
    }

    #[test]
    fn corrupt_and_truncated_streams_never_panic() {
        // xorshift64: a fixed, dependency-free stream of positions and bytes.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut pick = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as usize % n.max(1)
        };
        for bytes in FILES {
            for cut in [0, 1, 2, 3, 10, 100, bytes.len() / 2, bytes.len() - 2] {
                let _ = decode(&bytes[..cut], u64::MAX);
            }
            for _ in 0..150 {
                let mut b = bytes.to_vec();
                for _ in 0..1 + pick(8) {
                    let at = pick(b.len());
                    b[at] = pick(256) as u8;
                }
                let _ = decode(&b, u64::MAX);
                let cut = pick(b.len());
                let _ = decode(&b[..cut], u64::MAX);
            }
        }
    }

    #[test]
    fn scan_count_is_capped() {
        // The first scan of a progressive file (DC, first pass: it only sets the DC
        // coefficients) repeated up to MAX_SCANS scans decodes; one more is refused.
        let bytes = FILES[3];
        let sos: Vec<usize> = (0..bytes.len() - 1)
            .filter(|&i| bytes[i..i + 2] == [0xFF, 0xDA])
            .collect();
        let first = &bytes[sos[0]..sos[1]];
        let params = &first[first[4] as usize * 2 + 5..][..3];
        assert_eq!(
            [params[0], params[1], params[2] >> 4],
            [0, 0, 0],
            "Ss, Se, Ah"
        );
        let with_scans = |n: usize| {
            let mut b = bytes[..sos[1]].to_vec();
            for _ in sos.len()..n {
                b.extend_from_slice(first);
            }
            b.extend_from_slice(&bytes[sos[1]..]);
            b
        };
        let at_cap = decode(&with_scans(MAX_SCANS), u64::MAX);
        assert!(matches!(at_cap, Ok(Some(_))), "{at_cap:?}");
        assert!(matches!(
            decode(&with_scans(MAX_SCANS + 1), u64::MAX),
            Err(Error::Corrupt("too many scans"))
        ));
        // The fallback decoder (zune-jpeg) refuses it too.
        let ignore = crate::Orientation::Ignore;
        assert!(crate::decode_image(&with_scans(MAX_SCANS + 1), ignore).is_err());
    }

    #[test]
    fn idct_of_a_dc_only_block_is_flat() {
        let mut coefs = [0i16; 64];
        coefs[0] = 40; // x 2 (quant) / 8 = +10 around 128
        let mut out = [0u8; 64];
        idct_block(&coefs, &[2; 64], &mut out, 8);
        assert!(out.iter().all(|&v| v == 138), "{out:?}");
    }

    #[test]
    fn ycc_tables_equal_libjpegs() {
        // jdcolor.c's build_ycc_rgb_table, in its own (64-bit JLONG) arithmetic.
        const SCALEBITS: i64 = 16;
        const ONE_HALF: i64 = 1 << (SCALEBITS - 1);
        let fix = |x: f64| (x * (1i64 << SCALEBITS) as f64 + 0.5) as i64;
        for b in 0..256i64 {
            let xb = b - 128;
            let cb_b = (fix(1.77200) * xb + ONE_HALF) >> SCALEBITS;
            assert_eq!(ycc::blue(xb as i32) as i64, cb_b, "cb {b}");
            let cb_g = -fix(0.34414) * xb + ONE_HALF;
            for r in 0..256i64 {
                let xr = r - 128;
                let cr_r = (fix(1.40200) * xr + ONE_HALF) >> SCALEBITS;
                assert_eq!(ycc::red(xr as i32) as i64, cr_r, "cr {r}");
                let cr_g = -fix(0.71414) * xr;
                let g = (cb_g + cr_g) >> SCALEBITS;
                assert_eq!(ycc::green(xb as i32, xr as i32) as i64, g, "cb {b} cr {r}");
            }
        }
    }
}
