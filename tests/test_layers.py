"""Where to ASH: maps of inner blocks, replay through the network's tail.

Pinned: replay at the penultimate layer is today's evaluation; replay with p = 0 / ``none``
at every layer is the plain forward pass; ASH-S at an inner layer matches an independent
reference that runs the original network with the shaping patched into the block.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
import torch
import torch.nn.functional as F
from extract_helpers import R20

from ash_core import Setting, evaluate, load_bundle
from ash_core.diskcache import resolve_cache_dir
from ash_core.errors import BundleError, ParameterError
from ash_core.extract import ExtractConfig, Extractor, SplitSpec, extract, load_model
from ash_core.extract.data import PreparedDataset
from ash_core.layers import LayerEvaluator, layer_sweep, open_layers, replay_logits
from ash_core.methods import create_method

LAYERS = ["layer1", "layer2", "layer3"]


def _config(data, out) -> ExtractConfig:
    return ExtractConfig(
        out=str(out), model="cifar_resnet20", weights=str(data / R20), data_root=str(data),
        layers=LAYERS, batch_size=16, workers=0, device="cpu", progress=False,
        splits=[SplitSpec("cifar", "id", "folder:cifar10/test?every=250"),
                SplitSpec("mnist", "ood", "idx:mnist/t10k-images-idx3-ubyte.gz?every=500"),
                SplitSpec("noise", "ood", "noise:gaussian?n=24&seed=1")])


@pytest.fixture(scope="module")
def r20(shared_data, tmp_path_factory):
    """A 40 + 20 + 24 image ResNet-20 bundle with maps of every stage, and its inputs."""
    out = tmp_path_factory.mktemp("layers") / "r20"
    cfg = _config(shared_data, out)
    extract(cfg, log=lambda s: None)
    ex = Extractor(_config(shared_data, out), log=lambda s: None)
    spec = cfg.splits[0]
    ds = PreparedDataset(ex.source(spec), ex.protocol, range(len(ex.source(spec))), False)
    images = ex.protocol.normalise(torch.stack([ds[i][0] for i in range(len(ds))]))
    model = load_model("cifar_resnet20", shared_data / R20).model  # no hooks attached
    return load_bundle(out), model, images


def _forward_with_block(model, stage: str, fn) -> callable:
    """A patched forward of the original network: ``fn`` applied to the last block of
    ``stage`` after its residual add and before its ReLU (the official ASH hook)."""
    block = getattr(model, stage)[-1]

    def forward(x):
        out = F.relu(block.bn1(block.conv1(x)))
        out = block.bn2(block.conv2(out))
        return F.relu(fn(out + block.shortcut(x)))
    return forward


def _hooked_logits(model, images, stage, fn) -> torch.Tensor:
    block = getattr(model, stage)[-1]
    original = block.forward
    block.forward = _forward_with_block(model, stage, fn)
    try:
        with torch.no_grad():
            return model(images)
    finally:
        block.forward = original


def _fp16(t: torch.Tensor) -> torch.Tensor:
    return t.half().float()  # what the bundle stores


def test_maps_and_tails_recorded(r20):
    bundle, _, images = r20
    maps = open_layers(bundle)
    assert maps.names == [*LAYERS, "penultimate"]
    assert maps.info("layer1").point == "layer1.2.add"
    shapes = {name: maps.maps(name, "cifar").shape for name in LAYERS}
    assert shapes == {"layer1": (40, 16, 32, 32), "layer2": (40, 32, 16, 16),
                      "layer3": (40, 64, 8, 8)}
    # the penultimate features are the pooled ReLU of the layer3 map (fp16 rounding apart)
    pooled = F.relu(torch.from_numpy(maps.maps("layer3", "cifar").astype(np.float32)))
    pooled = pooled.mean(dim=(2, 3))
    feats = bundle.split("cifar").features_tensor()
    assert torch.allclose(pooled, feats, atol=2e-2)


@pytest.mark.parametrize("layer", LAYERS)
def test_p0_and_none_reproduce_the_plain_forward(r20, layer):
    bundle, model, images = r20
    maps = open_layers(bundle)
    base = replay_logits(maps, layer, "cifar")
    ident = replay_logits(maps, layer, "cifar", create_method("ash-p", p=0))
    with torch.no_grad():
        plain = model(images)
    rounded = _hooked_logits(model, images, layer, _fp16)
    assert torch.equal(base, ident)
    assert torch.allclose(base, rounded, atol=1e-4, rtol=1e-5)
    assert torch.allclose(base, plain, atol=5e-2)  # only the fp16 storage of the map
    assert (base.argmax(1) == plain.argmax(1)).float().mean() >= 0.95


def test_penultimate_equals_todays_evaluation(r20):
    bundle, _, _ = r20
    sweep = layer_sweep(bundle, ["penultimate"], "ash-s", grid=[0, 65, 90], cache=False)
    for p in (0, 65, 90):
        today = evaluate(bundle, Setting("ash-s", {"p": p}))
        got = sweep.scores("penultimate", p)
        assert np.array_equal(got["cifar"], today.id_scores)
        for name, scores in today.ood_scores.items():
            assert np.array_equal(got[name], scores)
        assert sweep.metrics("penultimate", p) == today.ood


def _numpy_ash(method: str, x: np.ndarray, p: float) -> np.ndarray:
    """ASH per sample over C*H*W in float64 numpy, as the paper defines it (a vectorised
    twin of tests/reference.py, whose hand-written selection is too slow for 8k units)."""
    rows = x.reshape(len(x), -1).astype(np.float64)
    k = ref.kept_count(rows.shape[1], p)
    order = np.argsort(-rows, axis=1, kind="stable")[:, :k]  # ties: lower index first
    mask = np.zeros(rows.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    s1 = rows.sum(1, keepdims=True)
    kept = np.where(mask, rows, 0.0)
    if method == "ash-b":
        kept = np.where(mask, s1 / k, 0.0)
    elif method == "ash-s":
        kept = kept * np.exp(s1 / kept.sum(1, keepdims=True))
    return kept.reshape(x.shape)


def test_numpy_ash_twin_agrees_with_the_reference():
    x = np.random.default_rng(0).normal(size=(3, 4, 5, 5))
    for method, fn in (("ash-s", ref.ash_s), ("ash-b", ref.ash_b), ("ash-p", ref.ash_p)):
        assert np.allclose(_numpy_ash(method, x, 65).reshape(3, -1),
                           np.asarray(fn(x, 65)).reshape(3, -1))


@pytest.mark.parametrize("method", ["ash-s", "ash-b", "ash-p"])
def test_inner_layer_matches_an_independent_hooked_forward(r20, method):
    bundle, model, images = r20

    def shape(t):
        return torch.from_numpy(_numpy_ash(method, _fp16(t).numpy(), 65).astype(np.float32))
    expected = _hooked_logits(model, images, "layer2", shape)
    ev = LayerEvaluator(bundle, "layer2", device="cpu")
    got = ev.shaped_logits(ev.shaper(Setting(method, {"p": 65})), "cifar")
    assert torch.allclose(got, expected, atol=1e-3, rtol=1e-4)
    unshaped = ev.base_logits("cifar")
    assert not torch.allclose(got, unshaped, atol=1e-1)  # shaping did something


def test_ash_rand_at_a_layer_draws_each_row_from_its_own_stream(r20):
    """Replayed in batches of 3 or all at once, row i of a split draws the values of
    (seed, split, i): the batches do not restart the draws."""
    bundle, _, _ = r20
    maps = open_layers(bundle)
    shaper = create_method("ash-rand", p=65, seed=2)
    small = replay_logits(maps, "layer2", "cifar", shaper, batch=3)
    whole = replay_logits(maps, "layer2", "cifar", shaper, batch=10_000)
    torch.testing.assert_close(small, whole, rtol=1e-5, atol=1e-5)
    x = torch.from_numpy(np.asarray(maps.maps("layer2", "cifar")[:6], np.float32))
    tail = maps.tail("layer2")
    with torch.inference_mode():
        by_hand = tail(shaper(x, split="cifar", rows=0)).float()
    torch.testing.assert_close(small[:6], by_hand, rtol=1e-5, atol=1e-5)


def test_layer_evaluate_reports_like_evaluate(r20):
    bundle, _, _ = r20
    res = LayerEvaluator(bundle, "layer3", device="cpu").evaluate(Setting("ash-s", {"p": 65}))
    assert set(res.ood) == {"mnist", "noise"}
    assert res.id_accuracy["unshaped"] >= 0.7
    assert 0.0 <= res.average["auroc"] <= 1.0


def test_layer_sweep_cached_and_reused(r20):
    bundle, _, _ = r20
    grid = [0, 50, 90]
    first = layer_sweep(bundle, ["layer3", "penultimate"], "ash-s", grid=grid)
    again = layer_sweep(bundle, ["layer3", "penultimate"], "ash-s", grid=grid)
    assert not first.cached and again.cached
    for layer in ("layer3", "penultimate"):
        assert np.array_equal(first.energy[layer], again.energy[layer])
        assert np.array_equal(first.accuracy(layer), again.accuracy(layer))
    ev = LayerEvaluator(bundle, "layer3", device="cpu").evaluate(Setting("ash-s", {"p": 50}))
    assert np.allclose(again.scores("layer3", 50)["cifar"], ev.id_scores, atol=1e-5)
    assert again.accuracy("layer3")[1] == pytest.approx(ev.id_accuracy["shaped"])
    rows = again.table(90)
    assert [r["layer"] for r in rows] == ["layer3", "penultimate"]


def test_corrupt_layer_cache_is_recomputed(r20):
    bundle, _, _ = r20
    grid = [0, 80]
    entries = resolve_cache_dir(bundle)[0] / bundle.content_hash
    before = set(entries.glob("layer-*")) if entries.exists() else set()
    layer_sweep(bundle, ["layer3"], "ash-p", grid=grid)
    (path,) = set(entries.glob("layer-*")) - before
    assert layer_sweep(bundle, ["layer3"], "ash-p", grid=grid).cached
    path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="rebuilding the layer sweep"):
        again = layer_sweep(bundle, ["layer3"], "ash-p", grid=grid)
    assert not again.cached and again.energy["layer3"].shape == (2, 84)


def test_inner_layers_refuse_fitted_methods_and_unknown_layers(r20, synthetic_bundle):
    bundle, _, _ = r20
    ev = LayerEvaluator(bundle, "layer1", device="cpu")
    with pytest.raises(ParameterError, match="not cached"):
        ev.shaper(Setting("ash-s", {"p": 65}, "global"))
    with pytest.raises(BundleError, match="no maps for layer 'layer9'"):
        LayerEvaluator(bundle, "layer9")
    with pytest.raises(ParameterError, match="has no layer maps"):
        LayerEvaluator(load_bundle(synthetic_bundle), "layer1")
