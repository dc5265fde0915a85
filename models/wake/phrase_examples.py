"""A phrase's own training material: its renditions, confusables and partial renditions.

`phrase_examples` renders the phrase with every local synthesizer (`models.speech.synth`), and
its confusables (`models.speech.phonetics.confusable_texts`: its parts, repetitions and
phonetically close words and phrases), then places and embeds them (`models.wake.examples`):
the phrase ending near the newest window (positives), confusables and partial phrases
(negatives), each varied, mixed with preceding speech (other words, the fillers), noise and
gain. The result depends on the phrase, the base model, the recipe and the voices, not on the
user, and is cached.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.base.geometry import Embedder
from models.nn.checkpoint import split_rows
from models.speech.dataset import load_vocabulary, sample_renditions, trim_silence
from models.speech.phonetics import confusable_texts, phrase_words
from models.speech.synth import SpeechCache, Voice
from models.wake.examples import ExampleSpec, Progress, context_examples, synthesize
from models.wake.recipe import WakeRecipe, phrase_seed
from models.wake.streams import default_stream_dir

PARTIAL_SHARE = (0.3, 0.7)
"""A partial phrase keeps this share of it: from its start (mostly) or from its end."""
POSITIVE_SPEC = ExampleSpec(end_margin_s=(0.0, 0.35))
CONFUSABLE_SPEC = ExampleSpec(end_margin_s=(0.0, 0.6))
PARTIAL_SPEC = ExampleSpec(end_margin_s=(0.0, 0.3))


def _partial(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    speech = trim_silence(clip)
    keep = max(1, int(speech.size * rng.uniform(*PARTIAL_SHARE)))
    return speech[:keep] if rng.random() < 0.7 else speech[-keep:]


@dataclass
class PhraseExamples:
    """A phrase's own training material: what depends on the phrase, not on the user.

    Attributes
    ----------
    positives : np.ndarray
        Head inputs of placed, augmented renditions of the phrase [n, inputs].
    negatives : np.ndarray
        Head inputs of its confusables and partial renditions.
    durations : np.ndarray
        Seconds of speech in each positive.
    fillers : list of np.ndarray
        Other words' audio, to put before examples and to make babble from.
    confusable_texts : list of str
        What the confusables say.
    """

    positives: np.ndarray
    negatives: np.ndarray
    durations: np.ndarray
    fillers: list[np.ndarray]
    confusable_texts: list[str]

    def save(self, path: Path) -> None:
        """Write to ``path`` (.npz) atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with partial.open("wb") as f:
            np.savez(
                f,
                positives=self.positives.astype(np.float16),
                negatives=self.negatives.astype(np.float16),
                durations=self.durations,
                fillers=np.concatenate(self.fillers),
                filler_lengths=np.array([x.size for x in self.fillers]),
                confusable_texts=np.array(self.confusable_texts),
            )
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> PhraseExamples:
        """Read what `save` wrote."""
        with np.load(path) as data:
            fillers = split_rows(data["fillers"], data["filler_lengths"])
            return cls(
                data["positives"].astype(np.float32), data["negatives"].astype(np.float32),
                data["durations"], fillers, [str(t) for t in data["confusable_texts"]],
            )  # fmt: skip


def _synthesize(
    phrase: str,
    recipe: WakeRecipe,
    voices: Sequence[Voice],
    cache: SpeechCache,
    rng: np.random.Generator,
    progress: Progress | None,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[str]]:
    """Audio of the phrase's renditions, of its confusables and of filler words; their texts."""
    vocabulary = load_vocabulary()
    confusables = confusable_texts(phrase, vocabulary)
    own = set(phrase_words(phrase))
    others = [w for w in vocabulary if w not in own]
    fillers = [str(w) for w in rng.choice(others, size=recipe.filler_words, replace=False)]
    renditions = [
        *sample_renditions([phrase], voices, per_word=recipe.phrase_renditions, rng=rng),
        *sample_renditions(confusables, voices, per_word=recipe.confusable_renditions, rng=rng),
        *sample_renditions(fillers, voices, per_word=1, rng=rng),
    ]
    audio = synthesize(renditions, cache, progress)
    n_phrase = recipe.phrase_renditions
    n_confusable = len(confusables) * recipe.confusable_renditions
    return (
        audio[:n_phrase],
        audio[n_phrase : n_phrase + n_confusable],
        audio[n_phrase + n_confusable :],
        confusables,
    )


def _build_phrase_examples(
    phrase: str,
    base: Embedder,
    recipe: WakeRecipe,
    voices: Sequence[Voice],
    cache: SpeechCache,
    progress: Progress | None,
) -> PhraseExamples:
    rng = np.random.default_rng([recipe.seed, phrase_seed(phrase)])
    said, confusables, fillers, texts = _synthesize(phrase, recipe, voices, cache, rng, progress)
    jobs = [
        ("positives", said, recipe.positive_copies, POSITIVE_SPEC, None),
        ("confusables", confusables, recipe.confusable_copies, CONFUSABLE_SPEC, None),
        ("partials", said, recipe.partial_copies, PARTIAL_SPEC, _partial),
    ]
    made: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    total = sum(len(clips) * copies for _, clips, copies, _, _ in jobs)
    done = 0
    for name, clips, copies, spec, transform in jobs:
        made[name] = context_examples(
            base, clips, copies=copies, spec=spec, fillers=fillers, rng=rng, transform=transform,
            voice_config=recipe.voice_config(), noise_config=recipe.noise_config(),
        )  # fmt: skip
        done += len(clips) * copies
        if progress is not None:
            progress("examples", done, total)
    negatives = np.concatenate([made[k][0] for k in ("confusables", "partials") if made[k][0].size])
    positives, durations = made["positives"]
    return PhraseExamples(positives, negatives, durations, fillers, texts)


def phrase_examples(
    phrase: str,
    base: Embedder,
    recipe: WakeRecipe,
    *,
    voices: Sequence[Voice],
    speech_cache: SpeechCache | None = None,
    directory: Path | None = None,
    progress: Progress | None = None,
) -> PhraseExamples:
    """The phrase's examples from the cache (``$XDG_CACHE_HOME/earshot/wake``), made if needed.

    Keyed by the phrase, the base model, the recipe and the voices: enrollment, which fine-tunes
    a trained wake word, finds the very examples its training used.
    """
    sha = base.sha256
    key_text = json.dumps(
        [phrase, sha, recipe.as_dict(), sorted(str(v) for v in voices)], sort_keys=True
    )
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    path = (directory or default_stream_dir()) / f"examples-{key}.npz"
    if path.is_file():
        try:
            return PhraseExamples.load(path)
        except (OSError, ValueError, KeyError, EOFError):
            pass  # half-written or from an older layout: make it again
    examples = _build_phrase_examples(
        phrase, base, recipe, voices, speech_cache or SpeechCache(), progress
    )
    examples.save(path)
    return examples
