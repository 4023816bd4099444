"""gradtrace's training engine: multi-layer perceptrons trained by backpropagation.

This package may import only numpy and the Python standard library: the API and the
worker depend on it, never the other way round (tests/engine/test_imports.py checks).
The engine never prints; progress goes to the ``on_epoch`` callback of ``Trainer.fit``.
"""
from . import datasets
from .activations import ACTIVATIONS
from .datafit import check_data_fit
from .errors import DivergenceError, SpecError
from .gradcheck import gradient_check
from .losses import LOSSES
from .model import Model
from .optimizers import OPTIMIZERS
from .records import EpochRecord, FitResult, LayerRecord
from .schema import spec_json_schema
from .spec import validate_spec
from .trace import trace
from .trainer import Trainer

__all__ = [
    "ACTIVATIONS", "LOSSES", "OPTIMIZERS", "DivergenceError", "EpochRecord", "FitResult",
    "LayerRecord", "Model", "SpecError", "Trainer", "check_data_fit", "datasets",
    "gradient_check", "spec_json_schema", "trace", "validate_spec",
]
