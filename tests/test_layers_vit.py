"""Where to ASH inside a transformer: token maps [N, T, C] of timm ViT blocks, replayed through
the rest of the network (later blocks, final norm, CLS selection or pooling, fc_norm, head).

A tiny randomly initialised ViT built offline, saved as a state dict and extracted through
``ash-explore extract --model timm:... --weights FILE --layers blocks.0,blocks.1``. Pinned:
replay without shaping is the model's own forward pass (the float16 storage of the tokens
apart); ASH at a block is an independent float64 twin (per sample over T*C) followed by the
rest of the model run by hand; the tail is generic over VisionTransformer configurations.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from reference import kept_count
from streamlit.testing.v1 import AppTest
from test_dashboard_app import APP, ok

from ash_core import Setting, load_bundle
from ash_core.bundle.safetensors_io import read_header
from ash_core.cli import main
from ash_core.errors import ModelError
from ash_core.extract import ExtractConfig, Extractor, SplitSpec
from ash_core.extract.data import PreparedDataset
from ash_core.layers import LayerEvaluator, layer_sweep, open_layers, replay_logits
from ash_core.layers import vit as vit_tails
from ash_core.methods import create_method

ARGS = {"img_size": 32, "patch_size": 8, "depth": 3, "embed_dim": 32, "num_heads": 2,
        "num_classes": 5}
SPEC = "timm:vit_tiny_patch16_224?" + "&".join(f"{k}={v}" for k, v in ARGS.items())
LAYERS = ["blocks.0", "blocks.1"]


def _images(root: Path) -> None:
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / "pets" / name).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                root / "pets" / name / f"{i:02d}.png")


def _extract_args(data: Path, weights: Path, out: Path, layers: str) -> list[str]:
    return ["extract", "--model", SPEC, "--weights", str(weights), "--data-root", str(data),
            "--id", "pets=folder:pets", "--ood", "noise=noise:uniform?n=8&seed=2",
            "--layers", layers, "--batch-size", "8", "--workers", "0", "--device", "cpu",
            "--no-progress", "-o", str(out)]


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    """(bundle, the original model, the ID inputs as the model saw them, tmp dir)."""
    tmp = tmp_path_factory.mktemp("vit")
    torch.manual_seed(1)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **ARGS).eval()
    torch.save(model.state_dict(), tmp / "vit.pth")
    _images(tmp / "data")
    out = tmp / "vit.layers"
    assert main(_extract_args(tmp / "data", tmp / "vit.pth", out, ",".join(LAYERS))) == 0
    cfg = ExtractConfig(out=str(tmp / "unused"), model=SPEC, weights=str(tmp / "vit.pth"),
                        data_root=str(tmp / "data"), workers=0, device="cpu", progress=False,
                        splits=[SplitSpec("pets", "id", "folder:pets")])
    ex = Extractor(cfg, log=lambda s: None)
    src = ex.source(cfg.splits[0])
    ds = PreparedDataset(src, ex.protocol, range(len(src)), False)
    images = ex.protocol.normalise(torch.stack([ds[i][0] for i in range(len(ds))]))
    return load_bundle(out), model, images, tmp


def _block_output(model, images, index: int, fn=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(the output of block ``index``, the logits with ``fn`` applied to it) of the model's
    own forward pass."""
    got = {}

    def hook(module, inp, out):
        got["tokens"] = out.detach().clone()
        return fn(out) if fn is not None else None
    handle = model.blocks[index].register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = model(images)
    finally:
        handle.remove()
    return got["tokens"], logits


def _rest_by_hand(model, tokens: torch.Tensor, index: int) -> torch.Tensor:
    """The network after block ``index`` written out: later blocks, final LayerNorm, the CLS
    token (this config's pooling), fc_norm (Identity here) and the linear head."""
    x = tokens
    with torch.no_grad():
        for blk in model.blocks[index + 1:]:
            x = blk(x)
        x = torch.nn.functional.layer_norm(x, (x.shape[-1],), model.norm.weight,
                                           model.norm.bias, model.norm.eps)
        return x[:, 0] @ model.head.weight.T + model.head.bias


def _twin_ash(method: str, tokens: np.ndarray, p: float) -> np.ndarray:
    """ASH per sample over the T*C token map, float64 numpy, ties to the lower index."""
    rows = tokens.reshape(len(tokens), -1).astype(np.float64)
    k = kept_count(rows.shape[1], p)
    keep = np.argsort(-rows, axis=1, kind="stable")[:, :k]
    mask = np.zeros(rows.shape, dtype=bool)
    np.put_along_axis(mask, keep, True, axis=1)
    total = rows.sum(1, keepdims=True)
    kept = np.where(mask, rows, 0.0)
    if method == "ash-b":
        kept = np.where(mask, total / k, 0.0)
    elif method == "ash-s":
        kept = kept * np.exp(total / kept.sum(1, keepdims=True))
    return kept.reshape(tokens.shape)


def test_token_maps_and_tails_recorded(vit):
    bundle, model, images, _ = vit
    entry = bundle.manifest["layers"]
    assert entry["arch"] == "timm:vit_tiny_patch16_224" and entry["model_args"] == ARGS
    maps = open_layers(bundle)
    assert maps.names == [*LAYERS, "penultimate"]
    assert maps.info("blocks.1").shape == (17, 32) and maps.info("blocks.1").tokens
    assert "1 prefix token(s) first" in maps.info("blocks.1").where
    tokens, _ = _block_output(model, images, 1)
    assert np.array_equal(maps.maps("blocks.1", "pets"), tokens.half().numpy())
    names = read_header(bundle.root / maps.info("blocks.0").tail)[0]
    assert not [n for n in names if n.startswith(("patch_embed", "pos_embed", "cls_token",
                                                  "blocks.0."))]  # the embedding side
    assert {n.split(".")[0] for n in names} == {"blocks", "norm", "head"}
    assert {n.split(".")[1] for n in names if n.startswith("blocks.")} == {"1", "2"}


@pytest.mark.parametrize("layer", LAYERS)
def test_replay_without_shaping_is_the_models_forward(vit, layer):
    bundle, model, images, _ = vit
    maps = open_layers(bundle)
    base = replay_logits(maps, layer, "pets")
    assert torch.equal(base, replay_logits(maps, layer, "pets", create_method("ash-p", p=0)))
    index = int(layer.split(".")[1])
    _, rounded = _block_output(model, images, index, lambda t: t.half().float())
    _, plain = _block_output(model, images, index)
    # the model's forward with the block output rounded as stored: float32 reordering only
    torch.testing.assert_close(base, rounded, atol=1e-5, rtol=1e-5)
    # the plain forward: the float16 storage of the tokens (measured 0.03-0.04% of the
    # largest |logit| on this model), within 0.1% of it
    scale = 1e-3 * float(plain.abs().max())
    torch.testing.assert_close(base, plain, atol=scale, rtol=0)
    feats = bundle.split("pets").features_tensor()
    torch.testing.assert_close(base, feats @ bundle.head_weight.T + bundle.head_bias,
                               atol=scale, rtol=0)


@pytest.mark.parametrize("method", ["ash-s", "ash-b", "ash-p"])
def test_ash_at_a_block_is_the_twin_then_the_rest_by_hand(vit, method):
    bundle, model, _, _ = vit
    stored = open_layers(bundle).maps("blocks.1", "pets")
    shaped = torch.from_numpy(_twin_ash(method, np.asarray(stored, np.float32), 65)
                              .astype(np.float32))
    expected = _rest_by_hand(model, shaped, 1)
    ev = LayerEvaluator(bundle, "blocks.1", device="cpu")
    got = ev.shaped_logits(ev.shaper(Setting(method, {"p": 65})), "pets")
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(got, ev.base_logits("pets"), atol=1e-2)  # shaping did something


@pytest.mark.parametrize("name,kwargs", [
    ("vit_tiny_r_s16_p8_224", {"depth": 2}),  # hybrid: a ResNet stem as patch_embed
    ("vit_tiny_patch16_224", {"patch_size": 8, "depth": 2, "global_pool": "avg",
                              "class_token": False, "reg_tokens": 2, "fc_norm": True}),
])
def test_tail_is_generic_over_vision_transformers(name, kwargs):
    args = {"img_size": 32, "embed_dim": 32, "num_heads": 2, "num_classes": 3, **kwargs}
    torch.manual_seed(3)
    model = timm.create_model(name, pretrained=False, **args).eval()
    x = torch.randn(4, 3, 32, 32)
    tokens, logits = _block_output(model, x, 0)
    arch = f"timm:{name}"
    state = vit_tails.tail_state(arch, model, "blocks.0")
    assert not [k for k in state if k.startswith(("patch_embed", "blocks.0."))]
    tail = vit_tails.build_tail(arch, "blocks.0", state, json.loads(json.dumps(args)))
    with torch.no_grad():
        torch.testing.assert_close(tail(tokens), logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(ModelError, match="do not fit"):
        vit_tails.build_tail(arch, "blocks.0", {**state, "pos_embed": np.zeros(1)}, args)


def test_sweep_and_evaluate_at_a_block(vit, capsys):
    bundle, _, _, _ = vit
    path = str(bundle.root)
    assert main(["sweep", path, "--layer", "blocks.1", "--methods", "ash-s", "--p", "0,65",
                 "--format", "csv", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("method,p,noise/fpr95")
    assert main(["evaluate", path, "--layer", "blocks.1", "--method", "ash-s", "--p", "65",
                 "--format", "json", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    res = LayerEvaluator(bundle, "blocks.1", device="cpu").evaluate(Setting("ash-s", {"p": 65}))
    assert out["ood"]["noise"]["auroc"] == pytest.approx(res.ood["noise"]["auroc"])
    sweep = layer_sweep(bundle, ["blocks.1"], "ash-s", grid=[0, 65], cache=False)
    assert np.allclose(sweep.scores("blocks.1", 65)["pets"], res.id_scores, atol=1e-5)


def test_refusals_name_the_blocks(vit, capsys):
    bundle, _, _, tmp = vit
    for layer in ("patch_embed", "blocks.7", "norm"):
        out = tmp / f"refused-{layer}"
        assert main(_extract_args(tmp / "data", tmp / "vit.pth", out, layer)) == 2
        err = capsys.readouterr().err
        assert f"'{layer}' is not a transformer block" in err and "blocks.0 ... blocks.2" in err
        assert not out.exists()  # nothing written
    assert main(["evaluate", str(bundle.root), "--layer", "blocks.2", "--method", "ash-s"]) == 2
    assert "no maps for layer 'blocks.2'" in capsys.readouterr().err
    headless = timm.create_model("vit_tiny_patch16_224", **{**ARGS, "num_classes": 0})
    with pytest.raises(ModelError, match="no classifier"):
        vit_tails.capture_point("timm:vit_tiny_patch16_224", headless, "blocks.0")


def test_where_view_and_layer_control_on_a_vit(vit, monkeypatch):
    bundle, _, _, _ = vit
    monkeypatch.setenv("ASH_BUNDLE_ROOTS", str(bundle.root.parent))
    sweep = layer_sweep(bundle, None, "ash-s")  # the view reads this disk cache
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"bundle": str(bundle.root), "view": "where", "method": "ash-s",
                            "p": "65"})
    ok(at.run())
    assert len(at.get("plotly_chart")) == 1
    table = at.dataframe[0].value
    assert list(table.index) == [*LAYERS, "penultimate"]
    assert table["AUROC"].tolist() == [round(100 * r["auroc"], 2) for r in sweep.table(65)]
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"bundle": str(bundle.root), "method": "ash-s", "p": "65",
                            "layer": "blocks.1"})
    ok(at.run())
    captions = " ".join(c.value for c in at.caption).replace("\\", "")  # markdown escapes
    assert f"keeps k = {kept_count(17 * 32, 65)} of D = 544" in captions
    assert "after the output of transformer block blocks.1 (per sample over its 17 tokens " \
           "x 32 channels)" in captions


def test_where_table_script_gives_the_views_table6(vit, tmp_path, capsys):
    """scripts/where_table.py (docs/where.md's per-block tables) reads the same sweep as the
    "Where to ASH" view: its numbers at p are Table 6's, its unshaped row the replay's."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "where_table", Path(__file__).resolve().parents[1] / "scripts" / "where_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    bundle, _, _, _ = vit
    out = tmp_path / "where.json"
    assert script.main([str(bundle.root), "--methods", "ash-s", "--p", "65", "--device", "cpu",
                        "--json", str(out)]) == 0
    assert "| blocks.1 | p = 65 |" in capsys.readouterr().out
    got = json.loads(out.read_text())["methods"]["ash-s"]
    sweep = layer_sweep(bundle, None, "ash-s")
    assert list(got) == [*LAYERS, "penultimate"]
    for row in sweep.table(65):
        at = got[row["layer"]]["p"]["65"]
        assert (at["auroc"], at["fpr95"], at["id_accuracy"]) == pytest.approx(
            (row["auroc"], row["fpr95"], row["id_accuracy"]))
    ev = LayerEvaluator(bundle, "blocks.0", device="cpu").evaluate(Setting("none"))
    assert got["blocks.0"]["unshaped"]["auroc"] == pytest.approx(ev.average["auroc"], abs=1e-6)
    best = got["blocks.0"]["best"]
    assert best["auroc"] >= max(got["blocks.0"]["p"]["65"]["auroc"], 0)
    assert script.main([str(bundle.root), "--p", "7"]) == 2  # not on the grid
    assert capsys.readouterr().err.startswith("error: --p 7")
