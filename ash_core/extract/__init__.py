"""Feature extraction: the only place a model runs (see docs/extraction.md).

    from ash_core.extract import ExtractConfig, SplitSpec, extract
    extract(ExtractConfig(out="bundle", model="cifar_resnet20", weights="resnet20.th",
                          data_root="../shared/data",
                          splits=[SplitSpec("cifar10_test", "id", "folder:cifar10/test")]))
"""

from .data import DataError, Protocol, make_protocol, parse_spec
from .extractor import (
    ExtractConfig,
    ExtractError,
    Extractor,
    FeatureHook,
    SplitSpec,
    extract,
    fit_linear_head,
)
from .models import (
    CifarResNet,
    LoadedModel,
    MnistCNN,
    ModelError,
    load_model,
    read_state_dict,
    rename_mobilenet_v2_backbone,
)

__all__ = [
    "CifarResNet", "DataError", "ExtractConfig", "ExtractError", "Extractor", "FeatureHook",
    "LoadedModel", "MnistCNN", "ModelError", "Protocol", "SplitSpec", "extract",
    "fit_linear_head", "load_model", "make_protocol", "parse_spec", "read_state_dict",
    "rename_mobilenet_v2_backbone",
]
