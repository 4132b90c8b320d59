//! The plan's own invariants, on a two-stage config small enough to check by hand and
//! on a full-size one: what it multiplies, where its buffers live, which tensors it
//! asks for in each precision.

use levit_kernels::Precision;

use crate::config::ActKind;
use crate::step::{ImageSource, Step};
use crate::{packed_weight_shape, BufRange, Config, GraphError, Plan, MAX_PLAN_BYTES};

fn two_stages() -> Config {
    Config {
        variant: "plan_test".into(),
        img_size: 64,
        in_chans: 3,
        num_classes: 10,
        embed_dim: vec![32, 48],
        key_dim: 8,
        num_heads: vec![2, 3],
        depth: vec![1, 2],
        attn_ratio: vec![2.0, 2.0],
        mlp_ratio: vec![2.0, 2.0],
        down_attn_ratio: 4.0,
        down_mlp_ratio: 2.0,
        act: ActKind::HardSwish,
        distilled: true,
    }
}

fn levit_128s() -> Config {
    Config {
        variant: "levit_128s".into(),
        img_size: 224,
        num_classes: 1000,
        embed_dim: vec![128, 256, 384],
        key_dim: 16,
        num_heads: vec![4, 6, 8],
        depth: vec![2, 3, 4],
        attn_ratio: vec![2.0; 3],
        mlp_ratio: vec![2.0; 3],
        ..two_stages()
    }
}

/// Every attention-bias table is a zero tensor of the right length.
fn build(config: &Config, precision: Precision) -> Plan {
    let zeros = vec![0.0f32; 1 << 20];
    let lookup = |_: &str| Some(&zeros[..]);
    Plan::build(config, precision, &lookup).expect("plan builds")
}

#[test]
fn step_counts_and_macs_follow_the_config() {
    let config = two_stages();
    let plan = build(&config, Precision::F32);
    let count = |kind: &str| plan.steps.iter().filter(|s| s.kind() == kind).count();
    assert_eq!(count("conv"), 4);
    // Stage 0: 1 block; stage 1: downsample + 2 blocks.
    assert_eq!(count("attention"), 4);
    // Per block qkv, proj, fc1, fc2; the downsample kv, q, proj, fc1, fc2; the head.
    assert_eq!(count("gemm"), 3 * 4 + 5 + 1);
    assert_eq!(count("mean"), 1);
    assert_eq!(plan.labels.len(), plan.steps.len());

    // MACs from the architecture, independently of the builder.
    let stem: u64 = [(3, 4, 64), (4, 8, 32), (8, 16, 16), (16, 32, 8)]
        .iter()
        .map(|&(cin, cout, side)| ((side / 2) * (side / 2) * 9 * cin * cout) as u64)
        .sum();
    let (n0, n1) = (16u64, 4u64);
    let block = |n: u64, e: u64, h: u64, d: u64, dv: u64| {
        n * e * h * (2 * d + dv) + h * n * n * (d + dv) + n * h * dv * e + 2 * n * e * 2 * e
    };
    let down = {
        let (h, d, dv, e0, e1) = (4u64, 8, 32, 32, 48);
        n0 * e0 * h * (d + dv)
            + n1 * e0 * h * d
            + h * n1 * n0 * (d + dv)
            + n1 * h * dv * e1
            + 2 * n1 * e1 * 2 * e1
    };
    let want = stem + block(n0, 32, 2, 8, 16) + down + 2 * block(n1, 48, 3, 8, 16) + 48 * 10;
    assert_eq!(plan.macs(), want);
}

#[test]
fn buffers_lie_in_the_arena_and_never_alias_within_a_step() {
    for config in [two_stages(), levit_128s()] {
        let plan = build(&config, Precision::F32);
        let inside = |r: &BufRange| r.end() <= plan.arena_len && r.offset.is_multiple_of(16);
        for (i, step) in plan.steps.iter().enumerate() {
            let bufs: Vec<BufRange> = step.buffers().collect();
            assert!(bufs.iter().all(inside), "step {i} ({})", plan.labels[i]);
            for (x, a) in bufs.iter().enumerate() {
                for b in &bufs[x + 1..] {
                    // Attention reads q and kv from one buffer when they are the qkv output.
                    let shared_qkv = matches!(step, Step::Attention(s) if s.q == s.kv) && a == b;
                    assert!(shared_qkv || !a.overlaps(b), "step {i}: {a:?} and {b:?}");
                }
            }
            if let Step::Conv(c) = step {
                assert_eq!(
                    c.blocks().map(|r| r.len()).sum::<usize>(),
                    c.geometry.hout()
                );
                assert_eq!(i == 0, c.src == ImageSource::Input);
            }
        }
        assert!(inside(&plan.output) && plan.output.len == config.num_classes);
    }
}

#[test]
fn weights_are_asked_for_in_the_plan_precision_and_biases_in_f32() {
    for precision in Precision::ALL {
        let plan = build(&levit_128s(), precision);
        assert_eq!(plan.precision, precision);
        for step in &plan.steps {
            let (weight, bias, k, n) = match step {
                Step::Gemm(g) => (g.weight, g.bias, g.k, g.n),
                Step::Conv(c) => (c.weight, c.bias, c.geometry.k(), c.cout),
                _ => continue,
            };
            let (w, b) = (&plan.weights[weight.0], &plan.weights[bias.0]);
            // Small-channel stem convs stay f32 in every precision.
            let want = match step {
                Step::Conv(c) if c.geometry.cin <= crate::build::F32_CONV_MAX_CIN => Precision::F32,
                _ => precision,
            };
            assert_eq!(step.precision(), Some(want), "{}", w.name);
            assert_eq!(w.precision, want, "{}", w.name);
            assert_eq!(w.shape, packed_weight_shape(want, k, n), "{}", w.name);
            assert_eq!(b.precision, Precision::F32, "{}", b.name);
        }
        let tables = plan
            .weights
            .iter()
            .filter(|w| w.name.ends_with("attention_biases"));
        assert!(tables.clone().count() > 0);
        assert!(tables.clone().all(|w| w.precision == Precision::F32));
    }
}

#[test]
fn oversized_configs_are_refused_before_anything_is_gathered() {
    let config = Config {
        img_size: 2048,
        ..levit_128s()
    };
    let lookup = |_: &str| -> Option<&[f32]> { panic!("nothing may be gathered") };
    match Plan::build(&config, Precision::F32, &lookup) {
        Err(GraphError::TooLarge { limit_mib, .. }) => assert_eq!(limit_mib, MAX_PLAN_BYTES >> 20),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn downsamples_of_a_one_by_one_grid_are_still_q_kv_attentions() {
    // timm's levit_128s at img_size 16..=47 has grids 1 -> 1 -> 1 or 2 -> 1 -> 1: every
    // downsample keeps the q/kv projections (and the weight file holds them), even where
    // it does not shrink the grid.
    for img_size in (16..=512).step_by(16) {
        let config = Config {
            img_size,
            ..levit_128s()
        };
        let dims = config.dims().expect("dims");
        let plan = build(&config, Precision::F32);
        let names: Vec<&str> = plan.weights.iter().map(|w| w.name.as_str()).collect();
        for (s, stage) in dims.stages.iter().enumerate().skip(1) {
            let (a, _) = stage.downsample.as_ref().expect("downsample");
            assert!(a.is_subsample() && a.stride == 2, "{img_size}: stage {s}");
            assert_eq!(a.r_out, (a.r_in - 1) / 2 + 1);
            for t in ["kv", "q"] {
                let name = format!("stages.{s}.downsample.attn.{t}.weight");
                assert!(names.contains(&name.as_str()), "{img_size}: {name}");
            }
            let qkv = format!("stages.{s}.downsample.attn.qkv.weight");
            assert!(!names.contains(&qkv.as_str()), "{img_size}: {qkv}");
        }
        for stage in &dims.stages {
            assert!(!stage.attn.is_subsample());
        }
        let attentions = plan
            .steps
            .iter()
            .filter(|s| s.kind() == "attention")
            .count();
        assert_eq!(attentions, 2 + 3 + 4 + 2, "{img_size}");
        // What the plan asks for is exactly what the converter writes.
        let specs: Vec<String> = crate::tensor_specs(&dims, Precision::F32)
            .into_iter()
            .map(|t| t.name)
            .collect();
        let mut asked: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut written = specs.clone();
        asked.sort();
        written.sort();
        assert_eq!(asked, written, "{img_size}");
    }
}

#[test]
fn img_size_is_checked_with_the_converter_s_reasons() {
    for ok in [16, 32, 48, 224, 2048] {
        assert!(crate::check_img_size(ok).is_ok(), "{ok}");
    }
    let reason = |img_size| match (Config {
        img_size,
        ..levit_128s()
    })
    .dims()
    {
        Err(GraphError::Unsupported { field, reason }) => {
            assert_eq!(field, "img_size");
            reason
        }
        other => panic!("{img_size}: expected Unsupported, got {other:?}"),
    };
    assert!(reason(0).contains("below 16"));
    assert!(reason(15).contains("below 16"));
    for (img_size, runs_at) in [(17, 16), (40, 32), (100, 96), (225, 224)] {
        let r = reason(img_size);
        assert!(r.contains("not a multiple of 16"), "{r}");
        assert!(r.contains(&format!("use img_size {runs_at}")), "{r}");
    }
    assert!(reason(2064).contains("above levit's limit of 2048"));
}

#[test]
fn batch_layouts_hold_every_image_and_one_image_is_the_plan_itself() {
    for config in [two_stages(), levit_128s()] {
        let plan = build(&config, Precision::F32);
        let one = plan.batch_layout(1).unwrap();
        assert_eq!(one.steps, plan.steps);
        assert_eq!((one.arena_len, one.output), (plan.arena_len, plan.output));
        assert_eq!(one.row_tables, plan.row_tables);
        assert_eq!(one.per_image_steps, 4);
        for images in [2, 3, 8] {
            let layout = plan.batch_layout(images).unwrap();
            assert_eq!(layout.images, images);
            assert_eq!(layout.output.len, images * config.num_classes);
            for (i, (step, single)) in layout.steps.iter().zip(&plan.steps).enumerate() {
                let bufs: Vec<BufRange> = step.buffers().collect();
                assert!(bufs.iter().all(|r| r.end() <= layout.arena_len));
                for (x, a) in bufs.iter().enumerate() {
                    for b in &bufs[x + 1..] {
                        let shared_qkv =
                            matches!(step, Step::Attention(s) if s.q == s.kv) && a == b;
                        assert!(shared_qkv || !a.overlaps(b), "{images} images, step {i}");
                    }
                }
                // Outside the stem every buffer is `images` copies of the single one.
                if i >= layout.per_image_steps {
                    for (r, s) in bufs.iter().zip(single.buffers()) {
                        assert_eq!(r.len, images * s.len, "step {i} ({})", plan.labels[i]);
                    }
                }
                // A row gather repeats image 0's rows, shifted by one image each time.
                if let (Step::Gemm(g), Step::Gemm(s)) = (step, single) {
                    if let (Some(rows), Some(one_rows)) = (&g.a_rows, &s.a_rows) {
                        let table = &layout.row_tables[rows.clone()];
                        let first = &plan.row_tables[one_rows.clone()];
                        let image_rows = (s.a.len / s.lda) as u32;
                        for (k, chunk) in table.chunks_exact(first.len()).enumerate() {
                            let shifted: Vec<u32> =
                                first.iter().map(|r| r + k as u32 * image_rows).collect();
                            assert_eq!(chunk, &shifted[..]);
                        }
                    }
                }
            }
            // The stem's buffers are not replicated, so a batch costs less than
            // `images` single arenas.
            assert!(layout.arena_len < images * plan.arena_len);
        }
    }
}
