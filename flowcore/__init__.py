"""flowcore: NICE, RealNVP and Glow normalizing flows in PyTorch.

Forward maps data to latent and returns `(z, log_det)`; see `flowcore.core`. `build` makes the
three families; the layers below compose into flows of one's own (`Compose`, `Flow`), which
`save` and `load(path, into=flow)` keep.
"""

from flowcore.breakdown import bits_breakdown
from flowcore.checkpoint import CheckpointError, load, load_metadata, save
from flowcore.core import Bijection, Compose, Flow, StandardLogistic, StandardNormal, evaluating
from flowcore.coupling import (
    AdditiveCoupling,
    AffineCoupling,
    AlternatingMask,
    BinaryMask,
    CheckerboardMask,
    HalfMask,
)
from flowcore.data import TOY_SETS, load_mnist, toy_data
from flowcore.dequantization import VariationalDequantizer
from flowcore.device import default_device
from flowcore.linear import InvertibleLinear, LUInvertibleLinear, Permutation, Reverse, Shuffle
from flowcore.metrics import bits_per_dim, nats_to_bits_per_dim
from flowcore.models import build, build_from_dict, config_dict, make_config
from flowcore.nets import MLP, GlowNet, ResNet
from flowcore.normalization import ActNorm, DiagonalScaling
from flowcore.preprocess import Logit, Rescale, dequantize
from flowcore.priors import LearnedPrior, Split
from flowcore.reshape import Flatten, Squeeze
from flowcore.train import StepRecord, TrainConfig, Trainer

__all__ = [
    "Bijection", "Compose", "Flow", "StandardLogistic", "StandardNormal", "evaluating",
    "ActNorm", "AdditiveCoupling", "AffineCoupling", "AlternatingMask", "BinaryMask", "CheckerboardMask",
    "DiagonalScaling", "Flatten", "GlowNet", "HalfMask", "InvertibleLinear", "LUInvertibleLinear",
    "LearnedPrior", "Logit", "MLP", "Permutation", "Rescale", "ResNet", "Reverse", "Shuffle", "Split",
    "Squeeze", "VariationalDequantizer", "dequantize",
    "TOY_SETS", "bits_breakdown", "bits_per_dim", "build", "build_from_dict", "config_dict", "default_device",
    "load_mnist", "make_config", "nats_to_bits_per_dim", "toy_data",
    "CheckpointError", "StepRecord", "TrainConfig", "Trainer", "load", "load_metadata", "save",
]
__version__ = "0.1.0"
