"""`levit-weights` command line: convert, recast, dump, inspect.

User-facing failures are LevitWeightsError and print `levit-weights: error: ...` with
exit status 1 and no traceback; argparse usage errors exit 2.
"""

from __future__ import annotations

import argparse
import sys

from .config import ACTS, PAPER_VARIANTS
from .errors import LevitWeightsError, warn
from .pack import PRECISIONS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="levit-weights",
        description="Convert LeViT checkpoints to the levit-rs .lvt format and dump PyTorch golden outputs.",
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser(
        "convert", help="convert a facebookresearch or timm checkpoint to .lvt",
        description="Convert a LeViT checkpoint (facebookresearch .pth with 'model', or a timm "
                    "state_dict in .pth/.bin/.safetensors, linear or conv mode) to a .lvt file.")
    c.add_argument("checkpoint", metavar="CHECKPOINT")
    c.add_argument("-o", "--output", required=True, metavar="MODEL", help="output .lvt path")
    c.add_argument("--variant", metavar="NAME",
                   help="force a variant (levit_128s, 128s, LeViT-128S, levit_conv_128s, levit_256d, ...) "
                        "instead of detecting it; every tensor shape is then checked against it")
    c.add_argument("--act", choices=ACTS,
                   help="activation, for configs that match no known variant (default hard_swish)")
    c.add_argument("--precision", choices=PRECISIONS, default="f32",
                   help="how the GEMM/conv weights are stored: f32 (default; format version 1), "
                        "bf16 (packed bf16 panels, format version 2; biases and attention biases stay f32) "
                        "or int8 (per-output-channel int8 panels with their scales and zero-point "
                        "compensations, format version 2; no calibration: activations are quantized per "
                        "token at run time; the RGB stem conv stays f32)")
    c.add_argument("--keep-float", type=_layer_list, default=(), metavar="LAYERS",
                   help="with --precision int8: keep these layers in float (bf16), comma separated: stem, "
                        "head, stage0, stage1, ..., all, or a dotted prefix of a weight name "
                        "(stages.1.blocks.0.mlp.fc1)")
    c.add_argument("-q", "--quiet", action="store_true", help="no summary line")

    r = sub.add_parser(
        "recast", help="rewrite a .lvt with its GEMM weights in another precision",
        description="Rewrite a .lvt file with its GEMM/conv weights in another precision, without "
                    "the checkpoint: f32 -> bf16 gives what `convert --precision bf16` writes; "
                    "bf16 -> f32 gives the f32 file of the bf16-rounded weights.")
    r.add_argument("model", metavar="MODEL")
    r.add_argument("-o", "--output", required=True, metavar="OUT", help="output .lvt path")
    r.add_argument("--precision", choices=PRECISIONS, required=True,
                   help="f32 <-> bf16, or f32 -> int8 (what `convert --precision int8` writes)")
    r.add_argument("--keep-float", type=_layer_list, default=(), metavar="LAYERS",
                   help="with --precision int8: layers to keep in float (bf16), as for convert")

    d = sub.add_parser(
        "dump", help="write golden PyTorch outputs for seeded random models",
        description="Build seeded random LeViTs with trained-like magnitudes, save FB and timm "
                    "checkpoints, convert both, and write inputs, logits and per-stage activations.")
    d.add_argument("--out", required=True, metavar="DIR")
    d.add_argument("--variants", default=",".join(PAPER_VARIANTS), metavar="LIST",
                   help="comma separated: levit_128s, levit_128, levit_192, levit_256, levit_384, "
                        "levit_256d, tiny_hswish, tiny_silu (default: the five paper variants)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--no-checkpoints", action="store_true",
                   help="do not keep the checkpoint files (they are still written to a temp dir and converted)")
    d.add_argument("--bn-images", metavar="DIR",
                   help="then refit every BatchNorm's running statistics on random crops of the photos "
                        "in DIR, as training leaves them, so activation ranges are stable across images "
                        "as in a trained network (for measuring quantization); prints and records each "
                        "stage's ranges before and after")
    d.add_argument("--bn-count", type=int, default=128, metavar="N",
                   help="crops for --bn-images (default 128)")
    d.add_argument("--img-sizes", metavar="LIST",
                   help="comma separated img_sizes (multiples of 16): instead of the full dump, "
                        "write logits-only goldens of each variant built by timm at each size "
                        "(timm layout) to DIR, with their own manifest")

    i = sub.add_parser("inspect", help="verify a .lvt file and print its config and tensors")
    i.add_argument("model", metavar="MODEL")
    return p


def _layer_list(text: str) -> tuple:
    """--keep-float LAYERS: comma separated names (checked against the model later)."""
    names = tuple(n.strip() for n in text.split(","))
    if any(not n for n in names):
        raise argparse.ArgumentTypeError(f"empty layer name in {text!r}")
    return names


def _convert(a) -> None:
    from .convert import convert_checkpoint

    r = convert_checkpoint(a.checkpoint, a.output, variant=a.variant, act=a.act, precision=a.precision,
                           keep_float=a.keep_float)
    for w in r.warnings:
        warn(w)
    if not a.quiet:
        print(r.summary())


def _inspect(a) -> None:
    import json

    from .lvt import read_lvt

    from collections import Counter

    f = read_lvt(a.model)
    dtypes = f.dtypes()
    counts = ", ".join(f"{n} {d}" for d, n in sorted(Counter(dtypes.values()).items()))
    print(f"{a.model}: format {f.metadata['format']} v{f.metadata['format_version']}, "
          f"{len(f.tensors)} tensors, data at {f.data_start}, all CRCs and alignment OK")
    kept = f", kept in float: {','.join(f.keep_float)}" if f.keep_float else ""
    print(f"precision: {f.precision} ({counts}{kept})")
    print(f"source: {f.metadata.get('source', '')}")
    print("config: " + json.dumps(f.config_json))
    for k, v in f.tensors.items():
        print(f"  {k:<48} {dtypes[k]:<5} {str(list(v.shape)):<18} @ {f.offsets[k]}")


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "convert":
            _convert(args)
        elif args.cmd == "recast":
            from .convert import recast_lvt

            size = recast_lvt(args.model, args.output, args.precision, args.keep_float)
            print(f"wrote {args.output} ({size / 1e6:.2f} MB, {args.precision})")
        elif args.cmd == "dump":
            from .dump import parse_img_sizes, run_dump, run_size_dump

            variants = [v for v in args.variants.split(",") if v.strip()]
            if args.img_sizes is not None:
                run_size_dump(args.out, variants, parse_img_sizes(args.img_sizes), seed=args.seed)
            else:
                run_dump(args.out, variants, seed=args.seed, keep_checkpoints=not args.no_checkpoints,
                         bn_images=args.bn_images, bn_count=args.bn_count)
        elif args.cmd == "inspect":
            _inspect(args)
    except LevitWeightsError as e:
        print(f"levit-weights: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("levit-weights: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `levit-weights inspect m.lvt | head`
        sys.stderr.close()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
