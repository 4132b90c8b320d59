//! Building a [`Plan`] from a config: the stem convs, the stages (downsample attention
//! and MLP, then blocks), the head; buffers are recorded with their lifetimes and
//! packed into one arena at the end.

use std::collections::HashMap;
use std::ops::Range;

use levit_kernels::attention::{AttentionShape, HeadView};
use levit_kernels::conv::{ConvGeometry, ImageLayout};
use levit_kernels::gemm::Epilogue;
use levit_kernels::{Activation, Precision};

use crate::arena_layout::{ArenaPlanner, BufId};
use crate::bias_tables::{BiasGather, BiasTables};
use crate::plan::{bias_floats, check_plan_bytes, Plan, Unpacked};
use crate::step::{AttentionStep, ConvStep, GemmStep, ImageSource, MeanRowsStep, Step, WeightId};
use crate::tensors::{packed_weight_shape, tensor_specs};
use crate::{attention_bias, AttnDims, Config, GraphError, KeepFloat, TensorSpec};

/// Target size of a conv block's column matrix, in floats (384 KiB: with the conv's
/// weights it stays in a 1 MiB L2, and it keeps the arena small).
const CONV_BLOCK_FLOATS: usize = 96 * 1024;

/// Convolutions over at most this many input channels run in f32 in every precision.
/// Their weights are tiny (27x16 and 144x32 in LeViT-128S) and their time goes into
/// reading pixels: the f32 AVX-512 kernels read the taps in place, where a reduced
/// precision GEMM needs an im2col copy first (measured, LeViT-128S, AMX: stem.0
/// 0.19 ms in f32 against 0.67 ms through im2col and the bf16 kernel; stem.1 0.30
/// against 0.57 ms).
pub const F32_CONV_MAX_CIN: usize = 16;

/// The precision a stem conv over `cin` channels runs in, in a `precision` plan.
pub fn conv_precision(precision: Precision, cin: usize) -> Precision {
    if cin <= F32_CONV_MAX_CIN {
        Precision::F32
    } else {
        precision
    }
}

/// The precision of the attention cores of a `precision` plan: bf16 in int8 plans
/// (see `Builder::attention`), else the plan's.
pub fn attention_precision(precision: Precision) -> Precision {
    match precision {
        Precision::Int8 => Precision::Bf16,
        p => p,
    }
}

struct Builder<'w> {
    arena: ArenaPlanner,
    steps: Vec<PendingStep>,
    labels: Vec<String>,
    weights: Vec<TensorSpec>,
    weight_index: HashMap<String, usize>,
    /// Bias tables to gather once the plan's memory has been checked: the table's
    /// stored data, its row stride, the attention and where it goes.
    gathers: Vec<BiasGather<'w>>,
    /// Floats of bias tables planned so far.
    bias_len: usize,
    row_tables: Vec<u32>,
    taps: Vec<(String, BufId, usize, usize)>,
    attention_scratch: usize,
    lookup: &'w dyn Fn(&str) -> Option<&'w [f32]>,
    precision: Precision,
    keep_float: KeepFloat,
}

/// A step whose buffers are still ids (the arena is packed after the last step).
pub(crate) type PendingStep = Step<BufId>;

impl<'w> Builder<'w> {
    fn step(&self) -> usize {
        self.steps.len()
    }

    /// A token buffer: one copy per image of a batch.
    fn buf(&mut self, len: usize) -> BufId {
        let s = self.step();
        self.arena.alloc(len, s, true)
    }

    /// A stem buffer used only while one image's stem runs: one copy for the batch.
    fn stem_buf(&mut self, len: usize) -> BufId {
        let s = self.step();
        self.arena.alloc(len, s, false)
    }

    fn push(&mut self, label: String, step: PendingStep) {
        self.labels.push(label);
        let s = self.step();
        let tap_buf = match step {
            Step::Tap(i) => Some(self.taps[i].1),
            _ => None,
        };
        for b in step.buffers().chain(tap_buf) {
            self.arena.touch(b, s);
        }
        self.steps.push(step);
    }

    /// The precision of `layer`'s products: the plan's, or bf16 for a layer an int8
    /// plan keeps in float.
    fn layer_precision(&self, layer: &str) -> Precision {
        if self.precision == Precision::Int8 && self.keep_float.keeps(layer) {
            Precision::Bf16
        } else {
            self.precision
        }
    }

    /// `{prefix}.weight`, its step running in `precision`: where that is not the
    /// plan's (a layer an int8 plan keeps in float, a small stem conv kept in f32), the
    /// weight is expected packed `[k, n]` in it (the model converts at load).
    fn weight_in(
        &mut self,
        prefix: &str,
        precision: Precision,
        k: usize,
        n: usize,
    ) -> Result<WeightId, GraphError> {
        let weight = self.weight(format!("{prefix}.weight"))?;
        if precision != self.precision {
            let spec = &mut self.weights[weight.0];
            spec.precision = precision;
            spec.shape = packed_weight_shape(precision, k, n);
        }
        Ok(weight)
    }

    fn weight(&mut self, name: String) -> Result<WeightId, GraphError> {
        self.weight_index
            .get(&name)
            .map(|&i| WeightId(i))
            .ok_or(GraphError::MissingTensor(name))
    }

    /// `out = epilogue(x · W + b)` with `W`, `b` named `{prefix}.weight/.bias`.
    #[allow(clippy::too_many_arguments)]
    fn linear(
        &mut self,
        prefix: &str,
        x: BufId,
        rows: Option<Range<usize>>,
        m: usize,
        k: usize,
        n: usize,
        epilogue: Epilogue,
        out: BufId,
    ) -> Result<(), GraphError> {
        let precision = self.layer_precision(prefix);
        let weight = self.weight_in(prefix, precision, k, n)?;
        let bias = self.weight(format!("{prefix}.bias"))?;
        self.push(
            prefix.to_string(),
            Step::Gemm(GemmStep {
                a: x,
                lda: k,
                a_rows: rows,
                m,
                k,
                n,
                weight,
                precision,
                bias,
                epilogue,
                c: out,
                ldc: n,
            }),
        );
        Ok(())
    }

    /// Plans the gathered bias table `{prefix}.attention_biases` for `a` (gathered by
    /// [`BiasTables::gather`], after the memory check).
    fn bias_table(&mut self, prefix: &str, a: &AttnDims) -> Result<Range<usize>, GraphError> {
        let name = format!("{prefix}.attention_biases");
        let id = self.weight(name.clone())?;
        let spec = &self.weights[id.0];
        let row_stride = spec.shape[1];
        let table = (self.lookup)(&name).ok_or(GraphError::MissingTensor(name))?;
        let range = self.bias_len..self.bias_len + a.heads * a.nq() * a.nk();
        self.bias_len = range.end;
        self.gathers.push((table, row_stride, *a, range.clone()));
        Ok(range)
    }

    fn attention(
        &mut self,
        prefix: &str,
        a: &AttnDims,
        x: BufId,
        act: Activation,
    ) -> Result<BufId, GraphError> {
        let (nq, nk, h, d, dv) = (a.nq(), a.nk(), a.heads, a.key_dim, a.val_dim);
        let bias_table = self.bias_table(prefix, a)?;
        let shape = AttentionShape {
            heads: h,
            key_dim: d,
            val_dim: dv,
            nq,
            nk,
            scale: (d as f64).powf(-0.5) as f32,
        };
        let (q, q_view, kv, k_view, v_view);
        if a.is_subsample() {
            let kv_width = h * (d + dv);
            kv = self.buf(nk * kv_width);
            self.linear(
                &format!("{prefix}.kv"),
                x,
                None,
                nk,
                a.dim_in,
                kv_width,
                Epilogue::BiasAct(Activation::None),
                kv,
            )?;
            let rows = attention_bias::subsample_rows(a.r_in);
            let start = self.row_tables.len();
            self.row_tables.extend_from_slice(&rows);
            q = self.buf(nq * h * d);
            self.linear(
                &format!("{prefix}.q"),
                x,
                Some(start..self.row_tables.len()),
                nq,
                a.dim_in,
                h * d,
                Epilogue::BiasAct(Activation::None),
                q,
            )?;
            q_view = HeadView {
                offset: 0,
                row_stride: h * d,
                head_stride: d,
            };
            k_view = HeadView {
                offset: 0,
                row_stride: kv_width,
                head_stride: d + dv,
            };
            v_view = HeadView {
                offset: d,
                row_stride: kv_width,
                head_stride: d + dv,
            };
        } else {
            let width = h * (2 * d + dv);
            kv = self.buf(nk * width);
            self.linear(
                &format!("{prefix}.qkv"),
                x,
                None,
                nk,
                a.dim_in,
                width,
                Epilogue::BiasAct(Activation::None),
                kv,
            )?;
            q = kv;
            q_view = HeadView {
                offset: 0,
                row_stride: width,
                head_stride: 2 * d + dv,
            };
            k_view = HeadView {
                offset: d,
                row_stride: width,
                head_stride: 2 * d + dv,
            };
            v_view = HeadView {
                offset: 2 * d,
                row_stride: width,
                head_stride: 2 * d + dv,
            };
        }
        let out = self.buf(shape.out_len());
        self.attention_scratch = self.attention_scratch.max(shape.scratch_len());
        self.push(
            format!("{prefix}.core"),
            Step::Attention(AttentionStep {
                shape,
                q,
                q_view,
                kv,
                k_view,
                v_view,
                bias_table,
                act,
                // An int8 plan runs its attention cores (q·kᵀ, softmax, p·V: key_dim
                // 16-32, no weights) on the bf16 attention kernel of its level (f32
                // where the level has none): on AMX that halves the attention time
                // (LeViT-384: 5.1 -> 2.3 ms), which had made int8 slower than bf16,
                // within the int8 golden tolerance (docs/precision.md).
                precision: attention_precision(self.precision),
                out,
            }),
        );
        Ok(out)
    }

    /// `x += fc2(act(fc1(x)))`.
    fn mlp(
        &mut self,
        prefix: &str,
        x: BufId,
        rows: usize,
        dim: usize,
        hidden: usize,
        act: Activation,
    ) -> Result<(), GraphError> {
        let h = self.buf(rows * hidden);
        self.linear(
            &format!("{prefix}.fc1"),
            x,
            None,
            rows,
            dim,
            hidden,
            Epilogue::BiasAct(act),
            h,
        )?;
        self.linear(
            &format!("{prefix}.fc2"),
            h,
            None,
            rows,
            hidden,
            dim,
            Epilogue::BiasResidual,
            x,
        )
    }

    fn tap(&mut self, name: String, buf: BufId, rows: usize, cols: usize) {
        self.taps.push((name, buf, rows, cols));
        let i = self.taps.len() - 1;
        self.push(format!("tap.{}", self.taps[i].0), Step::Tap(i));
    }
}

impl Plan {
    /// Builds the plan for `config` with GEMM and conv weights in `precision`.
    /// `lookup` returns an f32 tensor's stored data by name (used once, to gather the
    /// attention-bias tables).
    pub fn build<'w>(
        config: &Config,
        precision: Precision,
        lookup: &'w dyn Fn(&str) -> Option<&'w [f32]>,
    ) -> Result<Plan, GraphError> {
        Plan::build_with(config, precision, &KeepFloat::none(), lookup)
    }

    /// [`Plan::build`] for an int8 plan that keeps the layers `keep_float` selects in
    /// float (bf16, see [`KeepFloat`]); an error if a selector names no layer, or if
    /// layers are kept in a plan that is not int8.
    pub fn build_with<'w>(
        config: &Config,
        precision: Precision,
        keep_float: &KeepFloat,
        lookup: &'w dyn Fn(&str) -> Option<&'w [f32]>,
    ) -> Result<Plan, GraphError> {
        let dims = config.dims()?;
        if !keep_float.is_empty() && precision != Precision::Int8 {
            return Err(GraphError::unsupported(
                "keep_float",
                format!(
                    "keeping layers in float ({keep_float}) applies to int8 models; this one \
                     runs in {precision}"
                ),
            ));
        }
        keep_float.check(&dims)?;
        // Checked before anything is gathered or allocated.
        let bias_len = bias_floats(&dims);
        check_plan_bytes(bias_len)?;
        let weights = tensor_specs(&dims, precision);
        let weight_index = weights
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        let act = config.activation();
        let mut b = Builder {
            arena: ArenaPlanner::default(),
            steps: Vec::new(),
            labels: Vec::new(),
            weights,
            weight_index,
            gathers: Vec::new(),
            bias_len: 0,
            row_tables: Vec::new(),
            taps: Vec::new(),
            attention_scratch: 0,
            lookup,
            precision,
            keep_float: keep_float.clone(),
        };

        // Stem: four 3x3 stride-2 convs as blocked im2col + GEMM; the last one's HWC
        // output is the token matrix `[R0², E0]`. A batch runs the stem image by image
        // (its column blocks and intermediate images stay in L2), so only the last
        // output has a copy per image.
        let mut image: Option<BufId> = None;
        let stem_convs = dims.stem.len();
        for (i, &(cin, cout, side)) in dims.stem.iter().enumerate() {
            let geometry = ConvGeometry {
                cin,
                hin: side,
                win: side,
            };
            let row_floats = (geometry.wout() * geometry.k()).max(1);
            let block_rows = (CONV_BLOCK_FLOATS / row_floats).clamp(1, geometry.hout().max(1));
            let cols = b.stem_buf(block_rows * row_floats);
            let out_len = geometry.hout() * geometry.wout() * cout;
            let out = if i + 1 == stem_convs {
                b.buf(out_len)
            } else {
                b.stem_buf(out_len)
            };
            let layout = if image.is_none() {
                ImageLayout::Chw
            } else {
                ImageLayout::Hwc
            };
            let conv_act = if i < 3 { act } else { Activation::None };
            let conv_precision = conv_precision(b.layer_precision(&format!("stem.{i}")), cin);
            let weight = b.weight_in(&format!("stem.{i}"), conv_precision, geometry.k(), cout)?;
            let step = Step::Conv(ConvStep {
                src: image.map_or(ImageSource::Input, ImageSource::Arena),
                layout,
                geometry,
                block_rows,
                cols,
                weight,
                precision: conv_precision,
                bias: b.weight(format!("stem.{i}.bias"))?,
                epilogue: Epilogue::BiasAct(conv_act),
                cout,
                out,
                batched_out: i + 1 == stem_convs,
            });
            b.push(format!("stem.{i}"), step);
            image = Some(out);
        }
        let mut x = image.expect("four stem convs");
        let r0 = dims.stages[0].resolution;
        b.tap("stem".into(), x, r0 * r0, dims.stages[0].dim);

        for (s, stage) in dims.stages.iter().enumerate() {
            let n = stage.resolution * stage.resolution;
            if let Some((a, hidden)) = &stage.downsample {
                let p = format!("stages.{s}.downsample");
                let o = b.attention(&format!("{p}.attn"), a, x, act)?;
                let y = b.buf(n * stage.dim);
                b.linear(
                    &format!("{p}.attn.proj"),
                    o,
                    None,
                    n,
                    a.heads * a.val_dim,
                    stage.dim,
                    Epilogue::BiasAct(Activation::None),
                    y,
                )?;
                x = y;
                b.mlp(&format!("{p}.mlp"), x, n, stage.dim, *hidden, act)?;
            }
            let a = stage.attn;
            for j in 0..stage.depth {
                let p = format!("stages.{s}.blocks.{j}");
                let o = b.attention(&format!("{p}.attn"), &a, x, act)?;
                b.linear(
                    &format!("{p}.attn.proj"),
                    o,
                    None,
                    n,
                    a.heads * a.val_dim,
                    stage.dim,
                    Epilogue::BiasResidual,
                    x,
                )?;
                b.mlp(&format!("{p}.mlp"), x, n, stage.dim, stage.mlp_hidden, act)?;
            }
            b.tap(format!("stage{s}"), x, n, stage.dim);
        }

        let last = dims.stages.last().expect("at least one stage");
        let rows = last.resolution * last.resolution;
        let pooled = b.buf(last.dim);
        b.push(
            "head.pool".to_string(),
            Step::MeanRows(MeanRowsStep {
                x,
                rows,
                cols: last.dim,
                out: pooled,
            }),
        );
        let logits = b.buf(dims.num_classes);
        b.linear(
            "head",
            pooled,
            None,
            1,
            last.dim,
            dims.num_classes,
            Epilogue::BiasAct(Activation::None),
            logits,
        )?;

        // The arena and one thread's attention scratch are per engine, the bias tables
        // per model: all of it is checked before the tables, the only large
        // allocation at load, are gathered.
        debug_assert_eq!(b.bias_len as u64, bias_len);
        let unpacked = Unpacked {
            steps: b.steps,
            buffers: b.arena,
            taps: b.taps,
            logits,
            classes: dims.num_classes,
            image_row_tables: b.row_tables,
            per_image_steps: stem_convs,
        };
        let single = unpacked.layout(1)?;
        check_plan_bytes(
            bias_len
                .saturating_add(single.arena_len as u64)
                .saturating_add(b.attention_scratch as u64),
        )?;
        let bias_tables = BiasTables::gather(&b.gathers, b.bias_len)?;
        let plan = Plan {
            config: config.clone(),
            precision,
            keep_float: keep_float.clone(),
            input_len: config.in_chans * config.img_size * config.img_size,
            output: single.output,
            dims,
            steps: single.steps,
            labels: b.labels,
            weights: b.weights,
            arena_len: single.arena_len,
            bias_tables,
            row_tables: single.row_tables,
            taps: single.taps,
            attention_scratch: b.attention_scratch,
            unpacked,
        };
        Ok(plan)
    }
}
