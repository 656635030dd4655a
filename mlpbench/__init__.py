"""mlpbench: one multi-layer perceptron, several backends, parity-checked and benchmarked.

Importing this package imports NumPy only; backends load their libraries on first use.
"""

from .core import data as datasets
from .backends import BackendUnavailable, TrainingDiverged, available_backends, get_backend
from .model import MLP

__version__ = "0.1.0"

__all__ = ["MLP", "BackendUnavailable", "TrainingDiverged", "available_backends", "datasets", "get_backend"]
