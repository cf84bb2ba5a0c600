"""Feature extraction: the only place a model runs (see docs/extraction.md).

    from ash_core.extract import ExtractConfig, SplitSpec, extract
    extract(ExtractConfig(out="bundle", model="cifar_resnet20", weights="resnet20.th",
                          data_root="../shared/data",
                          splits=[SplitSpec("cifar10_test", "id", "folder:cifar10/test")]))

Modules, each with one job: ``config`` (the recipe), ``models`` (building and loading models;
``loaded`` what a loader returns, ``timm_models`` and ``hf_models`` the ``timm:`` and ``hf:``
families), ``hook`` (capturing a layer), ``protocol`` (preprocessing), ``data`` (image sources
and specs), ``fingerprint`` / ``workdir`` / ``leftovers`` (resumable, never-mixed work), ``runner`` (the
run loop), ``head`` and ``writer`` (the bundle's head, splits and provenance), ``publish``
(replacing the output safely). The command line lives in ``ash_core.cli.extract``.
"""

from ash_core.errors import DataError, ExtractError, ModelError
from ash_core.extract.config import ExtractConfig, SplitSpec, check_split_roles
from ash_core.extract.data import parse_spec
from ash_core.extract.head import fit_linear_head
from ash_core.extract.hook import FeatureHook
from ash_core.extract.models import (
    CifarResNet,
    LoadedModel,
    MnistCNN,
    load_model,
    read_state_dict,
    rename_mobilenet_v2_backbone,
)
from ash_core.extract.protocol import Protocol, make_protocol
from ash_core.extract.runner import Extractor, extract

__all__ = [
    "CifarResNet", "DataError", "ExtractConfig", "ExtractError", "Extractor", "FeatureHook",
    "LoadedModel", "MnistCNN", "ModelError", "Protocol", "SplitSpec", "check_split_roles",
    "extract", "fit_linear_head", "load_model", "make_protocol", "parse_spec", "read_state_dict",
    "rename_mobilenet_v2_backbone",
]
