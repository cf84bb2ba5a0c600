"""``ash-explore extract --odin T,EPS``: ODIN's perturbation against an independent plain
torch reference (per sample, ``.backward()``), stored as the "odin" variant of every split
but id_fit, fingerprinted, resumable after a kill, and evaluated by ``--method odin``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from extract_helpers import run_forked
from PIL import Image

from ash_core import Setting, evaluate, load_bundle
from ash_core.cli import main
from ash_core.extract import CifarResNet, ExtractConfig, ExtractError, SplitSpec
from ash_core.extract.fingerprint import make_fingerprints
from ash_core.extract.hook import FeatureHook
from ash_core.extract.odin import parse_odin, perturb
from ash_core.extract.protocol import make_protocol


def reference_perturbation(model: nn.Module, x: torch.Tensor, t: float, eps: float,
                           std: list[float]) -> torch.Tensor:
    """Liang et al.'s Eq. 2 one sample at a time: the gradient of -log S_yhat(x; T) by
    ``backward()`` on a leaf, +1 where it is >= 0 else -1, divided by the channel std."""
    out = []
    for row in x:
        leaf = row[None].clone().requires_grad_(True)
        logits = model(leaf)[0].double()
        yhat = int(torch.argmax(logits))
        z = logits / t
        nll = torch.logsumexp(z, 0) - z[yhat]
        nll.backward()
        g = leaf.grad[0].numpy()
        step = np.where(g >= 0, 1.0, -1.0) / np.asarray(std)[:, None, None]
        out.append(row.numpy() - eps * step)
    return torch.tensor(np.stack(out), dtype=torch.float32)


class TinyNet(nn.Module):
    """A tiny classifier whose third input channel is ignored (an exactly zero gradient)
    and whose two first classes have identical weights (tied logits)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3)
        with torch.no_grad():
            self.conv.weight[:, 2] = 0.0
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.fc.weight[1] = self.fc.weight[0]
            self.fc.bias[1] = self.fc.bias[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("t,eps", [(1000.0, 0.0014), (1.0, 0.05), (10.0, 0.0)])
def test_perturbation_equals_the_plain_torch_reference(t: float, eps: float) -> None:
    model = TinyNet().eval()
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    x[3] = 0.0                                           # a constant image
    std = [0.25, 0.5, 0.2]
    before = x.clone()
    got = perturb(model, x, t, eps, std)
    want = reference_perturbation(model, x, t, eps, std)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert torch.equal(x, before)                        # the input is not modified
    # the ignored channel has a zero gradient: torch.ge steps it by +eps/std, never 0
    torch.testing.assert_close(got[:, 2] - x[:, 2], torch.full_like(x[:, 2], -eps / 0.2))
    if eps:
        assert not torch.equal(got, x)


def test_batches_do_not_change_the_perturbation() -> None:
    model = TinyNet().eval()
    x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    whole = perturb(model, x, 1000.0, 0.0014, [0.25, 0.5, 0.2])
    parts = torch.cat([perturb(model, x[i:i + 3], 1000.0, 0.0014, [0.25, 0.5, 0.2])
                       for i in range(0, 8, 3)])
    torch.testing.assert_close(whole, parts, rtol=0, atol=0)


@pytest.mark.parametrize("text", ["1000", "1000,0.1,3", "a,b", "0,0.1", "-1,0.1", "5,-0.1",
                                  "inf,0.1", "nan,0.1"])
def test_bad_odin_values_are_explained(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ExtractError, match="--odin must be T,EPS"):
        parse_odin(text)
    assert main(["extract", "--model", "cifar_resnet20", "--id", "folder:x", "-o", "/tmp/x",
                 f"--odin={text}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --odin must be T,EPS") and "Traceback" not in err


def test_odin_with_a_fitted_head_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExtractError, match="--odin.*--fit-head"):
        ExtractConfig(out=str(tmp_path / "x"), model="cifar_resnet20", fit_head=True,
                      odin=[1000, 0.0014], splits=[SplitSpec("a", "id", "folder:x"),
                                                   SplitSpec("f", "id_fit", "folder:x")])


def test_fingerprints_hold_t_and_eps_where_odin_is_stored(tmp_path: Path) -> None:
    splits = [SplitSpec("a", "id", "folder:x"), SplitSpec("f", "id_fit", "folder:x"),
              SplitSpec("o", "ood", "folder:y")]

    def fps(**kw):
        cfg = ExtractConfig(out=str(tmp_path / "b"), model="m", splits=list(splits), **kw)
        return make_fingerprints(cfg, "sha", {"p": 1}, "cpu", "b")

    plain, one, other = fps(), fps(odin=[1000, 0.0014]), fps(odin=[1000, 0.002])
    assert plain.splits["f"] == one.splits["f"] == other.splits["f"]  # id_fit: no ODIN
    for name in ("a", "o"):
        assert len({plain.splits[name], one.splits[name], other.splits[name]}) == 3
    assert len({plain.bundle, one.bundle, other.bundle}) == 3


@pytest.fixture()
def pictures(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for c in ("cat", "dog"):
        (root / "pets" / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                root / "pets" / c / f"{i}.png")
    return root


def _weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "r20.th"
    torch.save({"state_dict": CifarResNet(20).state_dict()}, path)
    return path


def _args(root: Path, weights: Path, out: Path) -> list[str]:
    return ["--model", "cifar_resnet20", "--weights", str(weights), "--data-root", str(root),
            "--id", "pets=folder:pets", "--id-fit", "folder:pets",
            "--ood", "noise=noise:uniform?n=7", "--odin", "1000,0.0014", "--batch-size", "4",
            "--workers", "0", "--device", "cpu", "--feature-dtype", "float32",
            "--no-progress", "-o", str(out)]


def test_extract_odin_end_to_end(pictures: Path, tmp_path: Path) -> None:
    weights = _weights(tmp_path)
    out = tmp_path / "bundle"
    assert main(["extract", *_args(pictures, weights, out)]) == 0
    b = load_bundle(out)
    assert b.variant("odin") == {"temperature": 1000.0, "epsilon": 0.0014}
    assert {s.name: s.variants for s in b.splits} == {
        "pets": ["odin"], "id_fit": [], "noise": ["odin"]}
    # the stored variant = the model's features of the reference-perturbed images
    model = CifarResNet(20).eval()
    model.load_state_dict(torch.load(weights, weights_only=True)["state_dict"])
    proto = make_protocol("cifar", 32, 3, b.manifest["preprocessing"]["mean"],
                          b.manifest["preprocessing"]["std"])
    images = torch.stack([torch.from_numpy(np.array(Image.open(pictures / "pets" / rel)))
                          for rel in sorted(f"{c}/{i}.png" for c in ("cat", "dog")
                                            for i in range(6))])
    x = proto.normalise(images)
    moved = reference_perturbation(model, x, 1000.0, 0.0014, list(proto.std))
    hook = FeatureHook(model, None, x[:1])
    with torch.no_grad():
        want = hook(moved).numpy()
    got = b.split("pets").variant_features_tensor("odin").numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(got, np.asarray(b.split("pets").features))
    res = evaluate(b, Setting("odin"))
    assert 0.0 <= res.ood["noise"].auroc <= 1.0 and res.score == "odin"
    assert "odin_id_accuracy" in b.manifest["classifier"]


def test_extract_odin_resumes_after_a_kill(pictures: Path, tmp_path: Path) -> None:
    weights = _weights(tmp_path)
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert run_forked(_args(pictures, weights, whole))[0] == 0
    rc, _ = run_forked(_args(pictures, weights, resumed), fault="extract.chunk:2")
    assert rc == -9 and not resumed.exists()
    rc, log = run_forked(_args(pictures, weights, resumed))
    assert rc == 0, log
    a, b = load_bundle(whole), load_bundle(resumed)
    for s in a.splits:
        np.testing.assert_array_equal(np.asarray(s.features), np.asarray(b.split(s.name).features))
        for v in s.variants:
            np.testing.assert_array_equal(s.variant_features_tensor(v).numpy(),
                                          b.split(s.name).variant_features_tensor(v).numpy())
    assert json.loads((resumed / "manifest.json").read_text())["variants"] == a.manifest["variants"]
