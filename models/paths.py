"""The model files shipped inside the package, each path defined once.

Everything here lives in ``models/data/`` (package data): the base network, the vocabulary its
data sets draw from, and the wake-word detectors trained for the shipped config.
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
SHIPPED_BASE_MODEL = DATA_DIR / "base.npz"
"""The base recognizer every shipped detector was trained on."""
SHIPPED_DETECTORS = DATA_DIR / "wake"
"""Wake-word detectors trained for the shipped config, one ``NAME.npz`` each."""
VOCABULARY_FILE = DATA_DIR / "vocabulary.txt"
"""The words the synthetic data sets are drawn from."""
SHIPPED_EMBEDDING = DATA_DIR / "speech_embedding.npz"
"""The imported speech embedding network (see ``NOTICE`` beside it)."""
