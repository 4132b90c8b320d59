//! `levit classify`: photos in, ImageNet classes out.
//!
//! Inputs are expanded ([`collect_inputs`]: files as given, directories walked), then
//! [`run`] classifies them as a pipeline: `workers` decode threads read, decode and
//! preprocess images into a bounded queue while `workers` engines (one thread each,
//! one shared [`Model`]) take them off it `batch` at a time and run each batch with
//! [`Engine::infer_batch`], which reads every weight once per batch. Decoding overlaps
//! inference, and the OS gives the cores to whichever stage has work: an engine waits
//! (asleep) for a full batch, a decoder for room in the queue. Every [`Outcome`] is
//! handed back in input order as soon as it and all earlier ones are done. A file
//! that cannot be read or decoded is an [`Outcome`] with an error; the others still
//! run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use levit::imagenet::{top_k, Prediction};
use levit::preprocess::{
    decode_image_with, probe_dimensions, read_image_file, DecodeOptions, Orientation, Preprocess,
    PreprocessError, DECODE_BYTES_PER_PIXEL,
};
use levit::{Engine, EngineOptions, Model};
use serde_json::json;

use crate::budget::{DecodeBudget, DEFAULT_DECODE_BUDGET};
use crate::cpu_time::ThreadTimer;
use crate::output::{self, OutputError};

/// File extensions picked up when walking a directory (case-insensitive). Files named
/// on the command line are decoded whatever their name.
pub const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

/// What happened to one input.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The input path.
    pub path: PathBuf,
    /// The top-k classes, best first, or a one-line reason it failed.
    pub result: Result<Vec<Prediction>, String>,
}

/// An expanded input: an image file to classify, or a path that already failed.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A file to decode.
    File(PathBuf),
    /// A command-line path that cannot be used (missing, unreadable directory, ...).
    Failed(PathBuf, String),
}

impl Input {
    /// The path.
    pub fn path(&self) -> &Path {
        match self {
            Input::File(p) | Input::Failed(p, _) => p,
        }
    }
}

/// How to classify.
#[derive(Clone, Copy, Debug)]
pub struct ClassifyOptions {
    /// Classes reported per image.
    pub top: usize,
    /// Decode threads, and engines (one thread each): one of each per core.
    pub workers: usize,
    /// Images per engine call ([`EngineOptions::max_batch`]).
    pub batch: usize,
    /// The eval transform (crop_pct, image size).
    pub preprocess: Preprocess,
    /// How images are read and decoded: EXIF orientation (timm ignores it), the pixel
    /// limit, truncated JPEGs (refused, as PIL refuses them).
    pub decode: DecodeOptions,
    /// Bytes all workers' decodes in flight may hold together ([`DecodeBudget`]).
    pub decode_budget: u64,
}

/// Totals of a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Inputs handled.
    pub images: usize,
    /// Inputs that failed.
    pub failed: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Decode threads and engines used (of each).
    pub workers: usize,
    /// Images per engine call.
    pub batch: usize,
    /// Where the CPU time went.
    pub stats: Stats,
}

impl Summary {
    /// Images classified per second of wall time.
    pub fn images_per_second(&self) -> f64 {
        let ok = (self.images - self.failed) as f64;
        ok / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// CPU time of each stage of a run ([`crate::cpu_time`]; wall time where the OS has no
/// thread clock), for `--stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    /// Images read, decoded and preprocessed (successfully).
    pub decoded: usize,
    /// CPU time of the decode threads (reading, decoding, preprocessing).
    pub decode_time: Duration,
    /// Images run through the engines.
    pub inferred: usize,
    /// CPU time of the engine threads in `infer_batch` and top-k.
    pub engine_time: Duration,
}

impl Stats {
    /// Decode and preprocess seconds per image.
    pub fn decode_seconds_per_image(&self) -> f64 {
        self.decode_time.as_secs_f64() / self.decoded.max(1) as f64
    }

    /// Engine seconds per image (at the run's batch size).
    pub fn engine_seconds_per_image(&self) -> f64 {
        self.engine_time.as_secs_f64() / self.inferred.max(1) as f64
    }

    /// Images/s `cores` would reach if they were never idle: cores / (engine + decode
    /// seconds per image).
    pub fn ideal_images_per_second(&self, cores: usize) -> f64 {
        let per_image = self.decode_seconds_per_image() + self.engine_seconds_per_image();
        cores as f64 / per_image.max(1e-12)
    }
}

/// Expands command-line paths: a file is taken as is, a directory is walked
/// recursively (sorted; files with an [`IMAGE_EXTENSIONS`] extension; symlinked
/// directories are not followed), a missing path becomes an [`Input::Failed`].
pub fn collect_inputs(paths: &[PathBuf]) -> Vec<Input> {
    let mut out = Vec::new();
    for path in paths {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => walk(path, &mut out, 0),
            Ok(_) => out.push(Input::File(path.clone())),
            Err(e) => out.push(Input::Failed(
                path.clone(),
                format!("cannot read image {}: {}", path.display(), io_reason(&e)),
            )),
        }
    }
    out
}

/// An OS error worded as the library words it ("no such file or directory").
pub(crate) use levit::os_reason as io_reason;

fn walk(dir: &Path, out: &mut Vec<Input>, depth: usize) {
    if depth > 64 {
        out.push(Input::Failed(
            dir.to_path_buf(),
            format!("{}: directories nested too deep", dir.display()),
        ));
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            out.push(Input::Failed(
                dir.to_path_buf(),
                format!("cannot read directory {}: {}", dir.display(), io_reason(&e)),
            ));
            return;
        }
    };
    let mut entries: Vec<(PathBuf, Option<std::fs::FileType>)> = entries
        .filter_map(|e| e.ok())
        .map(|e| (e.path(), e.file_type().ok()))
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, kind) in entries {
        match kind {
            Some(k) if k.is_dir() => walk(&path, out, depth + 1),
            Some(k) if k.is_symlink() && path.is_dir() => {}
            _ if is_image_name(&path) => out.push(Input::File(path)),
            _ => {}
        }
    }
}

/// Whether `path` has one of the [`IMAGE_EXTENSIONS`].
pub fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Decodes and preprocesses one file into `buf` (`3 * img_size²` floats), holding the
/// decode's memory bound from `budget` while its pixels exist. The error is one line
/// naming the file.
pub fn decode_file(
    options: &ClassifyOptions,
    budget: &DecodeBudget,
    buf: &mut [f32],
    path: &Path,
) -> Result<(), String> {
    let bytes = read_image_file(path, &options.decode).map_err(|e| one_line(e.to_string()))?;
    // Unknown headers reserve nothing: the decoder refuses them before allocating.
    let (w, h) = probe_dimensions(&bytes).unwrap_or((0, 0));
    let need = u64::from(w) * u64::from(h) * DECODE_BYTES_PER_PIXEL;
    let Some(reservation) = budget.reserve(need) else {
        return Err(one_line(format!(
            "{}: a {w}x{h} image needs up to {} MiB to decode, more than the {} MiB all \
             decodes in flight may hold",
            path.display(),
            need >> 20,
            budget.total() >> 20
        )));
    };
    let image = decode_image_with(&bytes, &options.decode).map_err(|source| {
        let e = PreprocessError::Decode {
            path: path.to_path_buf(),
            source,
        };
        one_line(e.to_string())
    })?;
    drop(bytes);
    options
        .preprocess
        .run_into(&image, buf)
        .map_err(|e| one_line(format!("{}: {e}", path.display())))?;
    drop((image, reservation));
    Ok(())
}

/// A message on one line (decoder errors may hold newlines).
fn one_line(s: String) -> String {
    s.replace(['\n', '\r'], " ").trim_end().to_string()
}

/// Decodes, preprocesses and classifies one file with `engine` (`buf`: the engine's
/// input, `3 * img_size²` floats), as [`decode_file`] then [`Engine::infer`].
pub fn classify_file(
    engine: &mut Engine,
    options: &ClassifyOptions,
    budget: &DecodeBudget,
    buf: &mut [f32],
    path: &Path,
) -> Result<Vec<Prediction>, String> {
    decode_file(options, budget, buf, path)?;
    let in_file = |e: levit::Error| one_line(format!("{}: {e}", path.display()));
    let logits = engine.infer(buf).map_err(in_file)?;
    top_k(logits, options.top).map_err(in_file)
}

/// Checks that `model` takes RGB images the transform can make.
pub fn check_model(model: &Model, preprocess: &Preprocess) -> anyhow::Result<()> {
    let c = model.config();
    if c.in_chans != 3 {
        anyhow::bail!(
            "the model takes {} input channels; classify needs an RGB (3-channel) model",
            c.in_chans
        );
    }
    if c.img_size as u32 != preprocess.img_size {
        anyhow::bail!(
            "the model takes {0}x{0} images but preprocessing makes {1}x{1}",
            c.img_size,
            preprocess.img_size
        );
    }
    preprocess.validate()?;
    Ok(())
}

/// A preprocessed image on its way to an engine: its input index and pixels.
type Decoded = (usize, Vec<f32>);

/// Classifies `inputs` with `options.workers` decode threads feeding as many batched
/// engines (module doc), calling `on_outcome(index, outcome)` in input order.
/// `on_outcome` returns `false` to stop early (the remaining inputs are not reported).
pub fn run(
    model: Arc<Model>,
    inputs: &[Input],
    options: &ClassifyOptions,
    mut on_outcome: impl FnMut(usize, Outcome) -> bool,
) -> anyhow::Result<Summary> {
    let start = Instant::now();
    let wanted = options.workers.clamp(1, inputs.len().max(1));
    let batch = options.batch.clamp(1, inputs.len().max(1));
    let engine_options = EngineOptions {
        threads: 1,
        max_batch: batch,
    };
    let mut engines = make_engines_with(&model, wanted, ENGINES_MEMORY, engine_options)?;
    let workers = engines.len();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let budget = DecodeBudget::new(options.decode_budget);
    let stats = Mutex::new(Stats::default());
    let mut failed = 0;
    let mut reported = 0;
    let (done_tx, done_rx) = mpsc::channel::<(usize, Outcome)>();
    // Two batches per engine in flight: an engine finds its next batch ready.
    let (image_tx, image_rx) = mpsc::sync_channel::<Decoded>(2 * batch * workers);
    // Shared by the engines; the first engine to end drops it, so that a decoder
    // waiting for room wakes up and ends too.
    let image_rx = Mutex::new(Some(image_rx));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (image_tx, done_tx) = (image_tx.clone(), done_tx.clone());
            let (next, stop, budget, stats) = (&next, &stop, &budget, &stats);
            scope.spawn(move || {
                let timer = ThreadTimer::start();
                let mut decoded = 0;
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(input) = inputs.get(i) else { break };
                    let failure = match input {
                        Input::File(path) => {
                            let mut buf = vec![0.0f32; options.preprocess.output_len()];
                            match decode_file(options, budget, &mut buf, path) {
                                Ok(()) => {
                                    decoded += 1;
                                    if image_tx.send((i, buf)).is_err() {
                                        break;
                                    }
                                    continue;
                                }
                                Err(reason) => reason,
                            }
                        }
                        Input::Failed(_, reason) => reason.clone(),
                    };
                    let outcome = Outcome {
                        path: input.path().to_path_buf(),
                        result: Err(failure),
                    };
                    if done_tx.send((i, outcome)).is_err() {
                        break;
                    }
                }
                let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                s.decoded += decoded;
                s.decode_time += timer.elapsed();
            });
        }
        drop(image_tx);
        for mut engine in engines.drain(..) {
            let done_tx = done_tx.clone();
            let (image_rx, stop, stats) = (&image_rx, &stop, &stats);
            scope.spawn(move || {
                let timer = ThreadTimer::start();
                let mut inferred = 0;
                let input_len = options.preprocess.output_len();
                let classes = engine.model().num_classes();
                let mut pixels = vec![0.0f32; batch * input_len];
                let mut logits = vec![0.0f32; batch * classes];
                let mut indices = Vec::with_capacity(batch);
                while !stop.load(Ordering::Relaxed) {
                    if !next_batch(image_rx, batch, &mut indices, &mut pixels) {
                        break;
                    }
                    let n = indices.len();
                    let ran =
                        engine.infer_batch(&pixels[..n * input_len], &mut logits[..n * classes]);
                    inferred += n;
                    let mut sent = true;
                    for (k, &i) in indices.iter().enumerate() {
                        let path = inputs[i].path();
                        let in_file =
                            |e: levit::Error| one_line(format!("{}: {e}", path.display()));
                        let result = match &ran {
                            Ok(()) => top_k(&logits[k * classes..][..classes], options.top)
                                .map_err(in_file),
                            Err(e) => Err(one_line(format!("{}: {e}", path.display()))),
                        };
                        let outcome = Outcome {
                            path: path.to_path_buf(),
                            result,
                        };
                        sent &= done_tx.send((i, outcome)).is_ok();
                    }
                    if !sent {
                        break;
                    }
                }
                image_rx.lock().unwrap_or_else(|e| e.into_inner()).take();
                let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                s.inferred += inferred;
                s.engine_time += timer.elapsed();
            });
        }
        drop(done_tx);
        // Hand outcomes over in input order.
        let mut pending = BTreeMap::new();
        for (i, outcome) in done_rx {
            pending.insert(i, outcome);
            while let Some(outcome) = pending.remove(&reported) {
                failed += usize::from(outcome.result.is_err());
                let keep_going = on_outcome(reported, outcome);
                reported += 1;
                if !keep_going {
                    stop.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
    });
    Ok(Summary {
        images: reported,
        failed,
        elapsed: start.elapsed(),
        workers,
        batch,
        stats: stats.into_inner().unwrap_or_else(|e| e.into_inner()),
    })
}

/// Takes the next batch off the shared queue: waits for up to `batch` images (fewer
/// only once the decoders are done), copies their pixels into `pixels` and their input
/// indices into `indices`. `false` when there is nothing left.
fn next_batch(
    queue: &Mutex<Option<mpsc::Receiver<Decoded>>>,
    batch: usize,
    indices: &mut Vec<usize>,
    pixels: &mut [f32],
) -> bool {
    indices.clear();
    // One engine fills its batch at a time; the others wait for the lock, asleep.
    let guard = queue.lock().unwrap_or_else(|e| e.into_inner());
    let Some(rx) = guard.as_ref() else {
        return false;
    };
    while indices.len() < batch {
        let Ok((i, image)) = rx.recv() else { break };
        let k = indices.len();
        pixels[k * image.len()..][..image.len()].copy_from_slice(&image);
        indices.push(i);
    }
    !indices.is_empty()
}

/// Bytes the engines of one run may hold together (each has its own arena): the
/// engine's bound for one plan, so `--threads` multiplies nothing past it.
pub const ENGINES_MEMORY: u64 = levit::graph::MAX_PLAN_BYTES;

/// Up to `wanted` engines over `model`, as many as fit in `limit` bytes
/// ([`ENGINES_MEMORY`]) and in the memory the process can get (a note says when fewer
/// than asked run); an error only when not even one can be made.
pub fn make_engines(model: &Arc<Model>, wanted: usize, limit: u64) -> anyhow::Result<Vec<Engine>> {
    make_engines_with(model, wanted, limit, EngineOptions::default())
}

/// [`make_engines`] with engines of `options` (threads, batch size).
pub fn make_engines_with(
    model: &Arc<Model>,
    wanted: usize,
    limit: u64,
    options: EngineOptions,
) -> anyhow::Result<Vec<Engine>> {
    let per_engine = model.engine_bytes_with(options)?.max(1);
    let fit = usize::try_from(limit / per_engine).unwrap_or(usize::MAX);
    let mut engines = Vec::new();
    for _ in 0..wanted.min(fit.max(1)) {
        match Engine::with_options(model.clone(), options) {
            Ok(engine) => engines.push(engine),
            Err(e) if engines.is_empty() => return Err(e.into()),
            Err(_) => break,
        }
    }
    if engines.len() < wanted {
        output::note(&format!(
            "levit: note: {} worker{} instead of {wanted}: each needs {} MiB of activations \
             ({} MiB for all workers at most)",
            engines.len(),
            if engines.len() == 1 { "" } else { "s" },
            per_engine.div_ceil(1 << 20),
            limit >> 20
        ));
    }
    Ok(engines)
}

/// The `--stats` line: CPU seconds per image of each stage, and the achieved images/s
/// against what the cores would reach if they never waited.
pub fn format_stats(summary: &Summary) -> String {
    let s = &summary.stats;
    let cores = summary.workers;
    let ideal = s.ideal_images_per_second(cores);
    let achieved = summary.images_per_second();
    format!(
        "levit: stats: engine {:.2} ms/image at batch {} ({} images), decode+preprocess \
         {:.2} ms/image ({} images), CPU time; {cores} core{} / (engine + decode) = {:.1} \
         images/s, achieved {:.1} images/s ({:.0} %)",
        1e3 * s.engine_seconds_per_image(),
        summary.batch,
        s.inferred,
        1e3 * s.decode_seconds_per_image(),
        s.decoded,
        if cores == 1 { "" } else { "s" },
        ideal,
        achieved,
        100.0 * achieved / ideal.max(1e-12),
    )
}

/// The text block printed for one outcome (`None` for a failure: those go to stderr).
pub fn format_text(outcome: &Outcome) -> Option<String> {
    let predictions = outcome.result.as_ref().ok()?;
    let mut s = format!("{}\n", outcome.path.display());
    for p in predictions {
        s += &format!("  {:6.2}%  {}\n", 100.0 * p.probability, p.label());
    }
    Some(s)
}

/// The JSON object (one line of `--json` output) for one outcome.
pub fn format_json(outcome: &Outcome) -> serde_json::Value {
    let path = outcome.path.display().to_string();
    match &outcome.result {
        Ok(predictions) => {
            let top: Vec<serde_json::Value> = predictions
                .iter()
                .map(|p| {
                    json!({
                        "class": p.class,
                        "label": p.label(),
                        "synset": p.synset(),
                        "probability": p.probability,
                    })
                })
                .collect();
            json!({ "path": path, "top": top })
        }
        Err(e) => json!({ "path": path, "error": e }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names() {
        assert!(is_image_name(Path::new("a/b.JPG")));
        assert!(is_image_name(Path::new("x.webp")));
        assert!(!is_image_name(Path::new("notes.txt")));
        assert!(!is_image_name(Path::new("jpg")));
    }
}

// ---- the command ---------------------------------------------------------------------

/// `levit classify` as parsed from the command line.
#[derive(Clone, Debug)]
pub struct Args {
    /// Model file.
    pub model: PathBuf,
    /// Files and directories.
    pub inputs: Vec<PathBuf>,
    /// Classes per image.
    pub top: usize,
    /// JSON Lines on stdout instead of text.
    pub json: bool,
    /// Decode threads and engines (of each); `None`: one per core.
    pub threads: Option<usize>,
    /// Images per engine call.
    pub batch: usize,
    /// Print where the time went after the summary.
    pub stats: bool,
    /// timm's crop fraction (0.9) or another.
    pub crop_pct: f64,
    /// Apply EXIF orientation.
    pub exif: bool,
    /// Decode JPEGs that end early (the missing part grey) instead of refusing them.
    pub allow_truncated: bool,
    /// Show a progress bar on a terminal (stderr).
    pub progress: bool,
    /// Model loading settings.
    pub load: crate::model::LoadSettings,
}

/// Exit status of `levit classify` when some inputs failed and the others ran.
/// Every image failing is this status too: the run itself worked and reported each
/// image, so the status says "see the per-image errors", as it does for one failure.
pub const EXIT_SOME_FAILED: u8 = 3;

/// Runs `levit classify`: prints results to stdout (text or JSON Lines), failures and
/// the summary to stderr. Returns the exit status: 0 when every image was classified,
/// [`EXIT_SOME_FAILED`] when one or more failed (each is reported; the others were
/// classified); `Err` when nothing could run.
pub fn command(args: &Args) -> anyhow::Result<u8> {
    use std::io::{IsTerminal, Write};

    let model = Arc::new(crate::model::load(&args.model, &args.load)?);
    let preprocess = Preprocess {
        crop_pct: args.crop_pct,
        ..model.preprocessing()
    };
    check_model(&model, &preprocess)?;
    let inputs = collect_inputs(&args.inputs);
    if inputs.is_empty() {
        anyhow::bail!(
            "no images found in {} (looked for {} files)",
            args.inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            IMAGE_EXTENSIONS.join("/")
        );
    }
    let workers = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let options = ClassifyOptions {
        top: args.top,
        workers,
        batch: args.batch,
        preprocess,
        decode: DecodeOptions {
            orientation: if args.exif {
                Orientation::Apply
            } else {
                Orientation::Ignore
            },
            allow_truncated: args.allow_truncated,
            ..DecodeOptions::default()
        },
        decode_budget: DEFAULT_DECODE_BUDGET,
    };
    let bar = (args.progress && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(inputs.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40.cyan/blue} {pos}/{len} images  {per_sec}  eta {eta}",
            )
            .expect("valid template"),
        );
        bar
    });
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut write_error: Option<OutputError> = None;
    let summary = run(model, &inputs, &options, |_, outcome| {
        let print = |out: &mut std::io::StdoutLock| -> std::io::Result<()> {
            if let Err(reason) = &outcome.result {
                output::note(&format!("levit: error: {reason}"));
            }
            if args.json {
                writeln!(out, "{}", format_json(&outcome))?;
            } else if let Some(text) = format_text(&outcome) {
                out.write_all(output::printable(&text, true).as_bytes())?;
            }
            out.flush()
        };
        let written = match &bar {
            Some(bar) => {
                let r = bar.suspend(|| print(&mut out));
                bar.inc(1);
                r
            }
            None => print(&mut out),
        };
        // A closed pipe or a full disk: stop, the remaining results have nowhere to go.
        write_error = written.err().map(OutputError::from);
        write_error.is_none()
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(e) = write_error {
        return Err(e.into());
    }
    output::note(&format!(
        "levit: {} image{}, {} failed, {:.2} s, {:.1} images/s ({} worker{}, batch {})",
        summary.images,
        if summary.images == 1 { "" } else { "s" },
        summary.failed,
        summary.elapsed.as_secs_f64(),
        summary.images_per_second(),
        summary.workers,
        if summary.workers == 1 { "" } else { "s" },
        summary.batch,
    ));
    if args.stats {
        output::note(&format_stats(&summary));
    }
    Ok(if summary.failed > 0 {
        EXIT_SOME_FAILED
    } else {
        0
    })
}
