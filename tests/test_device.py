"""Device handling: ``resolve_device``, ``--device`` on the CLI, and the CUDA code
paths run with the CPU device standing in (the same code with a device argument).

No test needs a GPU: ``cuda_available`` and the builder's ``is_cuda`` are stood in for, so
the branches a GPU takes (auto -> cuda, the torch backend on CUDA, CUDA-sized chunks) run
here on the CPU, against exact evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cube_helpers import assert_scores_close
from test_cube import GRID, assert_matches, make_tricky_bundle

from ash_core import Setting
from ash_core import device as device_mod
from ash_core.bundle import load_bundle
from ash_core.cli import main as cli_main
from ash_core.cube import CUBE_METHODS, build_cubes, torch_backend
from ash_core.cube import build as build_mod
from ash_core.device import ENV_DEVICE, resolve_device
from ash_core.engine.exact import Evaluator
from ash_core.errors import ParameterError
from ash_core.maths.scores import energy_score

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tricky(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tricky_bundle(tmp_path_factory.mktemp("device") / "tricky")


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_mod, "cuda_available", lambda: False)


def test_auto_is_cpu_without_cuda_and_cuda_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_mod, "cuda_available", lambda: False)
    assert resolve_device("auto") == CPU
    monkeypatch.setattr(device_mod, "cuda_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device(" CPU ") == CPU and resolve_device(CPU) == CPU


def test_cuda_without_cuda_is_a_clear_error(no_cuda: None) -> None:
    with pytest.raises(ParameterError, match="CUDA is not available.*--device auto or cpu"):
        resolve_device("cuda")


@pytest.mark.parametrize("bad", ["gpu", "", "cpu:1", "cuda:x", "mps"])
def test_unknown_devices_are_refused(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_mod, "cuda_available", lambda: True)
    with pytest.raises(ParameterError, match="unknown device.*auto, cpu, cuda"):
        resolve_device(bad)


def test_library_default_reads_ash_device_else_cpu(monkeypatch: pytest.MonkeyPatch,
                                                   no_cuda: None, synthetic_bundle: Path) -> None:
    monkeypatch.delenv(ENV_DEVICE, raising=False)
    assert resolve_device(None) == CPU
    monkeypatch.setenv(ENV_DEVICE, "cuda")
    with pytest.raises(ParameterError, match="CUDA is not available"):
        Evaluator(load_bundle(synthetic_bundle))
    monkeypatch.setenv(ENV_DEVICE, "auto")
    ev = Evaluator(load_bundle(synthetic_bundle))
    assert ev.device == CPU
    assert ev.with_ood(["far"]).device == CPU


@pytest.mark.parametrize("method", ["ash-s", "ash-rand", "react", "dice", "none"])
def test_evaluator_on_a_device_equals_shaping_by_hand(synthetic_bundle: Path,
                                                      method: str) -> None:
    """The device path (features and head moved once, scores brought back) equals the
    shaper and head applied by hand on host tensors; public tensors stay on the host."""
    ev = Evaluator(load_bundle(synthetic_bundle), device="cpu", warn=False)
    got = ev.evaluate(Setting(method, {}, "local", "energy", "id", 3))
    shaper = ev.shaper(Setting(method, {}, "local", "energy", "id", 3))
    weight, bias = shaper.head(ev.weight, ev.bias)
    for split, scores in [("id_test", got.id_scores), *got.ood_scores.items()]:
        x = ev.features(split)
        want = energy_score(torch.addmm(bias, shaper(x, split=split), weight.T)).numpy()
        assert_scores_close(scores, want, (method, split))
        assert ev.shaped_logits(shaper, split).device == CPU
    labels = ev.bundle.id_split.labels_tensor()
    plain = torch.addmm(ev.bias, ev.features("id_test"), ev.weight.T)
    assert got.id_accuracy["unshaped"] == float((plain.argmax(1) == labels).double().mean())
    assert ev.base_logits("far").device == CPU


def test_choose_backend_uses_torch_on_cuda() -> None:
    cuda = torch.device("cuda")  # a device object only: nothing runs on it
    assert build_mod.choose_backend(10, "auto", cuda) == "torch"
    assert build_mod.choose_backend(10, "torch", cuda) == "torch"
    with pytest.raises(ParameterError, match="native cube kernel runs on the CPU only"):
        build_mod.choose_backend(10, "native", cuda)


@pytest.mark.parametrize("threshold", ["local", "global"])
def test_cuda_branch_with_the_cpu_standing_in_equals_exact(
        tricky: Path, threshold: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a GPU runs: backend auto -> torch, one large chunk per split, every fast path
    (ASH-P/S/B/RAND, local and global; ReAct, SCALE), against per-p exact evaluation."""
    monkeypatch.setattr(build_mod, "is_cuda", lambda d: True)
    monkeypatch.setitem(torch_backend.CHUNK_ROWS, "cpu", torch_backend.CHUNK_ROWS["cuda"])
    ev = Evaluator(load_bundle(tricky), warn=False, device="cpu")
    methods = list(CUBE_METHODS) + (["react", "scale"] if threshold == "local" else [])
    cubes = build_cubes(ev, methods, GRID, threshold, seed=5, backend="auto")
    for method, cube in cubes.items():
        assert cube.backend == "torch"
        assert assert_matches(cube, ev, method, threshold, 5) == len(GRID) * 3


def test_chunks_of_any_size_give_the_same_cube(tricky: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunking (CPU 1024 rows, CUDA 16384) changes numbers by float rounding only (BLAS
    blocks differently): 7-row chunks against one chunk, for the prefix and clip paths."""
    ev = Evaluator(load_bundle(tricky), warn=False)
    one = build_cubes(ev, ["ash-s", "ash-rand", "react"], GRID, seed=2, backend="torch")
    monkeypatch.setattr(build_mod, "TORCH_CHUNK", 7)
    small = build_cubes(ev, ["ash-s", "ash-rand", "react"], GRID, seed=2, backend="torch")
    for m in one:
        for split in ev.split_names:
            a, b = one[m].splits[split], small[m].splits[split]
            for field in ("energy", "maxlogit"):
                assert_scores_close(getattr(b, field), getattr(a, field), (m, split, field))
            assert_scores_close(small[m].unshaped[split].energy, one[m].unshaped[split].energy)
            assert np.mean(a.pred == b.pred) > 0.99, (m, split)


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    rc = cli_main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("command", [["evaluate", "--method", "ash-b"],
                                     ["sweep", "--methods", "ash-b", "--p", "60,90"]])
def test_cli_device_cuda_without_cuda_is_one_error_line(
        command: list[str], synthetic_bundle: Path, no_cuda: None,
        capsys: pytest.CaptureFixture) -> None:
    rc, out, err = run_cli(capsys, command[0], str(synthetic_bundle), *command[1:],
                           "--device", "cuda")
    assert rc == 2 and out == ""
    assert err.startswith("error: device 'cuda' was asked for but CUDA is not available")
    assert len(err.strip().splitlines()) == 1


def test_cli_device_cpu_and_auto_give_the_same_numbers(
        synthetic_bundle: Path, no_cuda: None, capsys: pytest.CaptureFixture,
        tmp_path: Path) -> None:
    outs = []
    for device in ("cpu", "auto"):
        rc, out, _ = run_cli(capsys, "evaluate", str(synthetic_bundle), "--method", "ash-s",
                             "--p", "80", "--format", "json", "--device", device)
        assert rc == 0
        outs.append(json.loads(out))
    assert outs[0] == outs[1]
    rc, out, err = run_cli(capsys, "sweep", str(synthetic_bundle), "--methods", "ash-p,react",
                           "--p", "60,90", "--device", "cpu", "--cache-dir", str(tmp_path))
    assert rc == 0 and "react" in out, err


def test_dashboard_device_reaches_the_server_as_ash_device(
        synthetic_bundle: Path, no_cuda: None, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from ash_core.cli import dashboard as dashboard_cli

    started = []
    monkeypatch.setattr(dashboard_cli, "supervise", lambda cmd, env: started.append(env) or 0)
    rc, _, err = run_cli(capsys, "dashboard", str(synthetic_bundle), "--device", "cuda")
    assert rc == 2 and started == [] and "CUDA is not available" in err
    assert run_cli(capsys, "dashboard", str(synthetic_bundle))[0] == 0
    assert started[-1]["ASH_DEVICE"] == "cpu"  # auto without CUDA
