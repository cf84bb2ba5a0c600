"""Recipes (configs/*.json) and the data-spec features they use for validation splits:
seeded disjoint parts (``part=I/N``), labels of flat folders from an annotations file, every
committed recipe parsing, the split plans of the demo recipes, and the ImageNet recipes run
end to end on a tiny generated folder tree (a randomly initialised model; nothing downloaded)."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ash_core import load_bundle
from ash_core.extract import DataError, ExtractConfig, extract, parse_spec
from ash_core.extract.fingerprint import make_fingerprints

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.json"))
DEMOS = ("cifar10_resnet20", "cifar10_resnet56", "mnist_cnn", "tinyimagenet_mobilenetv2",
         "tinyimagenet_efficientnet_lite0", "cifar10_vit_hybrid")
SHAPE = (32, 32, 3)


@pytest.fixture()
def flat_root(tmp_path: Path) -> Path:
    """data/flat with 23 tiny PNGs and an annotations file naming 3 classes."""
    rng = np.random.default_rng(0)
    flat = tmp_path / "data" / "flat"
    flat.mkdir(parents=True)
    lines = []
    for i in range(23):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(flat / f"v{i}.png")
        lines.append(f"v{i}.png\t{'zebra' if i % 3 == 0 else 'ant' if i % 3 == 1 else 'moth'}"
                     "\t0\t0\t8\t8")
    (tmp_path / "data" / "notes.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "data"


# ------------------------------------------------------------------ part=I/N


def _refs(spec: str, root: Path) -> list[str]:
    return parse_spec(spec, root, SHAPE).sources()


def test_parts_are_disjoint_cover_the_set_and_keep_file_order(flat_root: Path) -> None:
    whole = _refs("folder:flat", flat_root)
    parts = [_refs(f"folder:flat?part={i}/5&part_seed=3", flat_root) for i in range(5)]
    assert sorted(len(p) for p in parts) == [4, 4, 5, 5, 5]  # near-equal: sizes differ by <= 1
    assert sorted(r for p in parts for r in p) == sorted(whole)  # disjoint and covering
    for p in parts:  # inside a part, the source's own order
        assert p == sorted(p, key=whole.index)
    # a range of blocks is the union of its blocks
    assert set(_refs("folder:flat?part=1-3/5&part_seed=3", flat_root)) == set(
        parts[1] + parts[2] + parts[3])
    # deterministic; the seed matters; the default seed is 0
    assert parts[0] == _refs("folder:flat?part=0/5&part_seed=3", flat_root)
    assert parts[0] != _refs("folder:flat?part=0/5&part_seed=4", flat_root)
    assert _refs("folder:flat?part=0/5", flat_root) == _refs("folder:flat?part=0/5&part_seed=0",
                                                             flat_root)


def test_part_comes_before_every_and_limit(flat_root: Path) -> None:
    part = _refs("folder:flat?part=1-4/5", flat_root)
    assert _refs("folder:flat?part=1-4/5&every=2&limit=3", flat_root) == part[::2][:3]


def test_parts_of_array_sources_keep_labels_aligned(tmp_path: Path) -> None:
    np.savez(tmp_path / "s.npz", images=np.zeros((10, 4, 4), np.uint8), labels=np.arange(10))
    src = parse_spec("npz:s.npz?part=0-1/3&part_seed=1", tmp_path, SHAPE)
    ids = [int(r.rsplit("#", 1)[1]) for r in src.sources()]
    assert list(src.labels()) == ids and len(ids) == 7  # 10 -> blocks of 4, 3, 3


@pytest.mark.parametrize("opts,message", [
    ("part=5/5", "out of range"), ("part=3-1/5", "out of range"), ("part=0/0", "out of range"),
    ("part=a/5", "I/N or I-J/N"), ("part=1", "I/N or I-J/N"), ("part=-1/5", "I/N or I-J/N"),
    ("part=1/2/3", "I/N or I-J/N"), ("part=", "I/N or I-J/N"), ("part=0/24", "into 24 parts"),
    ("part_seed=1", "needs part=I/N"), ("part=0/2&part_seed=-1", "must be >= 0"),
    ("part=0/2&part_seed=x", "must be an integer"),
])
def test_bad_part_options_are_explained(flat_root: Path, opts: str, message: str) -> None:
    with pytest.raises(DataError, match=re.escape(message)):
        parse_spec(f"folder:flat?{opts}", flat_root, SHAPE)


# ------------------------------------------------------------------ annotations=FILE


def test_flat_folder_labels_from_an_annotations_file(flat_root: Path) -> None:
    src = parse_spec("folder:flat?annotations=notes.txt", flat_root, SHAPE)
    assert src.class_names == ["ant", "moth", "zebra"]  # sorted, as class sub-folders are
    names = {Path(r).name: int(lab) for r, lab in zip(src.sources(), src.labels(), strict=True)}
    assert names["v0.png"] == 2 and names["v1.png"] == 0 and names["v2.png"] == 1
    assert src.describe()["annotations"] == "notes.txt"
    assert parse_spec("folder:flat", flat_root, SHAPE).labels() is None  # unlabelled without it


def test_annotation_errors_are_explained(flat_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read annotations file"):
        parse_spec("folder:flat?annotations=missing.txt", flat_root, SHAPE)
    notes = flat_root / "notes.txt"
    notes.write_text("\n".join(notes.read_text().splitlines()[1:]))  # drop v0.png's line
    with pytest.raises(DataError, match=r"1 image\(s\) have no line.*first: v0.png"):
        parse_spec("folder:flat?annotations=notes.txt", flat_root, SHAPE)
    notes.write_text("v0.png\n")
    with pytest.raises(DataError, match="line 1: expected 'FILENAME CLASS"):
        parse_spec("folder:flat?annotations=notes.txt", flat_root, SHAPE)
    (flat_root / "tree" / "a").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(flat_root / "tree" / "a" / "x.png")
    with pytest.raises(DataError, match="class subfolders"):
        parse_spec("folder:tree?annotations=notes.txt", flat_root, SHAPE)


def test_classes_option_maps_labels_onto_a_classifiers_class_list(flat_root: Path) -> None:
    """classes=FILE: labels become indices into that list (a head's classes), one to one."""
    (flat_root / "head.txt").write_text("bee\nzebra extra words\nant\n\nmoth\n")
    src = parse_spec("folder:flat?annotations=notes.txt&classes=head.txt&part=0/2", flat_root,
                     SHAPE)
    assert src.class_names == ["bee", "zebra", "ant", "moth"]
    own = parse_spec("folder:flat?annotations=notes.txt&part=0/2", flat_root, SHAPE)
    assert src.sources() == own.sources()  # the same images, only relabelled
    expected = [["bee", "zebra", "ant", "moth"].index(own.class_names[k]) for k in own.labels()]
    assert src.labels().tolist() == expected and set(expected) == {1, 2, 3}
    assert src.describe()["classes"] == "head.txt"


def test_classes_imagenet_1k_uses_timms_wnid_order(shared_data: Path) -> None:
    """All 200 Tiny-ImageNet wnids map one to one onto ImageNet-1k indices (timm's synsets)."""
    from timm.data import ImageNetInfo

    spec = ("folder:tinyimagenet/val/images?annotations=tinyimagenet/val/val_annotations.txt"
            "&classes=imagenet-1k")
    src = parse_spec(spec, shared_data, SHAPE)
    own = parse_spec(spec.replace("&classes=imagenet-1k", ""), shared_data, SHAPE)
    wnids = ImageNetInfo("imagenet-1k").label_names()
    assert src.class_names == list(wnids) and len(own.class_names) == 200
    pairs = set(zip(own.labels().tolist(), src.labels().tolist(), strict=True))
    assert len(pairs) == 200 == len({b for _, b in pairs})  # one to one
    assert all(wnids[b] == own.class_names[a] for a, b in pairs)
    assert src.labels()[0] == wnids.index("n03444034")  # val_0.JPEG: go-kart, index 573


def test_classes_errors_are_explained(flat_root: Path) -> None:
    (flat_root / "head.txt").write_text("ant\nmoth\n")
    with pytest.raises(DataError, match=r"1 class\(es\) of this set are not in head.txt.*zebra"):
        parse_spec("folder:flat?annotations=notes.txt&classes=head.txt", flat_root, SHAPE)
    (flat_root / "head.txt").write_text("ant\nmoth\nzebra\nant\n")
    with pytest.raises(DataError, match=r"names \['ant'\] more than once"):
        parse_spec("folder:flat?annotations=notes.txt&classes=head.txt", flat_root, SHAPE)
    with pytest.raises(DataError, match="has none"):
        parse_spec("folder:flat?classes=head.txt", flat_root, SHAPE)
    with pytest.raises(DataError, match="no ImageNet subset"):
        parse_spec("folder:flat?annotations=notes.txt&classes=imagenet-5", flat_root, SHAPE)
    with pytest.raises(DataError, match="cannot read"):
        parse_spec("folder:flat?annotations=notes.txt&classes=none.txt", flat_root, SHAPE)


# ------------------------------------------------------------------ committed recipes


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_committed_recipe_parses(path: Path) -> None:
    cfg = ExtractConfig.from_json(path)
    assert cfg.splits and cfg.out.endswith(cfg.name or "")


def _plan(cfg: ExtractConfig) -> dict[str, list[tuple[str, set[int], int]]]:
    """Per data set (spec without part options): the (split, blocks, seed) that use it."""
    sets: dict[str, list[tuple[str, set[int], int]]] = defaultdict(list)
    for s in cfg.splits:
        base, _, query = s.data.partition("?")
        opts = dict(kv.split("=", 1) for kv in query.split("&") if kv)
        part = opts.pop("part", None)
        seed = int(opts.pop("part_seed", 0))
        key = base + "?" + "&".join(f"{k}={v}" for k, v in sorted(opts.items()))
        if part is None:
            sets[key].append((s.name, {-1}, seed))
            continue
        blocks, parts = part.split("/")
        first, _, last = blocks.partition("-")
        sets[key].append((s.name, set(range(int(first), int(last or first) + 1)), seed))
    return sets


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_recipes_split_a_data_set_only_into_disjoint_parts(path: Path) -> None:
    """Two splits reading the same images must be disjoint parts of one seeded partition (a
    whole set used twice, or overlapping blocks, would leak validation into test data)."""
    for base, users in _plan(ExtractConfig.from_json(path)).items():
        if len(users) < 2:
            continue
        assert len({seed for _, _, seed in users}) == 1, (base, users)
        seen: set[int] = set()
        for name, blocks, _ in users:
            assert -1 not in blocks and not blocks & seen, f"{path.name}: {name} overlaps {base}"
            seen |= blocks


def test_demo_recipes_have_validation_splits() -> None:
    for name in DEMOS:
        roles = [s.role for s in ExtractConfig.from_json(REPO / "configs" / f"{name}.json").splits]
        assert roles.count("id_val") == 1 and roles.count("ood_val") >= 1, name


@pytest.mark.parametrize("name", DEMOS)
def test_demo_validation_splits_are_disjoint_from_what_they_validate(name: str) -> None:
    """id_val shares no image with id_fit or the ID test set, ood_val none with any OOD test
    set (by the sidecar's ``source`` column, which names every image once)."""
    bundle = load_bundle(REPO / "cached_features" / name, verify=False)
    sources = {s.name: set(s.meta["source"]) for s in bundle.splits}
    for s in bundle.splits:
        assert len(sources[s.name]) == len(s), f"{s.name}: an image appears twice"
    id_val, ood_val = bundle.id_val, bundle.ood_val_splits
    assert id_val is not None and ood_val, f"{name} has no validation splits"
    for other in [bundle.id_split, bundle.id_fit]:
        if other is not None:
            assert sources[id_val.name].isdisjoint(sources[other.name]), (id_val.name, other.name)
    for val in ood_val:
        for test in bundle.ood_splits:
            assert sources[val.name].isdisjoint(sources[test.name]), (val.name, test.name)


def test_committed_demo_manifests_record_their_recipes_fingerprint() -> None:
    """``make bundles`` recognises a committed demo bundle as its recipe's (groups and all):
    the manifest's ``recipe_sha256`` is the recipe's bundle fingerprint."""
    checked = 0
    for path in sorted((REPO / "configs").glob("*.json")):
        bundle = REPO / "cached_features" / path.stem
        if not (bundle / "manifest.json").exists():
            continue
        manifest = json.loads((bundle / "manifest.json").read_text())
        recorded = manifest["extraction"].get("recipe_sha256")
        if recorded is None:  # re-cut from an older extraction: its note says so
            assert "note" in manifest["extraction"]
            continue
        cfg = ExtractConfig.from_json(path)
        fps = make_fingerprints(cfg, manifest["model"]["weights_sha256"],
                                manifest["preprocessing"], "cpu", path.stem)
        assert fps.bundle == recorded, path.stem
        assert manifest.get("groups") == cfg.groups, path.stem
        checked += 1
    assert checked >= 3


# ------------------------------------------------------------------ ImageNet recipes


def _fake_imagenet(root: Path) -> None:
    """A few random JPEG/PNG images per fake class, in the recipe's folder layout."""
    rng = np.random.default_rng(1)

    def save(folder: Path, n: int, ext: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            size = (int(rng.integers(200, 300)), int(rng.integers(200, 300)), 3)
            Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(folder / f"{i}.{ext}")

    for wnid in ("n01440764", "n01443537", "n01484850"):
        save(root / "imagenet" / "val" / wnid, 2, "JPEG")
        save(root / "imagenet" / "train" / wnid, 1, "JPEG")
    for ood in ("iNaturalist", "SUN", "Places"):
        save(root / "ood_data" / ood / "images", 2, "jpg")
    save(root / "ood_data" / "dtd" / "images" / "banded", 2, "png")


@pytest.mark.parametrize("recipe", ["imagenet_resnet50", "imagenet_mobilenetv2"])
def test_imagenet_recipes_run_on_a_tiny_tree(tmp_path: Path, recipe: str) -> None:
    _fake_imagenet(tmp_path / "data")
    path = REPO / "configs" / f"{recipe}.json"
    raw = json.loads(path.read_text())
    cfg = ExtractConfig.from_json(path, out=str(tmp_path / recipe), data_root=str(tmp_path /
                                  "data"), workers=0, progress=False, batch_size=4)
    # the recipe's own architecture, built without weights (weights=None: nothing fetched);
    # 128 parts of 3 train images would be empty, so id_fit/id_val are cut in 3 instead
    cfg.weights = None
    for s in cfg.splits:
        s.data = s.data.replace("part=0/128", "part=0/3").replace("part=1/128", "part=1/3")
    bundle = load_bundle(extract(cfg))
    m = bundle.manifest
    assert m["model"]["name"] == raw["model"]
    assert bundle.dim == {"resnet50": 2048, "mobilenet_v2": 1280}[raw["model"]]
    assert (m["preprocessing"]["resize_shorter_side"], m["preprocessing"]["center_crop"]) == (
        256, 224)
    assert m["preprocessing"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    sizes = {s.name: (s.role, len(s)) for s in bundle.splits}
    assert sizes == {"imagenet_val": ("id", 6), "imagenet_train": ("id_fit", 1),
                     "imagenet_train_val": ("id_val", 1), "inaturalist": ("ood", 2),
                     "sun": ("ood", 2), "places": ("ood", 2), "textures": ("ood", 2)}
    ids = bundle.id_split
    assert list(ids.labels) == [0, 0, 1, 1, 2, 2]  # sorted wnid folders = ImageNet indices
    assert ids.meta["source"][0] == "imagenet/val/n01440764/0.JPEG"
    assert set(bundle.id_fit.meta["source"]).isdisjoint(bundle.id_val.meta["source"])
    assert bundle.split("textures").meta["source"][0] == "ood_data/dtd/images/banded/0.png"
    assert all(s.thumbnails is None for s in bundle.splits)  # ImageNet-family images stay out
