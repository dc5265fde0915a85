"""Transfer learning on the base model: new words from a few examples, trained on the device.

In the spirit of TensorFlow.js speech-commands' transfer recognizer::

    recognizer = TransferRecognizer(base, "lights")
    recognizer.add_example("on", samples)          # 16 kHz audio, any length
    recognizer.add_example("off", samples)
    recognizer.train(epochs=40)                    # a head on the frozen embedding
    recognizer.train(fine_tune_last_block=True)    # ... or also adapt the base's last block
    recognizer.predict(samples)                    # {"on": 0.93, "off": 0.02, "_background_": ...}
    recognizer.save(path); TransferRecognizer.load(path, base)

A ``_background_`` class of noise at random levels is added by default, so a recognizer never
has to pick one of its words for silence. Each example is augmented (noise, reverb, gain, speed)
into several training windows.
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from pathlib import Path

import numpy as np

from dsp.constants import SAMPLE_RATE_HZ
from dsp.features import log_mel
from kernels.errors import ModelError
from models.base.architecture import build_head, last_block_start
from models.base.model import BaseModel
from models.nn.checkpoint import Manifest, load_model, save_model
from models.nn.layers import Sequential
from models.nn.trainer import EpochRecord, TrainConfig, Trainer, windows
from models.speech.augment import AugmentConfig, Augmenter, apply_gain, colored_noise
from models.speech.corpus import Corpus
from models.speech.dataset import centered_window, fit_to_window, trim_silence

BACKGROUND = "_background_"
TRANSFER_CONFIG = TrainConfig(
    epochs=60, batch_size=16, lr=1e-2, warmup_epochs=0, patience=60, time_masks=0, freq_masks=0
)
ONE_SECOND = SAMPLE_RATE_HZ


def example_window(samples: np.ndarray) -> np.ndarray:
    """An example's speech, trimmed of silence and centred in a 1 s window."""
    speech = trim_silence(np.asarray(samples, dtype=np.float32))
    if speech.size == 0:
        raise ModelError("example holds no sound (silent or empty audio)")
    return centered_window(speech, ONE_SECOND)


class TransferRecognizer:
    """A recognizer for new words built on a base model's embedding.

    Parameters
    ----------
    base : BaseModel
        The trained base; it is not modified (fine-tuning works on a copy of its last block).
    name : str
        Name of this recognizer (stored in its file).
    background : bool
        Add a ``_background_`` class of noise windows.
    """

    def __init__(self, base: BaseModel, name: str, *, background: bool = True):
        self.base, self.name, self.background = base, name, background
        self.examples: dict[str, list[np.ndarray]] = {}
        self.words: list[str] = []
        self.head: Sequential | None = None
        self.tuned_block: Sequential | None = None

    def add_example(self, word: str, samples: np.ndarray) -> None:
        """Add one recording (16 kHz mono float) of ``word``."""
        if not word or word == BACKGROUND:
            raise ModelError(
                f"word: got {word!r}, expected a non-empty name other than {BACKGROUND!r}"
            )
        self.examples.setdefault(word, []).append(example_window(samples))

    def count_examples(self) -> dict[str, int]:
        """Examples per word."""
        return {word: len(clips) for word, clips in self.examples.items()}

    def _dataset(self, copies: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        augmenter = Augmenter(AugmentConfig(pitch_prob=0.0, snr_range_db=(10.0, 40.0)))
        features, labels = [], []
        most_examples = max(len(clips) for clips in self.examples.values())
        for label, word in enumerate(self.words):
            if word == BACKGROUND:  # as many windows as the best-covered word
                clips = [self._background(rng) for _ in range(copies * most_examples)]
            else:
                clips = [
                    fit_to_window(augmenter(clip, rng), length=ONE_SECOND, rng=rng) if k else clip
                    for clip in self.examples[word]
                    for k in range(copies)
                ]
            features += [log_mel(clip) for clip in clips]
            labels += [label] * len(clips)
        return np.stack(features).astype(np.float16), np.array(labels, dtype=np.int16)

    @staticmethod
    def _background(rng: np.random.Generator) -> np.ndarray:
        noise = colored_noise(ONE_SECOND, exponent=rng.uniform(0, 2), rng=rng)
        return apply_gain(noise, rng.uniform(-70, -20))

    def train(
        self,
        *,
        epochs: int = TRANSFER_CONFIG.epochs,
        fine_tune_last_block: bool = False,
        copies: int = 8,
        validation_split: float = 0.2,
        seed: int = 0,
    ) -> list[EpochRecord]:
        """Train the head (and optionally the base's last block) on the examples.

        Parameters
        ----------
        epochs : int
            Most epochs.
        fine_tune_last_block : bool
            Also train a copy of the base's last depthwise-separable block and embedding layer.
        copies : int
            Training windows made from each example (the example itself, then augmented copies).
        validation_split : float
            Share of windows held out to pick the best epoch.
        seed : int
            Seeds augmentation, the split and training.
        """
        if len(self.examples) + self.background < 2:
            raise ModelError(
                f"{self.name}: need examples of at least two words (or one plus background)"
            )
        self.words = sorted(self.examples) + ([BACKGROUND] if self.background else [])
        rng = np.random.default_rng(seed)
        features, labels = self._dataset(copies, rng)
        order = rng.permutation(labels.size)
        n_val = max(1, round(validation_split * labels.size))
        split = {"validation": order[:n_val], "train": order[n_val:]}
        prefix, trainable = self._split_base(fine_tune_last_block)
        inputs = self._through(prefix, features)
        corpora = {k: Corpus(inputs[v], labels[v], tuple(self.words)) for k, v in split.items()}
        head = build_head(self.base.config.embedding_dim, len(self.words), rng)
        model = Sequential([*trainable.layers, *head.layers])
        config = TrainConfig(**{**asdict(TRANSFER_CONFIG), "epochs": epochs, "seed": seed})
        history = Trainer(model, config, architecture={"name": "transfer"}, labels=self.words).fit(
            corpora["train"], corpora["validation"]
        )
        self.head = Sequential(model.layers[len(trainable) :])
        self.tuned_block = (
            Sequential(model.layers[: len(trainable)]) if fine_tune_last_block else None
        )
        return history

    def _split_base(self, fine_tune: bool) -> tuple[Sequential, Sequential]:
        layers = self.base.base.layers
        if not fine_tune:
            return Sequential(layers), Sequential([])
        cut = last_block_start(self.base.base)
        return Sequential(layers[:cut]), Sequential(copy.deepcopy(layers[cut:]))

    @staticmethod
    def _through(prefix: Sequential, features: np.ndarray) -> np.ndarray:
        """Run log-mel windows [n, frames, mels] through the frozen layers, float32, in batches."""
        out = [
            prefix.forward(windows(features, slice(i, i + 256)), training=False)
            for i in range(0, len(features), 256)
        ]
        return np.concatenate(out)

    def predict(self, samples: np.ndarray) -> dict[str, float]:
        """Probability of each word (and background) for one recording."""
        probabilities = self.predict_many([samples])[0]
        return {word: float(p) for word, p in zip(self.words, probabilities, strict=True)}

    def predict_many(self, recordings: list[np.ndarray]) -> np.ndarray:
        """Probabilities [shape=(len(recordings), len(words))], columns in `words` order."""
        if self.head is None:
            raise ModelError(f"{self.name}: train the recognizer before predicting")
        x = np.stack([log_mel(example_window(samples)) for samples in recordings])
        hidden = self._through(self._split_base(self.tuned_block is not None)[0], x)
        if self.tuned_block is not None:
            hidden = self.tuned_block.forward(hidden, training=False)
        logits = self.head.forward(hidden, training=False).astype(np.float64)
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    def save(self, path: Path) -> Manifest:
        """Write the head (and tuned block) tied to the base model's checksum."""
        if self.head is None or self.base.manifest is None:
            raise ModelError(
                f"{self.name}: only a trained recognizer on a saved base model can be saved"
            )
        arrays = {f"head/{k}": v for k, v in self.head.state_dict().items()}
        if self.tuned_block is not None:
            arrays |= {f"block/{k}": v for k, v in self.tuned_block.state_dict().items()}
        extra = {
            "name": self.name,
            "base_sha256": self.base.manifest.sha256,
            "fine_tuned": self.tuned_block is not None,
        }
        manifest = Manifest(
            "head",
            {"name": "transfer", "args": {"classes": len(self.words)}},
            self.words,
            extra=extra,
        )
        return save_model(path, arrays, manifest)

    @classmethod
    def load(cls, path: Path, base: BaseModel) -> TransferRecognizer:
        """Read a recognizer saved for ``base``; refuses one trained on another base."""
        arrays, manifest = load_model(path, kind="head")
        if base.manifest is None or manifest.extra.get("base_sha256") != base.manifest.sha256:
            raise ModelError(f"{path}: trained on another base model (base sha256 differs)")
        recognizer = cls(base, manifest.extra["name"], background=BACKGROUND in manifest.labels)
        recognizer.words = list(manifest.labels)
        fine_tuned = bool(manifest.extra["fine_tuned"])
        head_state = {
            k.removeprefix("head/"): v for k, v in arrays.items() if k.startswith("head/")
        }
        block_state = {
            k.removeprefix("block/"): v for k, v in arrays.items() if k.startswith("block/")
        }
        try:
            _, trainable = recognizer._split_base(fine_tuned)
            head = build_head(
                base.config.embedding_dim, len(recognizer.words), np.random.default_rng(0)
            )
            head.load_state_dict(head_state)
            if fine_tuned:
                trainable.load_state_dict(block_state)
        except ModelError as err:  # a layer or its weights, built from the file's manifest
            raise ModelError(f"{path}: {err}") from err
        recognizer.head = head
        if fine_tuned:
            recognizer.tuned_block = trainable
        return recognizer
