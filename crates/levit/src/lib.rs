//! levit-rs: fast, allocation-free CPU inference for the LeViT image classifiers
//! (LeViT-128S, 128, 192, 256, 384 and the other timm configs), in pure Rust.
//!
//! # 1. Get a weight file
//! The engine runs `.lvt` files: a checkpoint converted once, BatchNorm folded and the
//! weights packed for the kernels, memory-mapped at load. Convert a timm
//! (`timm/levit_128s.fb_dist_in1k`, `model.safetensors`) or facebookresearch
//! (`LeViT-128S-96703c44.pth`) checkpoint with the Python tool in the repository's
//! `weights-tool/`:
//!
//! ```sh
//! pip install ./weights-tool
//! levit-weights convert model.safetensors -o levit_128s.lvt
//! ```
//!
//! Without a checkpoint, [`synth`] writes a model with random trained-like weights,
//! which is what the examples below load.
//!
//! # 2. Load
//! A [`Model`] is the validated file plus its execution plan. It is immutable,
//! `Send + Sync`, and shared by any number of [`Engine`]s through an `Arc`.
//!
//! ```
//! # fn main() -> levit::Result<()> {
//! # let dir = std::env::temp_dir().join(format!("levit-doc-load-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let path = dir.join("levit_128s.lvt");
//! # let config = levit::synth::variant_config("128s").unwrap();
//! # std::fs::write(&path, levit::synth::random_weight_file(&config, 7)?).unwrap();
//! use std::sync::Arc;
//!
//! let model = Arc::new(levit::Model::load(&path)?);
//! assert_eq!(model.num_classes(), 1000);
//! assert_eq!(model.input_len(), 3 * 224 * 224);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(()) }
//! ```
//!
//! # 3. Preprocess
//! With the cargo feature `preprocess` (off by default, so that users who bring their
//! own tensors compile no image decoder), [`preprocess`] decodes JPEG, PNG and WebP as
//! PIL does and applies timm's eval transform (resize 248 with Pillow's bicubic, center
//! crop 224, ImageNet normalization) bit for bit. The input is a normalized
//! `[3, img_size, img_size]` CHW `f32` slice; any other source of such tensors works.
//!
//! ```no_run
//! # #[cfg(feature = "preprocess")]
//! # fn main() -> levit::Result<()> {
//! let model = levit::Model::load("levit_128s.lvt")?;
//! let image = levit::preprocess::open_image("cat.jpg")?; // JPEG, PNG or WebP
//! let input = model.preprocessing().run(&image)?; // [3, 224, 224], normalized
//! # Ok(()) }
//! # #[cfg(not(feature = "preprocess"))] fn main() {}
//! ```
//!
//! # 4. Infer and read the classes
//! [`Engine::infer`] runs one image in the engine's arena (no allocation per call) and
//! returns the logits; [`imagenet::top_k`] turns them into ranked classes with their
//! ImageNet-1k names and softmax probabilities.
//!
//! ```
//! # fn main() -> levit::Result<()> {
//! # let config = levit::synth::variant_config("128s").unwrap();
//! # let bytes = levit::synth::random_weight_file(&config, 7)?;
//! # let model = std::sync::Arc::new(levit::Model::from_bytes(&bytes, Default::default())?);
//! # let input = vec![0.5f32; model.input_len()];
//! let mut engine = levit::Engine::new(model.clone()); // one per thread
//! let logits = engine.infer(&input)?; // &[f32], one per class
//! for p in levit::imagenet::top_k(logits, 5)? {
//!     println!("{:6.2}%  {}", 100.0 * p.probability, p.label());
//! }
//! # Ok(()) }
//! ```
//!
//! # 5. Threads
//! Two ways, which combine: one [`Engine`] per thread over the same `Arc<Model>` (one
//! arena each, no reload: throughput), or [`EngineOptions::threads`] for one engine
//! that splits every kernel over several cores (latency). Results are bitwise
//! identical for every thread count. For throughput on many images,
//! [`EngineOptions::max_batch`] makes an engine whose [`Engine::infer_batch`] runs every
//! token-wise GEMM once over a whole batch, reading each weight once per batch instead
//! of once per image (the same logits, bit for bit).
//!
//! ```
//! # fn main() -> levit::Result<()> {
//! # let config = levit::synth::variant_config("128s").unwrap();
//! # let bytes = levit::synth::random_weight_file(&config, 7)?;
//! # let model = std::sync::Arc::new(levit::Model::from_bytes(&bytes, Default::default())?);
//! let options = levit::EngineOptions { threads: 2, ..Default::default() };
//! let mut engine = levit::Engine::with_options(model.clone(), options)?;
//! # let _ = engine.infer(&vec![0.0; model.input_len()])?;
//! # Ok(()) }
//! ```
//!
//! # 6. Precision
//! A model runs in its file's precision unless [`ModelOptions::precision`] says
//! otherwise. [`Precision::Bf16`] rounds the weights and activations of the GEMMs to
//! bfloat16 (f32 accumulation): about 2x faster where the CPU has AVX512_BF16 or AMX,
//! at about 1e-2 relative error on the logits (the repository's `docs/precision.md`
//! has the measurements). A bf16 request on an f32 file repacks the weights once at
//! load; the SIMD path is picked at load too ([`Model::isa`], `LEVIT_ISA` to force a
//! lower one).
//!
//! ```
//! # fn main() -> levit::Result<()> {
//! # let config = levit::synth::variant_config("128s").unwrap();
//! # let bytes = levit::synth::random_weight_file(&config, 7)?;
//! use levit::{Model, ModelOptions, Precision};
//!
//! let options = ModelOptions { precision: Some(Precision::Bf16), ..Default::default() };
//! let model = Model::from_bytes(&bytes, options)?;
//! assert_eq!(model.precision(), Precision::Bf16);
//! # Ok(()) }
//! ```
//!
//! # 7. Errors
//! Every public call returns [`Result`], whose [`Error`] covers the file, the config,
//! the SIMD path, the inputs, images ([`Error::Image`], feature `preprocess`) and
//! non-finite logits; `?` works for all of them. A plain load checks the file's
//! structure, bounds, shapes and config checksum but does not read every weight: for
//! files from untrusted storage turn on [`ModelOptions::verify_checksums`] or call
//! [`Model::verify_checksums`], which also catches a single flipped byte.
//!
//! ```
//! # fn main() -> levit::Result<()> {
//! # let config = levit::synth::variant_config("128s").unwrap();
//! let mut bytes = levit::synth::random_weight_file(&config, 7)?;
//! let middle = bytes.len() / 2;
//! bytes[middle] ^= 0x40; // one flipped bit in a tensor
//! let model = levit::Model::from_bytes(&bytes, Default::default())?; // loads...
//! assert!(model.verify_checksums().is_err()); // ...but does not verify
//! match levit::Engine::load("no-such-model.lvt") {
//!     Err(e) => eprintln!("{e}"), // "cannot open no-such-model.lvt: no such file ..."
//!     Ok(_) => unreachable!(),
//! }
//! # Ok(()) }
//! ```
//!
//! # Debug builds
//! Unoptimised, the kernels are about 55x slower (LeViT-192: ~900 ms per image instead
//! of ~15 ms). A debug build of your program can keep its own code unoptimised and
//! still run the engine at release speed with this in your `Cargo.toml` (measured:
//! 12-17 ms; with `opt-level` alone, 21 ms, the kernels' debug assertions still on):
//!
//! ```toml
//! [profile.dev.package."*"]
//! opt-level = 3
//! debug-assertions = false
//! overflow-checks = false
//! ```

mod arena;
mod engine;
mod error;
pub mod imagenet;
mod model;
mod run;
pub mod synth;
mod weights;
pub use run::Tracer;

/// Image decoding and timm's eval preprocessing: the `levit-image` crate (cargo feature
/// `preprocess`).
#[cfg(feature = "preprocess")]
pub use levit_image as preprocess;

pub use engine::{Engine, EngineOptions, MAX_BATCH, MAX_THREADS};
pub use error::{os_reason, Error, FormatError, GraphError, IsaError, Result};
pub use levit_format::LoadMode;
pub use levit_graph::{Config, KeepFloat, Tap};

/// The execution plan types (steps, labels, shapes), for profilers and tools.
pub mod graph {
    pub use levit_graph::{
        AttentionStep, ConvStep, GemmStep, MeanRowsStep, Plan, Step, MAX_PLAN_BYTES,
    };
}

/// The kernels' own names and types, for tools that report which kernel runs.
pub mod kernels {
    pub use levit_kernels::gemm::GemmKernel;
    pub use levit_kernels::peak;
}
pub use levit_kernels::{Isa, Precision};
pub use model::{Model, ModelOptions, DEFAULT_MAX_MACS};

/// The README's Rust snippets, compiled as doctests (they use `levit::preprocess`, so
/// with the `preprocess` feature: `cargo test --workspace` or `-p levit --all-features`).
#[cfg(all(doctest, feature = "preprocess"))]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// The Rust snippets of `docs/precision.md`, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/precision.md")]
struct PrecisionDocDoctests;
