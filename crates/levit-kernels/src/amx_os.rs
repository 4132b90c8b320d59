//! Whether AMX tiles can be used by this process: the CPU must list AMX-TILE and
//! AMX-BF16 (CPUID leaf 7), the OS must manage the tile state (XCR0 bits 17-18), and
//! on Linux the process must ask for the 8 KiB tile-data state once
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`), after which every thread
//! of the process may use it. Rust's `is_x86_feature_detected!` for AMX is still
//! unstable, so this reads CPUID itself; the AMX kernels use inline assembly for the
//! same reason.

use std::sync::OnceLock;

/// `ldtilecfg` operand: palette 1, all eight tiles 16 rows x 64 bytes, the one tile
/// shape every AMX kernel here uses (GEMM bf16 and int8, attention, the peak loops).
#[repr(C, align(64))]
pub(crate) struct TileConfig(pub(crate) [u8; 64]);

/// The configuration of [`TileConfig`]'s doc.
pub(crate) static TILES_16X64: TileConfig = {
    let mut cfg = [0u8; 64];
    cfg[0] = 1; // palette
    let mut t = 0;
    while t < 8 {
        cfg[16 + 2 * t] = 64; // colsb, u16 little-endian
        cfg[48 + t] = 16; // rows
        t += 1;
    }
    TileConfig(cfg)
};

/// Whether AMX-BF16 tile instructions may run in this process (asked once, cached).
pub fn amx_bf16_usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(detect)
}

/// Whether AMX-INT8 tile instructions (`tdpbusd`) may run in this process: AMX-BF16
/// usable (above) and the CPU lists AMX-INT8 (CPUID leaf 7, EDX bit 25).
pub fn amx_int8_usable() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        const AMX_INT8: u32 = 1 << 25;
        // Leaf 7 exists: `amx_bf16_usable` read it.
        amx_bf16_usable() && core::arch::x86_64::__cpuid_count(7, 0).edx & AMX_INT8 != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect() -> bool {
    use core::arch::x86_64::__cpuid_count;
    if !std::arch::is_x86_feature_detected!("xsave")
        || !std::arch::is_x86_feature_detected!("avx512f")
    {
        return false;
    }
    // Leaf 7 is read only when the maximum leaf (leaf 0's eax) covers it.
    if core::arch::x86_64::__cpuid(0).eax < 7 {
        return false;
    }
    let leaf7 = __cpuid_count(7, 0);
    const AMX_BF16: u32 = 1 << 22;
    const AMX_TILE: u32 = 1 << 24;
    if leaf7.edx & (AMX_BF16 | AMX_TILE) != AMX_BF16 | AMX_TILE {
        return false;
    }
    // SAFETY: XSAVE (and so XGETBV) is supported, checked above.
    let xcr0 = unsafe { xgetbv0() };
    const XTILE: u64 = (1 << 17) | (1 << 18);
    if xcr0 & XTILE != XTILE {
        return false;
    }
    request_tile_permission()
}

/// XCR0, read with `xgetbv` (the intrinsic would need `#[target_feature(xsave)]`).
///
/// # Safety
/// The CPU must support XSAVE.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
unsafe fn xgetbv0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV with ECX = 0 reads XCR0; the caller checked XSAVE support. It
    // touches no memory and only the named registers.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi,
            options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: 0 on success (also when
/// already granted).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_permission() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: a plain Linux x86-64 system call: number in rax, arguments in rdi/rsi;
    // the kernel clobbers rcx and r11 and touches no memory of ours for this request.
    unsafe {
        core::arch::asm!("syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _, lateout("r11") _,
            options(nostack));
    }
    ret == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> bool {
    false
}
