"""Phonetic similarity: which texts a wake-word model could mistake for its phrase.

A wake word trained only on its own phrase and unrelated speech fires on anything that sounds
close. `confusable_texts` lists the hard negatives for a typed phrase: its parts alone, its ends
repeated, and the vocabulary words and phrases nearest in sound. Sound is compared on phoneme
sequences from espeak-ng (`phonemes`) with a Levenshtein distance that charges less for
swapping a vowel for a vowel or a consonant for a consonant (`phoneme_distance`).

Phonemes are espeak-ng's ASCII mnemonics (``h eI s m A@ t m I r 3`` for "hey smart mirror"),
split by its own phoneme separator (``--sep=_``), so multi-letter names (``eI``, ``A@``,
``tS``, ``@L``) stay whole. Stress marks, pauses and word boundaries are dropped.
"""

from __future__ import annotations

import string
import subprocess
import threading
from collections.abc import Sequence

from kernels.errors import ConfigError, ModelError

ESPEAK_VOICE = "en-us"
"""espeak-ng voice whose pronunciation rules give the phonemes."""
ESPEAK_COMMAND = ("espeak-ng", "-v", ESPEAK_VOICE, "-q", "-x", "--sep=_", "-b", "1")
"""Quiet (no audio), phoneme mnemonics on stdout, phonemes joined by ``_``, UTF-8 input."""
ESPEAK_TIMEOUT_S = 60

SEPARATOR_TEXT = "#"
"""A line fed between texts; its output line marks where one text's phonemes end.

espeak-ng starts a new output line at every clause break (a comma, a full stop, a very long
clause), so one text may give several lines; the marker lines keep texts apart regardless.
"""

STRESS_MARKS = "',%="
"""espeak-ng's stress marks, which prefix a vowel's mnemonic."""
VOWEL_INITIALS = frozenset("aeiouyAEIOUVY03@")
"""First characters of espeak-ng's vowel mnemonics (``3`` is the vowel of "bird", ``0`` of
"lot", ``@`` the schwa, ``V`` of "strut"); every other phoneme is a consonant."""

SAME_CLASS_SUBSTITUTION_COST = 0.5
"""Cost of swapping a vowel for a vowel, or a consonant for a consonant (other edits cost 1)."""

_CACHE_LIMIT = 65_536
_cache: dict[str, tuple[str, ...]] = {}
_cache_lock = threading.Lock()

Phonemes = tuple[str, ...]


def phonemes(texts: Sequence[str]) -> list[Phonemes]:
    """Phoneme sequences of many texts, with one espeak-ng process for all that are not cached.

    Results are kept in-process per text, so asking again for the same words (a vocabulary,
    say) costs a dictionary look-up.

    Parameters
    ----------
    texts : sequence of str
        Words or phrases; punctuation and line breaks inside a text are allowed.

    Returns
    -------
    list of tuple of str
        One sequence per text, in order: espeak-ng mnemonics without stress marks, pauses or
        word boundaries. A text with nothing to pronounce gives an empty sequence.

    Raises
    ------
    ModelError
        espeak-ng is not installed, fails, or times out; the message names the command.
    """
    cleaned = [" ".join(text.split()) for text in texts]
    with _cache_lock:
        known = {t: _cache[t] for t in cleaned if t in _cache}
    missing = [t for t in dict.fromkeys(cleaned) if t and t not in known]
    if missing:
        found = dict(zip(missing, _espeak_phonemes(missing), strict=True))
        known |= found
        with _cache_lock:
            if len(_cache) + len(found) > _CACHE_LIMIT:
                _cache.clear()
            _cache.update(found)
    return [known[t] if t else () for t in cleaned]


def _espeak_phonemes(texts: list[str]) -> list[Phonemes]:
    """Phonemes of non-empty one-line texts: one espeak-ng run, or one per text as a fallback."""
    lines = _run_espeak([SEPARATOR_TEXT, *(line for t in texts for line in (t, SEPARATOR_TEXT))])
    if lines and lines[0].strip():
        marker = lines[0]
        groups: list[list[str]] = []
        current: list[str] = []
        for line in lines[1:]:
            if line == marker:
                groups.append(current)
                current = []
            else:
                current.append(line)
        if len(groups) == len(texts) and not any(current):
            return [_parse(" ".join(group)) for group in groups]
    # Some text spoke a clause that sounds like the marker: alone, each text is unambiguous.
    return [_parse(" ".join(_run_espeak([text]))) for text in texts]


def _run_espeak(lines: list[str]) -> list[str]:
    command = " ".join(ESPEAK_COMMAND)
    try:
        done = subprocess.run(
            ESPEAK_COMMAND, input="\n".join(lines) + "\n", capture_output=True, text=True,
            encoding="utf-8", errors="replace", timeout=ESPEAK_TIMEOUT_S, check=False,
        )  # fmt: skip
    except FileNotFoundError as err:
        raise ModelError(f"phonemes: {command!r} failed: espeak-ng is not installed") from err
    except subprocess.TimeoutExpired as err:
        raise ModelError(
            f"phonemes: {command!r} timed out after {ESPEAK_TIMEOUT_S} s on {len(lines)} lines"
        ) from err
    if done.returncode != 0:
        stderr = done.stderr.strip()[-300:]
        raise ModelError(f"phonemes: {command!r} exited with {done.returncode}: {stderr}")
    return done.stdout.splitlines()


def _parse(mnemonics: str) -> Phonemes:
    """``h_'eI s_m_'A@_t`` -> ``("h", "eI", "s", "m", "A@", "t")``."""
    names = (token.strip(STRESS_MARKS) for word in mnemonics.split() for token in word.split("_"))
    # Pauses (``_:``, ``_!``) and modifiers (``;``) leave tokens with no letter, digit or schwa.
    return tuple(n for n in names if any(c.isalnum() or c == "@" for c in n))


def is_vowel(phoneme: str) -> bool:
    """Whether an espeak-ng mnemonic names a vowel or diphthong (``eI``, ``3:``, ``@L``)."""
    return bool(phoneme) and phoneme[0] in VOWEL_INITIALS


def phoneme_distance(a: Sequence[str], b: Sequence[str]) -> float:
    """Levenshtein distance between phoneme sequences, divided by the longer length.

    Inserting or deleting a phoneme costs 1; substituting costs 0 for the same phoneme,
    `SAME_CLASS_SUBSTITUTION_COST` (0.5) for a vowel for a vowel or a consonant for a consonant,
    and 1 across classes. The distance is symmetric and lies in [0, 1]: 0 for equal sequences
    (and for two empty ones), 1 when nothing lines up.

    Parameters
    ----------
    a, b : sequence of str
        Phoneme sequences, as from `phonemes`.
    """
    longer = max(len(a), len(b))
    if longer == 0:
        return 0.0
    previous = [float(j) for j in range(len(b) + 1)]
    for i, pa in enumerate(a, start=1):
        current = [float(i)]
        for j, pb in enumerate(b, start=1):
            if pa == pb:
                swap = 0.0
            elif is_vowel(pa) == is_vowel(pb):
                swap = SAME_CLASS_SUBSTITUTION_COST
            else:
                swap = 1.0
            current.append(min(previous[j] + 1.0, current[j - 1] + 1.0, previous[j - 1] + swap))
        previous = current
    return previous[-1] / longer


def phrase_words(phrase: str) -> list[str]:
    """Lower-case words of a typed phrase, without surrounding punctuation (``"Hey, Mirror!"``)."""
    words = (word.strip(string.punctuation) for word in phrase.lower().split())
    return [word for word in words if word]


def nearest_words(word: str, vocabulary: Sequence[str], count: int) -> list[str]:
    """The ``count`` vocabulary words that sound nearest to ``word``, nearest first.

    The word itself and its homophones (distance 0) are left out; ties go alphabetically.
    """
    target = word.strip().lower()
    candidates = [w for w in dict.fromkeys(v.strip().lower() for v in vocabulary) if w]
    candidates = [w for w in candidates if w != target]
    target_phonemes, *candidate_phonemes = phonemes([target, *candidates])
    scored = [
        (phoneme_distance(target_phonemes, p), w)
        for w, p in zip(candidates, candidate_phonemes, strict=True)
    ]
    return [w for d, w in sorted(d_w for d_w in scored if d_w[0] > 0)[:count]]


def confusable_texts(phrase: str, vocabulary: Sequence[str], *, close_words: int = 6) -> list[str]:
    """Negative texts that a model for ``phrase`` could mistake for it.

    In order, deduplicated:

    - parts (multi-word phrases): every proper run of consecutive words, shortest first
      ("hey", "smart", "mirror", "hey smart", "smart mirror");
    - repetitions (multi-word phrases): the first word twice and the last word twice
      ("hey hey", "mirror mirror"); a one-word phrase has none, as its word twice contains it;
    - close words: for each word of the phrase, the ``close_words`` vocabulary words nearest in
      sound (`phoneme_distance`), leaving out the word itself and its homophones;
    - close phrases (multi-word phrases): the phrase with one word replaced by one of its close
      words.

    Neither the phrase itself nor any text pronounced exactly like it is returned.

    Parameters
    ----------
    phrase : str
        The wake phrase as typed; case and surrounding punctuation of its words are ignored.
    vocabulary : sequence of str
        Words to draw close words from, e.g. `models.speech.dataset.load_vocabulary`.
    close_words : int
        Close words per word of the phrase.

    Returns
    -------
    list of str
        Lower-case texts, in the same order for the same arguments.

    Raises
    ------
    ConfigError
        The phrase has no words.
    ModelError
        espeak-ng is missing or fails.
    """
    words = phrase_words(phrase)
    if not words:
        raise ConfigError(f"wake phrase {phrase!r}: no words to find confusable texts for")
    if close_words < 0:
        raise ConfigError(f"close_words: {close_words}, expected 0 or more")
    n = len(words)
    texts: list[str] = []
    if n > 1:
        texts += [" ".join(words[i : i + k]) for k in range(1, n) for i in range(n - k + 1)]
        texts += [f"{words[0]} {words[0]}", f"{words[-1]} {words[-1]}"]
    near = {w: nearest_words(w, vocabulary, close_words) for w in dict.fromkeys(words)}
    texts += [c for w in dict.fromkeys(words) for c in near[w]]
    if n > 1:
        texts += [
            " ".join([*words[:i], c, *words[i + 1 :]]) for i, w in enumerate(words) for c in near[w]
        ]
    own = " ".join(words)
    candidates = [t for t in dict.fromkeys(texts) if t != own]
    own_phonemes, *candidate_phonemes = phonemes([own, *candidates])
    return [t for t, p in zip(candidates, candidate_phonemes, strict=True) if p != own_phonemes]
