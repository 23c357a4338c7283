"""flowcore: NICE, RealNVP and Glow normalizing flows in PyTorch.

Forward maps data to latent and returns `(z, log_det)`; see `flowcore.core`.
"""

from flowcore.breakdown import bits_breakdown
from flowcore.checkpoint import CheckpointError, load, load_metadata, save
from flowcore.core import Bijection, Compose, Flow, StandardLogistic, StandardNormal
from flowcore.data import TOY_SETS, load_mnist, toy_data
from flowcore.device import default_device
from flowcore.metrics import bits_per_dim, nats_to_bits_per_dim
from flowcore.models import build, build_from_dict, config_dict, make_config
from flowcore.train import StepRecord, TrainConfig, Trainer

__all__ = [
    "Bijection", "Compose", "Flow", "StandardLogistic", "StandardNormal",
    "TOY_SETS", "bits_breakdown", "bits_per_dim", "build", "build_from_dict", "config_dict", "default_device",
    "load_mnist", "make_config", "nats_to_bits_per_dim", "toy_data",
    "CheckpointError", "StepRecord", "TrainConfig", "Trainer", "load", "load_metadata", "save",
]
__version__ = "0.1.0"
