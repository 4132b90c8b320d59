"""Seeded random weights with trained-like magnitudes (reference §8).

Plain random weights make LeViT chaotic (f32 vs f64 logits differ by ~1), which would
make every golden comparison meaningless. Damping the residual branches, calibrating
the BatchNorm statistics on N(0,1) images and scaling the heads reproduces the
behaviour of trained checkpoints: f32 round-off stays ~1e-6 relative.
"""

from __future__ import annotations

import torch
from torch import nn

# Last BN of every residual branch: scaled down like in trained nets (γ in U(0.05, 0.3)).
RESIDUAL_GAMMA = (0.05, 0.3)
OTHER_GAMMA = (0.6, 1.4)
ATTN_BIAS_STD = 0.5
TARGET_LOGIT_STD = 3.0
MEAN_SHIFT = 0.02


def _uniform(t: torch.Tensor, lo: float, hi: float, gen: torch.Generator):
    t.uniform_(lo, hi, generator=gen)


def is_residual_final_bn(name: str) -> bool:
    """attn.proj.ln.bn of blocks and mlp.ln2.bn of blocks and downsample MLPs.

    The downsample's attention projection is not residual (its output *starts* the
    stream), so it keeps a normal γ.
    """
    return name.endswith("attn.proj.ln.bn") or name.endswith("mlp.ln2.bn")


@torch.no_grad()
def randomize_(model: nn.Module, gen: torch.Generator) -> None:
    """Weights ~ N(0, 1/fan_in), random non-identity BN affine, N(0, 0.5) attention biases."""
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Linear, nn.Conv2d)):
            w = mod.weight
            w.normal_(0.0, float(w[0].numel()) ** -0.5, generator=gen)
            if mod.bias is not None:
                mod.bias.normal_(0.0, 0.1, generator=gen)
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            if is_residual_final_bn(name):
                _uniform(mod.weight, *RESIDUAL_GAMMA, gen)
                mod.bias.normal_(0.0, 0.02, generator=gen)
            else:
                _uniform(mod.weight, *OTHER_GAMMA, gen)
                mod.bias.normal_(0.0, 0.2, generator=gen)
        if hasattr(mod, "attention_biases"):
            mod.attention_biases.normal_(0.0, ATTN_BIAS_STD, generator=gen)


def _bns(model):
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def calibration_images(gen: torch.Generator, n: int, n_random: int, img_size: int = 224,
                       in_chans: int = 3) -> torch.Tensor:
    """n images: n_random N(0,1) ones, the rest smooth natural-looking ones.

    Calibrating on N(0,1) images alone leaves smooth (natural) images far out of
    distribution: their activations then grow ~50x by stage 2 and f32 round-off is
    amplified to 1e-3..1e-1 relative. A mix keeps both kinds well-conditioned.
    """
    import numpy as np

    from .inputs import smooth_image

    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))
    x = torch.randn(n_random, in_chans, img_size, img_size, generator=gen)
    if n > n_random:
        sm = np.stack([smooth_image(rng, img_size, edges=bool(i % 2), chans=in_chans)
                       for i in range(n - n_random)])
        x = torch.cat([x, torch.from_numpy(sm).float()])
    return x


@torch.no_grad()
def calibrate_bn_(model: nn.Module, gen: torch.Generator, batches: int = 3, batch_size: int = 8,
                  img_size: int = 224, in_chans: int = 3) -> None:
    """Running stats = cumulative batch stats (momentum=None) of train-mode forwards.

    Each batch holds 2 N(0,1) images and 6 smooth images (see calibration_images).
    """
    bns = _bns(model)
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for _ in range(batches):
        model(calibration_images(gen, batch_size, 2, img_size, in_chans))
    for bn in bns:
        bn.momentum = 0.1


@torch.no_grad()
def perturb_bn_stats_(model: nn.Module, gen: torch.Generator) -> None:
    """Move the stats off the calibration: mean += 0.02·σ·N(0,1), var *= U(0.7, 1.4).

    The mean shift must stay small: the attention projection BNs see low-variance
    inputs (gain 1/σ ~ 10), and a 0.1·σ shift there already inflates the residual
    stream ~5x by stage 2.
    """
    for bn in _bns(model):
        sd = bn.running_var.sqrt()
        bn.running_mean += MEAN_SHIFT * sd * torch.randn(bn.running_mean.shape, generator=gen)
        bn.running_var *= torch.empty(bn.running_var.shape).uniform_(0.7, 1.4, generator=gen)


def reset_bias_cache_(model: nn.Module) -> None:
    """timm caches the gathered attention bias on the first eval forward: drop it."""
    model.train()
    model.eval()


@torch.no_grad()
def scale_heads_(model: nn.Module, gen: torch.Generator, img_size: int = 224, in_chans: int = 3,
                 x: torch.Tensor | None = None) -> float:
    """Scale head (and head_dist) so eval logits on calibration-like images (or on `x`)
    have std ~3."""
    reset_bias_cache_(model)
    if x is None:
        x = calibration_images(gen, 8, 4, img_size, in_chans)
    std = float(model(x).std(dim=1).mean())  # per image: spread across classes
    alpha = TARGET_LOGIT_STD / std
    for h in ("head", "head_dist"):
        head = getattr(model, h, None)
        if head is not None and hasattr(head, "linear"):
            head.linear.weight *= alpha
            head.linear.bias *= alpha
    reset_bias_cache_(model)
    return alpha


def make_trained_like_(model: nn.Module, gen: torch.Generator, img_size: int = 224, in_chans: int = 3) -> None:
    randomize_(model, gen)
    calibrate_bn_(model, gen, img_size=img_size, in_chans=in_chans)
    perturb_bn_stats_(model, gen)
    scale_heads_(model, gen, img_size=img_size, in_chans=in_chans)
    reset_bias_cache_(model)
