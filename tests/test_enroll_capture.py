"""Enrollment capture: the real microphone path through PulseAudio, files, and give-up rules.

The microphone tests play a WAV (the quiet room, then takes of the phrase with pauses, one of
them clipped) into a null sink while `record_enrollment` captures the sink's monitor. Under
CI=true they must run (see conftest.require).
"""

import io
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile

from agent.capture.sources import FileSource
from agent.enroll.capture import EnrollmentAudio, enrollment_from_files, record_enrollment
from dsp.constants import SAMPLE_RATE_HZ
from kernels.errors import AudioError, ConfigError
from models.base.model import BaseModel
from models.enroll.takes import TakeChecker
from models.speech.augment import apply_gain
from models.speech.dataset import trim_silence
from models.speech.synth import Rendition, SpeechCache, Voice

SR = SAMPLE_RATE_HZ
PHRASE = "hey computer"
ROOM_DBFS = -60.0
TAKE_DBFS = -20.0
GAP_S = 1.5
MIN_CORRELATION = 0.9


@pytest.fixture(scope="module")
def phrase_takes(tmp_path_factory) -> list[np.ndarray]:
    """Four renditions of the phrase, trimmed, at `TAKE_DBFS`."""
    cache = SpeechCache(tmp_path_factory.mktemp("speech"))
    voice = Voice("espeak-ng", "en-us")
    renditions = [
        Rendition(PHRASE, voice, rate=r, pitch=p)
        for r, p in [(0.9, 45), (1.0, 50), (1.1, 55), (0.95, 60)]
    ]
    out = []
    for clip in cache.get_many(renditions):
        clip = trim_silence(clip)
        out.append(apply_gain(clip, TAKE_DBFS - 10 * np.log10(np.mean(np.square(clip)))))
    return out


@pytest.fixture(scope="module")
def checker(phrase_takes) -> TakeChecker:
    duration = float(np.median([t.size / SR for t in phrase_takes]))
    return TakeChecker(BaseModel.load(Path("models/data/base.npz")), duration)


def session_audio(takes: list[np.ndarray], *, room_s: float = 2.5, seed: int = 0) -> np.ndarray:
    """Room noise, then each take after `GAP_S` of it, then 3 s more; noise throughout."""
    pieces = [np.zeros(int(room_s * SR), np.float32)]
    for take in takes:
        pieces += [np.zeros(int(GAP_S * SR), np.float32), take]
    pieces.append(np.zeros(3 * SR, np.float32))
    audio = np.concatenate(pieces)
    rng = np.random.default_rng(seed)
    return np.clip(
        audio + apply_gain(rng.standard_normal(audio.size).astype(np.float32), ROOM_DBFS), -1, 1
    )


def clipped(take: np.ndarray) -> np.ndarray:
    return np.clip(take * 10, -1, 1)


def best_correlation(recorded: np.ndarray, reference: np.ndarray) -> float:
    """Peak normalized cross-correlation of a reference inside a (longer) recording."""
    n = recorded.size + reference.size
    xcorr = np.fft.irfft(np.fft.rfft(recorded, n) * np.conj(np.fft.rfft(reference, n)), n)
    lag = int(np.argmax(xcorr))
    if lag >= recorded.size or lag + reference.size > recorded.size:
        return 0.0
    window = recorded[lag : lag + reference.size].astype(np.float64)
    return float(xcorr[lag] / (np.linalg.norm(window) * np.linalg.norm(reference) + 1e-12))


def write_wav(path: Path, audio: np.ndarray) -> Path:
    soundfile.write(path, audio, SR, subtype="PCM_16")
    return path


class PromptWatch(io.StringIO):
    """A non-terminal ``out`` that signals when the room prompt has been printed."""

    def __init__(self) -> None:
        super().__init__()
        self.room_prompt = threading.Event()

    def write(self, text: str) -> int:
        if "stay quiet" in text:
            self.room_prompt.set()
        return super().write(text)


def assert_takes_match(result: EnrollmentAudio, played: list[np.ndarray]) -> None:
    assert len(result.takes) == len(played)
    for take, reference in zip(result.takes, played, strict=True):
        assert take.dtype == np.float32
        assert take.size / SR == pytest.approx(reference.size / SR + 0.2, abs=0.15)
        correlation = best_correlation(take, reference)
        assert correlation > MIN_CORRELATION, f"normalized cross-correlation {correlation:.3f}"


def test_microphone_enrollment_accepts_good_takes_and_refuses_a_clipped_one(
    pulse_env, phrase_takes, checker, tmp_path
):
    good = [phrase_takes[0], phrase_takes[1], phrase_takes[2]]
    wav = write_wav(
        tmp_path / "session.wav",
        session_audio([good[0], clipped(phrase_takes[3]), good[1], good[2]]),
    )
    out = PromptWatch()

    def play_after_prompt() -> None:
        if out.room_prompt.wait(timeout=30):
            pulse_env.play(wav)

    player = threading.Thread(target=play_after_prompt)
    player.start()
    try:
        result = record_enrollment(
            PHRASE, checker, samples=3, device="pulse", room_seconds=1.5, countdown_s=0,
            take_timeout_s=4.0, out=out,
        )  # fmt: skip
    finally:
        out.room_prompt.set()
        player.join()
    transcript = out.getvalue()
    assert len(result.rejected) == 1, transcript
    assert result.rejected[0].startswith("clipped: "), transcript
    assert_takes_match(result, good)
    assert result.room.size == int(1.5 * SR)
    assert 10 * np.log10(np.mean(np.square(result.room))) == pytest.approx(ROOM_DBFS, abs=3)
    assert 'Take 1 of 3: say "hey computer"' in transcript
    assert transcript.count("  ok (") == 3
    assert "|" not in transcript  # no meter when ``out`` is not a terminal


def test_any_source_works_and_no_audio_is_lost_between_steps(phrase_takes, checker, tmp_path):
    """Takes only GAP_S apart, read as fast as the file allows: nothing falls between steps."""
    good = phrase_takes[:3]
    wav = write_wav(tmp_path / "session.wav", session_audio(good, room_s=1.0))
    with FileSource(wav) as source:
        result = record_enrollment(
            PHRASE, checker, samples=3, room_seconds=1.0, countdown_s=0, out=io.StringIO(),
            source=source,
        )  # fmt: skip
    assert result.rejected == []
    assert_takes_match(result, good)


def test_gives_up_with_the_most_common_problem(phrase_takes, checker, tmp_path):
    bad = [
        clipped(phrase_takes[0]),
        clipped(phrase_takes[1]),
        phrase_takes[2] * 10 ** (-33 / 20),
    ]  # -53 dBFS
    wav = write_wav(tmp_path / "bad.wav", session_audio(bad, room_s=1.0))
    out = io.StringIO()
    with FileSource(wav) as source, pytest.raises(AudioError) as caught:
        record_enrollment(
            PHRASE, checker, samples=3, room_seconds=1.0, countdown_s=0, max_attempts=3,
            out=out, source=source,
        )  # fmt: skip
    message = str(caught.value)
    assert message.startswith("enrollment: gave up after 3 attempts with 0 of 3 takes accepted")
    assert "most often the take was clipped (2 times)" in message
    assert "last: too quiet" in message
    assert out.getvalue().count("refused: ") == 3


def test_silence_times_out_and_a_source_that_ends_is_an_error(checker, tmp_path):
    """In real time, as a microphone: the countdown drops what came before it."""
    room = apply_gain(
        np.random.default_rng(1).standard_normal(12 * SR).astype(np.float32), ROOM_DBFS
    )
    with (
        FileSource(write_wav(tmp_path / "room.wav", room), realtime=True) as source,
        pytest.raises(AudioError) as caught,
    ):
        record_enrollment(
            PHRASE, checker, samples=3, room_seconds=1.0, countdown_s=0.5, take_timeout_s=1.5,
            max_attempts=2, out=io.StringIO(), source=source,
        )  # fmt: skip
    assert "most often the take was no speech heard in 1.5 s (2 times)" in str(caught.value)
    short = write_wav(tmp_path / "short.wav", room[: 2 * SR])
    with FileSource(short) as source, pytest.raises(AudioError, match="input ended"):
        record_enrollment(PHRASE, checker, room_seconds=1.0, out=io.StringIO(), source=source)


def test_fewer_than_three_samples_is_a_config_error(checker):
    with pytest.raises(ConfigError, match="samples: got 2, expected at least 3"):
        record_enrollment(PHRASE, checker, samples=2, out=io.StringIO())


def test_enrollment_from_files(phrase_takes, checker, tmp_path):
    pad = np.zeros(SR // 2, np.float32)
    files = []
    for i, take in enumerate([*phrase_takes[:3], clipped(phrase_takes[3])]):
        files.append(write_wav(tmp_path / f"take{i}.wav", np.concatenate((pad, take, pad))))
    result = enrollment_from_files(files, checker)
    assert result.room.size == 0
    assert result.rejected == [f"{files[3]}: " + result.rejected[0].split(": ", 1)[1]]
    assert result.rejected[0].startswith(f"{files[3]}: clipped: ")
    assert_takes_match(result, phrase_takes[:3])
    with pytest.raises(AudioError) as caught:
        enrollment_from_files([files[0], files[3]], checker)
    assert str(caught.value).startswith("enrollment: 1 of 2 recordings are usable, need at least 3")
    assert f"{files[3]}: clipped" in str(caught.value)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_live_level_meter(phrase_takes, checker, tmp_path):
    wav = write_wav(tmp_path / "session.wav", session_audio(phrase_takes[:3], room_s=1.0))
    out = Terminal()
    with FileSource(wav) as source:
        record_enrollment(
            PHRASE, checker, samples=3, room_seconds=1.0, countdown_s=0, out=out, source=source
        )
    text = out.getvalue()
    assert text.count("\r  |") > 50  # one update per chunk, on one line
    assert "dBFS" in text
    assert text.count("\r" + " " * 60 + "\r  ok (") == 3  # the meter is cleared before a line
