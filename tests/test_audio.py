"""Loading audio files: formats, channels, rates and sample types; clear errors for bad files."""

import numpy as np
import pytest
import soundfile

from dsp.audio import load_audio, resample, stream_audio
from kernels.errors import AudioError
from tests.conftest import fsdd_files, tone

SR = 16_000


def dominant_frequency_hz(samples: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / sr)[np.argmax(spectrum)])


@pytest.mark.parametrize(
    ("fmt", "subtype"),
    [("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "PCM_32"), ("WAV", "FLOAT"), ("WAV", "PCM_U8"),
     ("FLAC", "PCM_16"), ("OGG", "VORBIS")],
)  # fmt: skip
def test_loads_common_formats_and_sample_types(tmp_path, fmt, subtype):
    signal = tone(440, 0.5, SR)
    path = tmp_path / f"x.{fmt.lower()}"
    soundfile.write(path, signal, SR, format=fmt, subtype=subtype)
    loaded = load_audio(path)
    assert loaded.shape == signal.shape
    assert loaded.dtype == np.float32
    lossy = subtype in ("VORBIS", "PCM_U8")
    np.testing.assert_allclose(loaded, signal, atol=0.05 if lossy else 1e-3)


def test_multichannel_is_averaged_to_mono(tmp_path):
    left, right = tone(300, 0.25, SR), tone(700, 0.25, SR, amplitude=0.25)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), SR, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), (left + right) / 2, atol=1e-6)


def test_sine_at_44k1_stays_at_1khz_after_resampling(tmp_path):
    path = tmp_path / "sine44k.wav"
    soundfile.write(path, tone(1000, 1.0, 44_100), 44_100, subtype="PCM_16")
    loaded = load_audio(path)
    assert loaded.size == SR
    assert dominant_frequency_hz(loaded, SR) == pytest.approx(1000, abs=1.0)
    # A proper band-limited resampler keeps the tone clean: no alias or image carries real energy.
    spectrum = np.abs(np.fft.rfft(loaded[1000:-1000] * np.hanning(SR - 2000))) ** 2
    freqs = np.fft.rfftfreq(SR - 2000, 1 / SR)
    assert spectrum[np.abs(freqs - 1000) > 50].sum() / spectrum.sum() < 1e-4


def test_resample_to_same_rate_is_identity():
    x = tone(500, 0.1, SR)
    np.testing.assert_array_equal(resample(x, orig_sr=SR, target_sr=SR), x)


def test_real_recordings_at_8khz_load_at_16khz():
    path = fsdd_files("0_jackson_0.wav")[0]
    native, native_sr = soundfile.read(path, dtype="float32")
    loaded = load_audio(path)
    assert native_sr == 8000
    assert loaded.size == 2 * native.size
    assert loaded.dtype == np.float32


def _wav_bytes(tmp_path) -> bytes:
    path = tmp_path / "good.wav"
    soundfile.write(path, tone(440, 1.0, SR), SR, subtype="PCM_16")
    return path.read_bytes()


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("empty.wav", lambda good: b"", "empty file"),
        ("text.wav", lambda good: b"this is not audio at all\n" * 20, "not a readable audio file"),
        ("half.wav", lambda good: good[: len(good) // 2], "truncated WAV"),
        ("header_only.wav", lambda good: good[:30], "no data chunk"),
        ("riff_only.wav", lambda good: good[:12], "no data chunk"),
        (
            "random.flac",
            lambda good: np.random.default_rng(0).bytes(5000),
            "not a readable audio file",
        ),
    ],
)
def test_bad_files_raise_audio_error_naming_the_file(tmp_path, name, make, reason):
    path = tmp_path / name
    path.write_bytes(make(_wav_bytes(tmp_path)))
    with pytest.raises(AudioError, match=reason) as info:
        load_audio(path)
    assert str(path) in str(info.value)


def test_truncated_flac_raises_audio_error(tmp_path):
    good = tmp_path / "good.flac"
    soundfile.write(good, np.random.default_rng(1).uniform(-0.5, 0.5, SR).astype(np.float32), SR)
    cut = tmp_path / "cut.flac"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(AudioError, match="cut.flac"):
        load_audio(cut)


def test_missing_directory_zero_frame_and_nan_files(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "absent.wav")
    with pytest.raises(AudioError, match="not a regular file"):
        load_audio(tmp_path)
    zero = tmp_path / "zero.wav"
    soundfile.write(zero, np.zeros(0, np.float32), SR)
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(zero)
    nan = tmp_path / "nan.wav"
    soundfile.write(nan, np.array([0.0, np.nan, 0.1], np.float32), SR, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_audio(nan)


@pytest.mark.parametrize("placeholder", [0x7FFFF000, 0x7FFFFFFF, 0xFFFFFFFF])
def test_streamed_wav_with_placeholder_length_is_read_to_its_end(tmp_path, placeholder):
    good = tmp_path / "good.wav"
    soundfile.write(good, tone(440, 0.5, SR), SR, subtype="PCM_16")
    data = bytearray(good.read_bytes())
    data_at = data.index(b"data")
    data[4:8] = placeholder.to_bytes(4, "little")
    data[data_at + 4 : data_at + 8] = placeholder.to_bytes(4, "little")
    streamed = tmp_path / "streamed.wav"
    streamed.write_bytes(bytes(data))
    np.testing.assert_allclose(load_audio(streamed), tone(440, 0.5, SR), atol=1e-3)


def test_reads_what_espeak_ng_writes_to_a_pipe(tmp_path):
    import shutil
    import subprocess

    from tests.conftest import require

    require(shutil.which("espeak-ng") is not None, "espeak-ng is not installed")
    wav = subprocess.run(["espeak-ng", "--stdout", "hello"], capture_output=True, check=True).stdout
    path = tmp_path / "espeak.wav"
    path.write_bytes(wav)
    samples = load_audio(path)
    assert 0.2 < samples.size / SR < 2.0
    assert np.abs(samples).max() > 0.1


@pytest.mark.parametrize(("rate_hz", "channels"), [(44_100, 2), (8_000, 3), (SR, 1)])
def test_streamed_blocks_equal_the_whole_file_decode(tmp_path, rate_hz, channels):
    frames = rate_hz * 3 + 777  # no block size below divides it
    noise = np.random.default_rng(rate_hz).standard_normal((frames, channels)) * 0.2
    path = tmp_path / "noise.wav"
    soundfile.write(path, noise.astype(np.float32), rate_hz, subtype="FLOAT")
    whole = load_audio(path)
    for block_frames in (1, 1000, 4097, 1 << 16):
        if block_frames == 1 and rate_hz != SR:
            continue  # one frame at a time through soxr is correct but slow
        blocks = list(stream_audio(path, block_frames=block_frames))
        assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
        streamed = np.concatenate(blocks)
        assert streamed.shape == whole.shape
        np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-6)


def test_streaming_checks_the_file_at_once_and_its_samples_while_reading(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        stream_audio(tmp_path / "missing.wav")
    low_rate = tmp_path / "low.wav"
    soundfile.write(low_rate, np.zeros(100, np.float32), 500)
    with pytest.raises(AudioError, match="below 1000 Hz"):
        stream_audio(low_rate)
    audio = tone(440, 2.0, SR)
    audio[-10] = np.inf
    late_inf = tmp_path / "late_inf.wav"
    soundfile.write(late_inf, audio, SR, subtype="FLOAT")
    blocks = stream_audio(late_inf, block_frames=SR)
    assert next(blocks).size == SR  # the first second is fine
    with pytest.raises(AudioError, match="NaN or infinite") as caught:
        next(blocks)
    assert str(late_inf) in str(caught.value)
    empty = tmp_path / "no_frames.wav"
    soundfile.write(empty, np.zeros(0, np.float32), SR)
    with pytest.raises(AudioError, match="contains no audio samples"):
        list(stream_audio(empty))
