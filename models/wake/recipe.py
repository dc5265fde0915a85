"""How a wake word's detector is trained: the amounts of data and training, and their seeds.

`WakeRecipe` is read by every step of training from text (`models.wake.training`): the phrase's
examples (`models.wake.phrase_examples`), the negatives (`models.wake.negatives`) and the head
(`models.wake.head_training`). It is stored in the trained model's manifest.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from typing import Any

from models.speech.augment import AugmentConfig
from models.wake.examples import NOISE_ONLY, VOICE_ONLY
from models.wake.model import WAKE_FORMAT_VERSION


@dataclass(frozen=True)
class WakeRecipe:
    """How a wake word's detector is trained.

    Parameters
    ----------
    phrase_renditions : int
        Synthesized renditions of the phrase (voices, rates, pitches).
    positive_copies : int
        Placed, augmented examples of each rendition.
    confusable_renditions, confusable_copies : int
        The same for each confusable text.
    partial_copies : int
        Partial-phrase negatives per phrase rendition.
    filler_words : int
        Renditions of other words that may precede an example, and make babble.
    hidden : int
        Units of the head's hidden layer.
    train_stream_s, calibration_stream_s : float
        Lengths of the negative streams for training and calibration.
    max_stream_negatives : int
        At most this many training-stream hops are used as negatives.
    word_bank_renditions : int
        Renditions of every vocabulary word in the (cached) word bank of negatives.
    recording_copies : int
        Placed, augmented examples of each of the user's own recordings of the phrase.
    hard_negative_copies, hard_negative_share : int, float
        After a first fit, the highest-scoring share of negatives is repeated this many more
        times and the head is trained again: false alarms come from a few hard cases.
    formant_prob : float
        Share of the phrase's examples whose formants are moved (vocal-tract length,
        `models.speech.augment.shift_formants`), besides speed, pitch, reverberation,
        microphone and band colouring.
    snr_db : tuple of float
        Range of the speech-to-noise ratio (coloured noise or babble) of the phrase's examples.
    epochs : int
        Most epochs of head training.
    seed : int
        Seeds everything.
    """

    phrase_renditions: int = 160
    positive_copies: int = 4
    confusable_renditions: int = 6
    confusable_copies: int = 2
    partial_copies: int = 1
    filler_words: int = 48
    hidden: int = 32
    train_stream_s: float = 3600.0
    calibration_stream_s: float = 3600.0
    max_stream_negatives: int = 36000
    word_bank_renditions: int = 4
    recording_copies: int = 40
    hard_negative_copies: int = 3
    hard_negative_share: float = 0.05
    formant_prob: float = 0.3
    snr_db: tuple[float, float] = (0.0, 30.0)
    epochs: int = 40
    seed: int = 0

    def voice_config(self) -> AugmentConfig:
        """How the phrase's renditions are varied before they are placed."""
        return replace(VOICE_ONLY, formant_prob=self.formant_prob)

    def noise_config(self) -> AugmentConfig:
        """How a placed example's noise and level are drawn."""
        return replace(NOISE_ONLY, snr_range_db=self.snr_db)

    def as_dict(self) -> dict[str, Any]:
        """The recipe and the wake-word format, for the manifest."""
        return {**asdict(self), "wake_format": WAKE_FORMAT_VERSION}


SMALL_RECIPE = WakeRecipe(
    phrase_renditions=32, positive_copies=2, confusable_renditions=2, confusable_copies=1,
    filler_words=16, train_stream_s=60.0, calibration_stream_s=60.0, word_bank_renditions=0,
    max_stream_negatives=2000, epochs=20,
)  # fmt: skip
"""``earshot train --small``: seconds of work instead of a minute, for trials and tests."""


def phrase_seed(phrase: str) -> int:
    """A seed of 32 bits from ``phrase``, so each wake word draws its own random material."""
    return int.from_bytes(hashlib.sha256(phrase.encode()).digest()[:4], "little")
