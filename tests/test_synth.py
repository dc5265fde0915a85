"""Local speech synthesis with every installed engine, and its on-disk cache."""

import shutil

import numpy as np
import pytest

from kernels.errors import AudioError
from models.speech.synth import (
    ENGINES,
    Rendition,
    SpeechCache,
    Voice,
    available_voices,
    espeak_variants,
    render,
    render_festival_batch,
)
from tests.conftest import require

SR = 16_000
ONE_VOICE_PER_ENGINE = {
    "espeak-ng": Voice("espeak-ng", "en-gb-scotland+f2"),
    "flite": Voice("flite", "slt"),
    "festival": Voice("festival", "kal_diphone"),
}
ENGINE_BINARY = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave"}


def require_engine(engine: str) -> None:
    require(shutil.which(ENGINE_BINARY[engine]) is not None, f"{engine} is not installed")


def fundamental_hz(samples: np.ndarray) -> float:
    """Median pitch of voiced 40 ms frames, by autocorrelation (60-400 Hz)."""
    frame, lo, hi = 640, SR // 400, SR // 60
    pitches = []
    for start in range(0, samples.size - frame, frame):
        x = samples[start : start + frame] - samples[start : start + frame].mean()
        if np.sqrt(np.mean(x**2)) < 0.02:
            continue
        ac = np.correlate(x, x, "full")[frame - 1 :]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.4 * ac[0]:
            pitches.append(SR / lag)
    return float(np.median(pitches))


def test_voice_round_trips_through_text():
    voice = Voice("espeak-ng", "en-us+m3")
    assert Voice.parse(str(voice)) == voice
    with pytest.raises(ValueError, match="ENGINE:NAME"):
        Voice.parse("piper:amy")


def test_every_engine_contributes_voices():
    for engine in ENGINES:
        require_engine(engine)
    voices = available_voices()
    engines = {v.engine for v in voices}
    assert engines == set(ENGINES)
    assert len(espeak_variants()) > 50
    assert len(voices) > 500
    assert voices == sorted(set(voices))


@pytest.mark.parametrize("engine", ENGINES)
def test_each_engine_speaks_and_rate_changes_duration(engine):
    require_engine(engine)
    voice = ONE_VOICE_PER_ENGINE[engine]
    normal = render(Rendition("turn on the kitchen lights", voice))
    fast = render(Rendition("turn on the kitchen lights", voice, rate=1.6))
    assert normal.dtype == np.float32
    assert 0.8 < normal.size / SR < 4.0
    assert np.abs(normal).max() > 0.05
    assert fast.size < 0.85 * normal.size


def test_espeak_pitch_moves_the_fundamental():
    require_engine("espeak-ng")
    voice = Voice("espeak-ng", "en-us")
    low = fundamental_hz(render(Rendition("hello there how are you", voice, pitch=10)))
    high = fundamental_hz(render(Rendition("hello there how are you", voice, pitch=90)))
    assert high > 1.3 * low


@pytest.mark.parametrize(
    ("voice", "message"),
    [
        (Voice("espeak-ng", "xx-no-such-voice"), "does not exist"),
        (Voice("flite", "bogus"), "unknown flite voice"),
        (Voice("festival", "bogus_voice"), "unknown festival voice"),
    ],
)
def test_unknown_voices_raise_audio_error_naming_the_voice(voice, message):
    require_engine(voice.engine)
    with pytest.raises(AudioError, match=message) as info:
        render(Rendition("hello", voice))
    assert str(voice) in str(info.value)


def test_empty_text_is_refused():
    with pytest.raises(AudioError, match="empty text"):
        render(Rendition("  ", Voice("flite", "slt")))


def test_cache_renders_once_then_reads_from_disk(tmp_path, monkeypatch):
    require_engine("espeak-ng")
    cache = SpeechCache(tmp_path)
    renditions = [Rendition(word, Voice("espeak-ng", "en-us+m3")) for word in ("yes", "no", "stop")]
    ticks = []
    first = cache.get_many(renditions, workers=2, progress=ticks.append)
    assert ticks == [1, 1, 1]
    assert all(cache.path(r).is_file() for r in renditions)
    monkeypatch.setenv("PATH", "")  # no synthesizer can run now: everything must come from disk
    again = cache.get_many(renditions)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_cache_key_changes_with_every_parameter():
    base = Rendition("yes", Voice("flite", "slt"))
    variants = [
        Rendition("no", base.voice),
        Rendition("yes", Voice("flite", "awb")),
        Rendition("yes", base.voice, rate=1.1),
        Rendition("yes", base.voice, pitch=60),
    ]
    keys = {base.key(), *(v.key() for v in variants)}
    assert len(keys) == 5
    assert base.key() == Rendition("yes", Voice("flite", "slt")).key()


def test_corrupt_cache_entry_is_rendered_again(tmp_path):
    require_engine("flite")
    cache = SpeechCache(tmp_path)
    rendition = Rendition("hello", Voice("flite", "kal"))
    good = cache.get(rendition)
    cache.path(rendition).write_bytes(b"half a file")
    np.testing.assert_array_equal(cache.get(rendition), good)


def test_festival_batch_speaks_like_single_renditions(tmp_path):
    require_engine("festival")
    voice = Voice("festival", "kal_diphone")
    renditions = [
        Rendition(text, voice, rate=rate) for text, rate in [("yes", 1.0), ("go left", 1.2)]
    ]
    batch = render_festival_batch(renditions)
    for rendition, audio in zip(renditions, batch, strict=True):
        single = render(rendition)
        assert audio.shape == single.shape
        np.testing.assert_allclose(audio, single, atol=1e-6)


def test_festival_text_with_quotes_and_backslashes_is_spoken_verbatim(tmp_path):
    require_engine("festival")
    tricky = Rendition('say "hi" \\ then stop', Voice("festival", "kal_diphone"))
    audio = render_festival_batch([tricky])[0]
    assert audio.size / SR > 0.8


def test_get_many_mixes_engines_and_repeats_in_order(tmp_path):
    for engine in ENGINES:
        require_engine(engine)
    cache = SpeechCache(tmp_path)
    kal = Rendition("no", Voice("festival", "kal_diphone"))
    renditions = [
        Rendition("up", Voice("flite", "awb")),
        kal,
        Rendition("down", Voice("espeak-ng", "en-us+f1")),
        kal,
        Rendition("off", Voice("festival", "cmu_us_slt_arctic_hts")),
    ]
    ticks = []
    audio = cache.get_many(renditions, workers=2, progress=ticks.append)
    assert sum(ticks) == len(renditions)
    np.testing.assert_array_equal(audio[1], audio[3])
    for rendition, clip in zip(renditions, audio, strict=True):
        np.testing.assert_array_equal(clip, cache.get(rendition))
