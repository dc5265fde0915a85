"""Evidence for the base model: held-out synthetic voices and real human speech (FSDD).

- Speech Commands accuracy: the 12-class head on the test split, spoken by voices never heard in
  training.
- FSDD zero-shot: a digit head trained only on synthetic digits (embeddings of the training
  corpus), scored on every real recording.
- FSDD few-shot: per speaker, the mean embedding of 5 takes per digit is that digit's prototype;
  the speaker's other takes are classified by the nearest prototype (cosine similarity).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsp.audio import load_audio
from dsp.features import log_mel
from kernels.errors import AudioError
from models.base.model import COMMANDS_HEAD, BaseModel
from models.base.training import train_head
from models.nn.trainer import TrainConfig
from models.speech.corpus import Corpus, CorpusRecipe
from models.speech.dataset import COMMAND_WORDS, DIGIT_WORDS, centered_window

FSDD_NAME = re.compile(r"^(?P<digit>\d)_(?P<speaker>[a-z]+)_(?P<take>\d+)\.wav$")
SHOTS = 5
DIGIT_RENDITIONS = {"train": 160, "validation": 20, "test": 1}
"""Synthetic renditions per digit for the zero-shot digit head (training voices only)."""
COMMAND_TEST_RENDITIONS = 40
"""Renditions per word of the 12-class test set, spoken by held-out voices."""
UNKNOWN_TEST_WORDS = 10
"""Other vocabulary words in the 12-class test set (they must be classed as unknown)."""


def digit_recipe(base: CorpusRecipe) -> CorpusRecipe:
    """Synthetic digits for the zero-shot head: many renditions, augmented like the base corpus."""
    return CorpusRecipe(
        words=DIGIT_WORDS, renditions_per_word=DIGIT_RENDITIONS, augmented_copies=2,
        silence_share=0.0, speech_share=0.0, seed=base.seed, augment=base.augment,
    )  # fmt: skip


def commands_recipe(base: CorpusRecipe) -> CorpusRecipe:
    """A 12-class test set from held-out voices (build only its ``test`` split).

    The ten commands and ten other vocabulary words, many renditions each, plus silence and
    running speech.
    """
    others = [w for w in base.words if w not in COMMAND_WORDS]
    unknown = tuple(others[:: max(1, len(others) // UNKNOWN_TEST_WORDS)][:UNKNOWN_TEST_WORDS])
    renditions = {"train": 1, "validation": 1, "test": COMMAND_TEST_RENDITIONS}
    return CorpusRecipe(
        words=(*COMMAND_WORDS, *unknown), renditions_per_word=renditions,
        seed=base.seed, augment=base.augment,
    )  # fmt: skip


def balanced_accuracy(matrix: np.ndarray) -> float:
    """Mean recall over the classes present in a confusion matrix."""
    totals = matrix.sum(axis=1)
    present = totals > 0
    return float(np.mean(np.diag(matrix)[present] / totals[present]))


DIGIT_HEAD_CONFIG = TrainConfig(epochs=60, batch_size=128, lr=3e-3, warmup_epochs=0, patience=60)


@dataclass(frozen=True)
class Recording:
    """One FSDD file."""

    path: Path
    digit: int
    speaker: str
    take: int


def fsdd_recordings(directory: Path) -> list[Recording]:
    """Every ``{digit}_{speaker}_{take}.wav`` in ``directory``, sorted."""
    found = []
    for path in sorted(directory.glob("*.wav")):
        match = FSDD_NAME.match(path.name)
        if match:
            found.append(Recording(path, int(match["digit"]), match["speaker"], int(match["take"])))
    if not found:
        raise AudioError(f"{directory}: no FSDD recordings ({{digit}}_{{speaker}}_{{take}}.wav)")
    return found


def features_of(recordings: list[Recording]) -> np.ndarray:
    """Log-mel of each recording in a 1 s window [shape=(n, frames, mels)], float32."""
    return np.stack([log_mel(centered_window(load_audio(r.path))) for r in recordings])


def confusion(true: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts [true class, predicted class] [shape=(n_classes, n_classes)]."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return matrix


def commands_accuracy(model: BaseModel, test: Corpus) -> tuple[float, np.ndarray]:
    """Accuracy and confusion of the commands head on a corpus already mapped to 12 classes."""
    head = model.heads[COMMANDS_HEAD]
    logits = head.forward(model.embed(test.features), training=False)
    predicted = np.argmax(logits, axis=1)
    true = test.labels.astype(np.int64)
    return float(np.mean(predicted == true)), confusion(true, predicted, len(test.label_names))


def digit_corpus(model: BaseModel, corpus: Corpus) -> Corpus:
    """The digit words of a word corpus, as embeddings labelled 0-9."""
    index = {name: i for i, name in enumerate(corpus.label_names)}
    digit_of = {index[word]: d for d, word in enumerate(DIGIT_WORDS)}
    keep = np.isin(corpus.labels, list(digit_of))
    labels = np.array([digit_of[int(label)] for label in corpus.labels[keep]], dtype=np.int16)
    return Corpus(model.embed(corpus.features[keep]), labels, tuple(DIGIT_WORDS))


def zero_shot_digits(
    model: BaseModel,
    train: Corpus,
    validation: Corpus,
    real: np.ndarray,
    recordings: list[Recording],
) -> tuple[float, np.ndarray]:
    """Accuracy (and confusion) on real recordings of a digit head trained on synthetic digits."""
    head, _ = train_head(
        digit_corpus(model, train), digit_corpus(model, validation), DIGIT_HEAD_CONFIG
    )
    predicted = np.argmax(head.forward(real, training=False), axis=1)
    true = np.array([r.digit for r in recordings])
    return float(np.mean(predicted == true)), confusion(true, predicted, len(DIGIT_WORDS))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)


def few_shot_digits(
    real: np.ndarray, recordings: list[Recording], shots: int = SHOTS, *, center: bool = True
) -> dict[str, float]:
    """Per-speaker nearest-prototype accuracy; the first ``shots`` takes per digit are support.

    With ``center``, the mean embedding of the speaker's support takes is subtracted from support
    and query alike before cosine matching: it removes what all of one speaker's words share
    (voice, microphone, room), and uses nothing but the support set.
    """
    by_speaker: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(recordings):
        by_speaker[r.speaker].append(i)
    accuracy = {}
    for speaker, rows in sorted(by_speaker.items()):
        support = [i for i in rows if recordings[i].take < shots]
        query = [i for i in rows if recordings[i].take >= shots]
        offset = real[support].mean(axis=0) if center else 0.0
        unit = np.zeros_like(real)
        unit[rows] = _unit(real[rows] - offset)
        digits = sorted({recordings[i].digit for i in support})
        prototypes = np.stack(
            [unit[[i for i in support if recordings[i].digit == d]].mean(axis=0) for d in digits]
        )
        prototypes = _unit(prototypes)
        predicted = np.array(digits)[np.argmax(unit[query] @ prototypes.T, axis=1)]
        accuracy[speaker] = float(
            np.mean(predicted == np.array([recordings[i].digit for i in query]))
        )
    return accuracy


def few_shot_digits_head(
    model: BaseModel,
    recordings: list[Recording],
    shots: int = SHOTS,
    *,
    fine_tune: bool = False,
    seed: int = 0,
) -> dict[str, float]:
    """Per-speaker accuracy of a `TransferRecognizer` trained on ``shots`` takes per digit.

    This is enrollment as users do it: the support takes are augmented and a head (with
    ``fine_tune``, also a copy of the base's last block) is trained on them; the speaker's other
    takes are then classified.
    """
    from models.base.transfer import TransferRecognizer

    by_speaker: dict[str, list[Recording]] = defaultdict(list)
    for r in recordings:
        by_speaker[r.speaker].append(r)
    accuracy = {}
    for speaker, takes in sorted(by_speaker.items()):
        recognizer = TransferRecognizer(model, speaker, background=False)
        for r in takes:
            if r.take < shots:
                recognizer.add_example(str(r.digit), load_audio(r.path))
        recognizer.train(fine_tune_last_block=fine_tune, seed=seed)
        query = [r for r in takes if r.take >= shots]
        probabilities = recognizer.predict_many([load_audio(r.path) for r in query])
        predicted = np.array([int(recognizer.words[i]) for i in probabilities.argmax(axis=1)])
        accuracy[speaker] = float(np.mean(predicted == np.array([r.digit for r in query])))
    return accuracy
