"""Local speech synthesis: render text with every offline synthesizer this machine has.

Three engines from Debian packages are supported: espeak-ng (English accents x voice variants,
with rate and pitch control), flite (its built-in voices) and festival (kal, ked and the HTS slt
voice). Each rendering is a `Rendition` (text, voice, rate, pitch); its audio is cached on disk
under a hash of the rendition, so a data set is synthesized once and re-read in milliseconds.
Synthesis runs in subprocesses, so a thread pool keeps every core busy.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile

from dsp.audio import resample, to_mono
from dsp.constants import SAMPLE_RATE_HZ
from kernels.errors import AudioError
from models.speech.cache import cache_dir

Engine = Literal["espeak-ng", "flite", "festival"]
ENGINES: tuple[Engine, ...] = ("espeak-ng", "flite", "festival")

ESPEAK_ACCENTS = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
)  # fmt: skip
"""espeak-ng's English accents; each combines with any voice variant (``en-us+f3``)."""

FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
"""flite's built-in general voices (``awb_time`` only speaks times and is left out)."""

FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
"""festival voices from festvox-kallpc16k, festvox-kdlpc16k and festvox-us-slt-hts."""

ESPEAK_BASE_WORDS_PER_MIN = 175
"""espeak-ng's default speaking rate; `Rendition.rate` scales it."""

SYNTH_TIMEOUT_S = 60
FESTIVAL_BATCH = 32
"""Renditions one festival process speaks: its start-up (~0.2 s) costs more than an utterance."""
CACHE_FORMAT_VERSION = 1
"""Bump to invalidate cached audio when rendering changes."""

PCM16_FULL_SCALE = 32767


@dataclass(frozen=True, order=True)
class Voice:
    """One synthesizer voice, e.g. ``Voice("espeak-ng", "en-gb-scotland+f2")``."""

    engine: Engine
    name: str

    def __str__(self) -> str:
        return f"{self.engine}:{self.name}"

    @classmethod
    def parse(cls, text: str) -> Voice:
        """Inverse of ``str(voice)``."""
        engine, _, name = text.partition(":")
        if engine not in ENGINES or not name:
            raise ValueError(f"voice {text!r}: expected ENGINE:NAME with ENGINE one of {ENGINES}")
        return cls(engine, name)


@dataclass(frozen=True)
class Rendition:
    """What to synthesize and how.

    Parameters
    ----------
    text : str
        Words to speak.
    voice : Voice
        Which synthesizer voice speaks them.
    rate : float
        Speaking-rate multiplier (1.0 = the voice's default; 0.5-2.0).
    pitch : int
        espeak-ng base pitch, 0-99 (50 = default); other engines ignore it.
    """

    text: str
    voice: Voice
    rate: float = 1.0
    pitch: int = 50

    def key(self) -> str:
        """A stable hash of everything that changes the audio; names the cache file."""
        fields = asdict(self) | {"voice": str(self.voice), "version": CACHE_FORMAT_VERSION}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


@cache
def espeak_variants() -> tuple[str, ...]:
    """Names of espeak-ng's voice variants (``m3``, ``f2``, ``Alex``...), empty if not installed."""
    if shutil.which("espeak-ng") is None:
        return ()
    listing = subprocess.run(
        ["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True
    ).stdout
    files = [line.split()[4] for line in listing.splitlines()[1:] if len(line.split()) >= 5]
    return tuple(sorted(f.removeprefix("!v/") for f in files if f.startswith("!v/")))


def _festival_has(voice: str) -> bool:
    return any(Path("/usr/share/festival/voices").glob(f"*/{voice}"))


def _check_voice(voice: Voice) -> None:
    """Refuse names flite and festival lack (flite falls back to kal, festival to silence)."""
    known = {"flite": FLITE_VOICES, "festival": FESTIVAL_VOICES}.get(voice.engine)
    if known is not None and voice.name not in known:
        raise AudioError(f"{voice}: unknown {voice.engine} voice; known voices are {list(known)}")
    if voice.engine == "festival" and not _festival_has(voice.name):
        raise AudioError(f"{voice}: festival voice is not installed (Debian package festvox-*)")


def available_voices(engines: Sequence[Engine] = ENGINES) -> list[Voice]:
    """Every voice of the requested engines that is installed here, sorted."""
    voices: list[Voice] = []
    if "espeak-ng" in engines and shutil.which("espeak-ng"):
        variants = ("",) + tuple(f"+{v}" for v in espeak_variants())
        voices += [Voice("espeak-ng", a + v) for a in ESPEAK_ACCENTS for v in variants]
    if "flite" in engines and shutil.which("flite"):
        voices += [Voice("flite", name) for name in FLITE_VOICES]
    if "festival" in engines and shutil.which("text2wave"):
        voices += [Voice("festival", name) for name in FESTIVAL_VOICES if _festival_has(name)]
    return sorted(voices)


def _run(command: list[str], rendition: Rendition, stdin: str | None = None) -> bytes:
    try:
        done = subprocess.run(
            command, input=stdin.encode() if stdin else None, capture_output=True,
            timeout=SYNTH_TIMEOUT_S, check=False,
        )  # fmt: skip
    except FileNotFoundError as err:
        raise AudioError(f"{rendition.voice}: synthesizer {command[0]!r} is not installed") from err
    except subprocess.TimeoutExpired as err:
        raise AudioError(f"{rendition.voice}: synthesis of {rendition.text!r} timed out") from err
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").strip()[-300:]
        raise AudioError(f"{rendition.voice}: synthesis of {rendition.text!r} failed: {stderr}")
    return done.stdout


def _espeak(r: Rendition, _: Path) -> bytes:
    words_per_min = round(ESPEAK_BASE_WORDS_PER_MIN * r.rate)
    # A leading space keeps text that starts with '-' from being read as an option.
    command = ["espeak-ng", "-v", r.voice.name, "-s", str(words_per_min), "-p", str(r.pitch)]
    return _run([*command, "--stdout", " " + r.text], r)


def _output(r: Rendition, out: Path) -> bytes:
    if not out.is_file():
        raise AudioError(f"{r.voice}: synthesizer wrote no audio for {r.text!r}")
    return out.read_bytes()


def _flite(r: Rendition, out: Path) -> bytes:
    stretch = f"duration_stretch={1 / r.rate:.4f}"
    _run(["flite", "-voice", r.voice.name, "--setf", stretch, "-t", r.text, "-o", str(out)], r)
    return _output(r, out)


def _festival(r: Rendition, out: Path) -> bytes:
    voice, stretch = (
        f"(voice_{r.voice.name})",
        f"(Parameter.set 'Duration_Stretch {1 / r.rate:.4f})",
    )
    _run(["text2wave", "-eval", voice, "-eval", stretch, "-o", str(out)], r, stdin=r.text)
    return _output(r, out)


_RENDERERS: dict[str, Callable[[Rendition, Path], bytes]] = {
    "espeak-ng": _espeak,
    "flite": _flite,
    "festival": _festival,
}


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _festival_script(renditions: Sequence[Rendition], outputs: Sequence[Path]) -> str:
    lines = []
    for r, out in zip(renditions, outputs, strict=True):
        lines.append(f"(voice_{r.voice.name})")
        lines.append(f"(Parameter.set 'Duration_Stretch {1 / r.rate:.4f})")
        utterance = f"(utt.synth (Utterance Text {_scheme_string(r.text)}))"
        lines.append(f"(utt.save.wave {utterance} {_scheme_string(str(out))} 'riff)")
    return "\n".join(lines) + "\n"


def render_festival_batch(renditions: Sequence[Rendition]) -> list[np.ndarray]:
    """Speak several festival renditions with one festival process (same result as `render`)."""
    for r in renditions:
        if r.voice.engine != "festival" or not r.text.strip():
            raise AudioError(f"{r.voice}: not a festival rendition with text: {r.text!r}")
        _check_voice(r.voice)
    with tempfile.TemporaryDirectory(prefix="earshot-festival-") as tmp:
        outputs = [Path(tmp) / f"{i}.wav" for i in range(len(renditions))]
        script = Path(tmp) / "batch.scm"
        script.write_text(_festival_script(renditions, outputs), encoding="utf-8")
        _run(["festival", "--batch", str(script)], renditions[0])
        return [_decode(_output(r, out), r) for r, out in zip(renditions, outputs, strict=True)]


def _decode(wav: bytes, rendition: Rendition) -> np.ndarray:
    try:
        samples, rate = soundfile.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"{rendition.voice}: synthesizer output is not audio ({err})") from err
    if samples.shape[0] == 0:
        raise AudioError(f"{rendition.voice}: synthesizer produced no audio for {rendition.text!r}")
    return resample(to_mono(samples), orig_sr=rate, target_sr=SAMPLE_RATE_HZ)


def render(rendition: Rendition) -> np.ndarray:
    """Synthesize one rendition (no cache).

    Returns
    -------
    np.ndarray
        Mono float32 at 16 kHz [shape=(n,)].

    Raises
    ------
    AudioError
        The synthesizer is missing, fails, times out, or produces no audio; names the voice.
    """
    if not rendition.text.strip():
        raise AudioError(f"{rendition.voice}: nothing to synthesize (empty text)")
    _check_voice(rendition.voice)
    with tempfile.TemporaryDirectory(prefix="earshot-synth-") as tmp:
        wav = _RENDERERS[rendition.voice.engine](rendition, Path(tmp) / "out.wav")
    return _decode(wav, rendition)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/earshot/speech`` (``~/.cache/earshot/speech``)."""
    return cache_dir("speech")


class SpeechCache:
    """Renditions' audio on disk, as 16-bit ``.npy`` files named by `Rendition.key`.

    Parameters
    ----------
    directory : Path, optional
        Where to keep the audio; `default_cache_dir` by default.
    """

    def __init__(self, directory: Path | None = None):
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    def path(self, rendition: Rendition) -> Path:
        """Where ``rendition``'s audio is (or will be) stored."""
        key = rendition.key()
        return self.directory / key[:2] / f"{key}.npy"

    def load(self, rendition: Rendition) -> np.ndarray | None:
        """The cached audio, or None when absent or left half-written by an interrupted run."""
        try:
            return np.load(self.path(rendition)).astype(np.float32) / PCM16_FULL_SCALE
        except (OSError, ValueError, EOFError):
            return None

    def store(self, rendition: Rendition, samples: np.ndarray) -> np.ndarray:
        """Save audio as 16-bit and return it as the cache will give it back."""
        pcm = np.clip(np.round(samples * PCM16_FULL_SCALE), -PCM16_FULL_SCALE, PCM16_FULL_SCALE)
        path = self.path(rendition)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
        with partial.open("wb") as f:
            np.save(f, pcm.astype(np.int16))
        partial.replace(path)  # atomic: readers never see half a file
        return pcm.astype(np.float32) / PCM16_FULL_SCALE

    def get(self, rendition: Rendition) -> np.ndarray:
        """The rendition's audio (float32, 16 kHz), synthesized and stored on first use."""
        cached = self.load(rendition)
        return cached if cached is not None else self.store(rendition, render(rendition))

    def get_many(
        self,
        renditions: Iterable[Rendition],
        *,
        workers: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[np.ndarray]:
        """Audio for many renditions, in order, synthesizing what is missing on ``workers`` threads.

        Parameters
        ----------
        renditions : iterable of Rendition
            What to fetch.
        workers : int, optional
            Parallel synthesizers; the number of CPU cores by default.
        progress : callable, optional
            Called with 1 after each rendition completes (e.g. a progress bar's ``update``).
        """
        renditions = list(renditions)
        copies = Counter(renditions)  # a rendition asked for twice is synthesized once
        results: dict[Rendition, np.ndarray] = {}
        missing: list[Rendition] = []
        for r in copies:
            cached = self.load(r)
            if cached is None:
                missing.append(r)
            else:
                results[r] = cached
        if progress is not None and results:
            progress(sum(copies[r] for r in results))
        festival = [r for r in missing if r.voice.engine == "festival"]
        jobs = [[r] for r in missing if r.voice.engine != "festival"]
        jobs += [festival[i : i + FESTIVAL_BATCH] for i in range(0, len(festival), FESTIVAL_BATCH)]

        def synthesize(job: list[Rendition]) -> None:
            audio = (
                render_festival_batch(job)
                if job[0].voice.engine == "festival"
                else [render(job[0])]
            )
            for r, samples in zip(job, audio, strict=True):
                results[r] = self.store(r, samples)
            if progress is not None:
                progress(sum(copies[r] for r in job))

        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            list(pool.map(synthesize, jobs))
        return [results[r] for r in renditions]
