"""Search spaces, registered by name (Hydra group ``search_space``)."""

from lightning_nas.spaces.base import SPACES, SearchSpace, register_space
from lightning_nas.spaces.darts_cell import DartsCellSpace
from lightning_nas.spaces.efficient_convnet import EfficientConvNetSpace
from lightning_nas.spaces.hybrid_convnet import HybridConvNetSpace
from lightning_nas.spaces.macro_convnet import MacroConvNetSpace
from lightning_nas.spaces.nb201 import NB201Space, nb201_from_string, nb201_to_string
from lightning_nas.spaces.ops import MACRO_OPS, register_op
from lightning_nas.spaces.vit import VisionTransformerSpace

__all__ = [
    "MACRO_OPS",
    "SPACES",
    "DartsCellSpace",
    "EfficientConvNetSpace",
    "HybridConvNetSpace",
    "MacroConvNetSpace",
    "NB201Space",
    "SearchSpace",
    "VisionTransformerSpace",
    "nb201_from_string",
    "nb201_to_string",
    "register_op",
    "register_space",
]
