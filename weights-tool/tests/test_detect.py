"""Config inference from names and shapes, variant names, --variant checking."""

from __future__ import annotations

import pytest
import timm

from conftest import save_timm, state_dict_np
from levit_weights.config import normalize_variant, timm_shapes
from levit_weights.detect import resolve_config
from levit_weights.errors import LevitWeightsError
from levit_weights.layouts import squeeze_1x1

EXPECTED = {
    "levit_128s": ((128, 256, 384), 16, (4, 6, 8), (2, 3, 4), "hard_swish", True),
    "levit_128": ((128, 256, 384), 16, (4, 8, 12), (4, 4, 4), "hard_swish", True),
    "levit_192": ((192, 288, 384), 32, (3, 5, 6), (4, 4, 4), "hard_swish", True),
    "levit_256": ((256, 384, 512), 32, (4, 6, 8), (4, 4, 4), "hard_swish", True),
    "levit_384": ((384, 512, 768), 32, (6, 9, 12), (4, 4, 4), "hard_swish", True),
    "levit_256d": ((256, 384, 512), 32, (4, 6, 8), (4, 8, 6), "silu", False),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_detect_variant(name):
    sd = state_dict_np(timm.create_model(name))
    r = resolve_config(sd)
    c = r.config
    assert r.confirmed and not r.warnings
    assert (c.variant, c.embed_dim, c.key_dim, c.num_heads, c.depth, c.act, c.distilled) == \
        (name, *EXPECTED[name])
    assert (c.img_size, c.in_chans, c.num_classes) == (224, 3, 1000)
    assert c.attn_ratio == (2.0,) * 3 and c.mlp_ratio == (2.0,) * 3
    # the shape table derived from the config is exactly timm's state_dict
    want = {k: tuple(v.shape) for k, v in sd.items()
            if not k.endswith("num_batches_tracked")}
    assert timm_shapes(c) == want


def test_detect_conv_variant():
    sd, n = squeeze_1x1(state_dict_np(timm.create_model("levit_conv_128s")))
    assert n == 46  # reference §6
    assert resolve_config(sd).config.variant == "levit_128s"


def test_tiny_configs_match_timm(tiny_models):
    for name, m in tiny_models.items():
        sd = state_dict_np(m)
        c = resolve_config(sd).config
        assert c.variant == name
        assert timm_shapes(c) == {k: tuple(v.shape) for k, v in sd.items()
                                  if not k.endswith("num_batches_tracked")}


def test_stride8_stem_rejected():
    sd = state_dict_np(timm.create_model("levit_384_s8"))
    with pytest.raises(LevitWeightsError, match="stem_type"):
        resolve_config(sd)
    with pytest.raises(LevitWeightsError, match="stem_type"):
        resolve_config(state_dict_np(timm.create_model("levit_128s")), variant="levit_384_s8")


@pytest.mark.parametrize("alias", ["levit_128s", "128s", "LeViT-128S", "levit_conv_128s",
                                   "levit_128s.fb_dist_in1k", " Levit-128s "])
def test_variant_names(alias):
    assert normalize_variant(alias) == "levit_128s"


def test_variant_override_ok():
    sd = state_dict_np(timm.create_model("levit_128s"))
    assert resolve_config(sd, variant="LeViT-128S").config.variant == "levit_128s"


def test_variant_override_mismatch():
    sd = state_dict_np(timm.create_model("levit_128s"))
    with pytest.raises(LevitWeightsError) as e:
        resolve_config(sd, variant="128")
    msg = str(e.value)
    assert "--variant levit_128" in msg
    assert "missing keys" in msg and "stages.0.blocks.2.attn.qkv.{linear.weight," in msg
    assert "stages.1.blocks.0.attn.qkv.linear.weight: checkpoint [384, 256], expected [512, 256]" in msg
    assert "looks like levit_128s" in msg


def test_unknown_variant_name():
    with pytest.raises(LevitWeightsError, match="unknown variant 'levit_999'"):
        resolve_config({}, variant="levit_999")


def test_custom_config_warns_and_act_flag(tmp_path, capsys):
    """A config timm can build but that is not in model_cfgs: converted, activation unconfirmed."""
    from timm.models.levit import Levit

    from levit_weights.cli import main

    m = Levit(img_size=224, num_classes=5, embed_dim=(32, 64), key_dim=16, num_heads=(2, 4),
              depth=(1, 1), act_layer="silu")
    ck = save_timm(m, tmp_path / "c.safetensors")
    r = resolve_config(state_dict_np(m))
    assert not r.confirmed and r.config.act == "hard_swish" and r.config.variant == "custom"
    assert any("--act" in w for w in r.warnings)
    assert main(["convert", ck, "-o", str(tmp_path / "a.lvt")]) == 0
    assert "activation could not be confirmed" in capsys.readouterr().err
    assert main(["convert", ck, "-o", str(tmp_path / "b.lvt"), "--act", "silu"]) == 0
    assert "warning" not in capsys.readouterr().err
    from levit_weights.lvt import read_lvt

    assert read_lvt(str(tmp_path / "b.lvt")).config.act == "silu"
    assert read_lvt(str(tmp_path / "b.lvt")).config.num_stages == 2
