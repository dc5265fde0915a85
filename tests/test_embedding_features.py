"""The speech_embedding front end: parity with openWakeWord's melspectrogram.onnx, streaming ==
whole signal for any chunking, the filterbank and window read back from the graph, input checks.

The reference runs on int16 sample values as float32 (as openWakeWord feeds it), earshot's code on
the same values divided by 32768, so both see identical audio.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.paths import DEMO_AUDIO
from dsp.audio import load_audio
from dsp.embedding_features import (
    EMBEDDING_HOP_SAMPLES,
    EMBEDDING_N_FFT,
    EMBEDDING_N_FREQ_BINS,
    EMBEDDING_N_MELS,
    EMBEDDING_OUTPUT_FLOOR,
    EMBEDDING_POWER_FLOOR,
    EMBEDDING_TOP_DB,
    PCM16_FULL_SCALE,
    EmbeddingMelStream,
    embedding_frame_count,
    embedding_log_mel,
    embedding_mel_filterbank,
    embedding_window,
)
from tests.conftest import require

PARITY_REL = 1e-4
"""Allowed max |ours - graph|, relative to the reference's scale (its max abs value); rtol = 0."""
STREAM_ATOL = 1e-5
CHUNK_SIZES = [1, 7, 160, 1280, 4000]
SR = 16_000


# --- the reference graph ----------------------------------------------------------------------


def _graph_path() -> Path:
    spec = importlib.util.find_spec("openwakeword")
    require(spec is not None and spec.origin is not None, "openwakeword is not installed")
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "resources" / "models" / "melspectrogram.onnx"
    require(path.is_file(), f"{path} is missing")
    return path


@pytest.fixture(scope="module")
def graph():
    """The ONNX graph, loaded with the `onnx` package."""
    require(importlib.util.find_spec("onnx") is not None, "onnx is not installed")
    import onnx

    return onnx.load(str(_graph_path()))


@pytest.fixture(scope="module")
def run_graph():
    """``int16 audio -> graph output / 10 + 2``, as openWakeWord's ``_get_melspectrogram``."""
    require(importlib.util.find_spec("onnxruntime") is not None, "onnxruntime is not installed")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(_graph_path()), options, providers=["CPUExecutionProvider"])

    def run(pcm: np.ndarray) -> np.ndarray:
        out = session.run(None, {"input": pcm.astype(np.float32)[None, :]})[0]
        return np.squeeze(out, axis=(0, 1)) / 10 + 2

    return run


def _initializers(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in graph.graph.initializer}


def _constants(graph, op_type: str) -> list[np.ndarray]:
    """Values of the graph's scalar inputs (Constant nodes or initializers) feeding ``op_type``."""
    from onnx import numpy_helper

    values = {
        node.output[0]: numpy_helper.to_array(node.attribute[0].t)
        for node in graph.graph.node
        if node.op_type == "Constant"
    }
    values.update(_initializers(graph))
    return [
        values[name]
        for node in graph.graph.node
        if node.op_type == op_type
        for name in node.input
        if name in values and values[name].size == 1
    ]


# --- signals ----------------------------------------------------------------------------------


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(audio * PCM16_FULL_SCALE), -32768, 32767).astype(np.int16)


def from_pcm16(pcm: np.ndarray) -> np.ndarray:
    return (pcm.astype(np.float32) / np.float32(PCM16_FULL_SCALE)).astype(np.float32)


def demo_pcm() -> np.ndarray:
    pcm, sr = soundfile.read(DEMO_AUDIO, dtype="int16")
    assert sr == SR and pcm.ndim == 1
    return pcm


def espeak_pcm(tmp_path: Path) -> np.ndarray:
    require(shutil.which("espeak-ng") is not None, "espeak-ng is not installed")
    text = "Hey computer, turn on the kitchen lights and set a timer for five minutes."
    wav = subprocess.run(["espeak-ng", "--stdout", text], capture_output=True, check=True).stdout
    path = tmp_path / "espeak.wav"
    path.write_bytes(wav)
    return to_pcm16(load_audio(path))


def noise_pcm(level: float, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return to_pcm16(level * rng.standard_normal(int(seconds * SR)))


def speech_excerpt(seconds: float = 0.6) -> np.ndarray:
    """Float32 speech with some of the demo's loudest passages; used by the streaming tests."""
    pcm = demo_pcm()
    start = int(np.argmax(np.abs(pcm))) - int(seconds * SR) // 2
    start = min(max(start, 0), pcm.size - int(seconds * SR))
    return from_pcm16(pcm[start : start + int(seconds * SR)])


# --- constants and filters read back from the graph -------------------------------------------


def test_graph_framing_is_a_stride_160_convolution_without_padding(graph):
    convs = [node for node in graph.graph.node if node.op_type == "Conv"]
    assert len(convs) == 2
    for conv in convs:
        attrs = {a.name: list(a.ints) for a in conv.attribute if a.ints}
        assert attrs["kernel_shape"] == [EMBEDDING_N_FFT]
        assert attrs["strides"] == [EMBEDDING_HOP_SAMPLES]
        assert attrs["pads"] == [0, 0]
    assert not [node for node in graph.graph.node if node.op_type == "Pad"]


def test_graph_log_scaling_and_clips(graph):
    clip_mins = [float(v) for v in _constants(graph, "Clip") if np.isfinite(v)]
    assert clip_mins == [pytest.approx(EMBEDDING_POWER_FLOOR, rel=1e-6)]
    assert [float(v) for v in _constants(graph, "Mul")] == [10.0]
    assert [float(v) for v in _constants(graph, "Div")] == [pytest.approx(np.log(10), rel=1e-7)]
    assert EMBEDDING_TOP_DB in [float(v) for v in _constants(graph, "Sub")]
    (reduce_max,) = [node for node in graph.graph.node if node.op_type == "ReduceMax"]
    assert {a.name: a.i for a in reduce_max.attribute} == {"keepdims": 0}  # over everything


def test_window_times_dft_equals_graph_conv_weights(graph):
    weights = _initializers(graph)
    real = weights["0.stft.conv_real.weight"][:, 0, :].astype(np.float64)
    imag = weights["0.stft.conv_imag.weight"][:, 0, :].astype(np.float64)
    assert real.shape == imag.shape == (EMBEDDING_N_FREQ_BINS, EMBEDDING_N_FFT)
    window = embedding_window() / PCM16_FULL_SCALE
    phase = 2 * np.pi * np.outer(np.arange(EMBEDDING_N_FREQ_BINS), np.arange(EMBEDDING_N_FFT))
    phase /= EMBEDDING_N_FFT
    np.testing.assert_allclose(real, window * np.cos(phase), atol=1e-7, rtol=0)
    np.testing.assert_allclose(imag, -window * np.sin(phase), atol=1e-7, rtol=0)


def test_filterbank_equals_graph_matrix(graph):
    graph_filters = _initializers(graph)["1.melW"]
    ours = embedding_mel_filterbank()
    assert ours.shape == graph_filters.shape == (EMBEDDING_N_FREQ_BINS, EMBEDDING_N_MELS)
    np.testing.assert_allclose(ours, graph_filters, atol=1e-9, rtol=1e-6)


def test_filterbank_equals_librosa_slaney_60_to_3800_hz():
    import librosa

    ref = librosa.filters.mel(
        sr=SR, n_fft=EMBEDDING_N_FFT, n_mels=EMBEDDING_N_MELS, fmin=60.0, fmax=3800.0,
        dtype=np.float64,
    )  # fmt: skip
    np.testing.assert_allclose(embedding_mel_filterbank(), ref.T, atol=1e-12, rtol=1e-10)


# --- parity with the graph --------------------------------------------------------------------


def assert_matches_graph(run_graph, pcm: np.ndarray) -> float:
    """Check both outputs agree to PARITY_REL of the reference's scale; return the ratio."""
    ref = run_graph(pcm)
    ours = embedding_log_mel(from_pcm16(pcm), top_db=EMBEDDING_TOP_DB)
    assert ours.shape == ref.shape == (embedding_frame_count(pcm.size), EMBEDDING_N_MELS)
    assert ours.dtype == np.float32
    scale = float(np.abs(ref).max())
    np.testing.assert_allclose(ours, ref, atol=PARITY_REL * scale, rtol=0)
    return float(np.abs(ours - ref).max()) / scale


@pytest.mark.parametrize(
    "name, pcm",
    [
        ("quiet_noise", noise_pcm(1e-4, 1.0, seed=1)),  # int16 std ~3
        ("loud_noise", noise_pcm(0.4, 1.0, seed=2)),  # clips at full scale now and then
        ("demo_speech_1s", demo_pcm()[5 * SR : 6 * SR]),
    ],
)
def test_matches_graph(run_graph, name, pcm):
    assert_matches_graph(run_graph, pcm)


def test_matches_graph_on_whole_demo_speech(run_graph):
    assert_matches_graph(run_graph, demo_pcm())


def test_matches_graph_on_espeak_speech(run_graph, tmp_path):
    assert_matches_graph(run_graph, espeak_pcm(tmp_path))


def test_matches_graph_on_speech_between_digital_silence(run_graph):
    """The top-dB clip lifts the silence to max - 8; the fixed floor alone would leave -8."""
    pcm = np.concatenate([np.zeros(SR // 2, np.int16), demo_pcm()[5 * SR : 6 * SR]])
    assert_matches_graph(run_graph, np.concatenate([pcm, np.zeros(SR // 3, np.int16)]))
    assert embedding_log_mel(from_pcm16(pcm))[0].max() == pytest.approx(EMBEDDING_OUTPUT_FLOOR)


def test_without_top_db_matches_graph_within_80_db(run_graph):
    pcm = noise_pcm(0.05, 0.5, seed=3)
    ref = run_graph(pcm)
    assert np.ptp(ref) < EMBEDDING_TOP_DB / 10  # the graph's clip is inactive here
    np.testing.assert_allclose(embedding_log_mel(from_pcm16(pcm)), ref, atol=1e-4, rtol=0)


def test_matches_openwakeword_get_melspectrogram():
    """Checks the ``/ 10 + 2`` scaling against openWakeWord's own method, not a copy of it."""
    require(importlib.util.find_spec("onnxruntime") is not None, "onnxruntime is not installed")
    require(importlib.util.find_spec("openwakeword") is not None, "openwakeword is not installed")
    from openwakeword.utils import AudioFeatures

    pcm = demo_pcm()[8 * SR : 9 * SR]
    ref = AudioFeatures(inference_framework="onnx")._get_melspectrogram(pcm)
    ours = embedding_log_mel(from_pcm16(pcm), top_db=EMBEDDING_TOP_DB)
    np.testing.assert_allclose(ours, ref, atol=PARITY_REL * float(np.abs(ref).max()), rtol=0)


@pytest.mark.parametrize("n", [512, 671, 672, 1280, 1760, 16000])
def test_frame_count_equals_graph_output_length(run_graph, n):
    pcm = noise_pcm(0.1, n / SR, seed=n)
    assert run_graph(pcm).shape == (embedding_frame_count(n), EMBEDDING_N_MELS)


@pytest.mark.parametrize(
    "n, frames", [(0, 0), (1, 0), (511, 0), (512, 1), (671, 1), (672, 2), (16000, 97)]
)
def test_frame_count(n, frames):
    assert embedding_frame_count(n) == frames
    out = embedding_log_mel(np.zeros(n, np.float32))
    assert out.shape == (frames, EMBEDDING_N_MELS)
    assert out.dtype == np.float32


def test_frame_t_covers_samples_160t_to_160t_plus_512():
    """An impulse changes exactly the frames whose (nonzero) window covers it."""
    base = 1e-3 * np.random.default_rng(4).standard_normal(4000).astype(np.float32)
    quiet = embedding_log_mel(base)
    for position in (600, 1234, 2000):
        loud = base.copy()
        loud[position] = 0.9
        changed = np.flatnonzero(np.abs(embedding_log_mel(loud) - quiet).max(axis=1) > 1e-6)
        starts = EMBEDDING_HOP_SAMPLES * np.arange(quiet.shape[0])
        first, last = np.flatnonzero(embedding_window())[[0, -1]]
        covered = (position >= starts + first) & (position <= starts + last)
        np.testing.assert_array_equal(changed, np.flatnonzero(covered))
        assert all(s <= position < s + EMBEDDING_N_FFT for s in starts[changed])


def test_top_db_only_raises_values_below_the_peak_minus_8():
    audio = np.concatenate([np.zeros(SR // 4, np.float32), speech_excerpt()])
    plain = embedding_log_mel(audio)
    clipped = embedding_log_mel(audio, top_db=EMBEDDING_TOP_DB)
    np.testing.assert_array_equal(clipped, np.maximum(plain, plain.max() - np.float32(8.0)))
    assert plain.min() == pytest.approx(EMBEDDING_OUTPUT_FLOOR)


# --- streaming --------------------------------------------------------------------------------


def stream_in_chunks(audio: np.ndarray, sizes: list[int], stream: EmbeddingMelStream | None = None):
    stream = stream or EmbeddingMelStream()
    pieces, start, i = [], 0, 0
    while start < audio.size:
        size = sizes[i % len(sizes)]
        out = stream.push(audio[start : start + size])
        assert out.dtype == np.float32 and out.shape[1:] == (EMBEDDING_N_MELS,)
        pieces.append(out)
        start, i = start + size, i + 1
    return np.concatenate(pieces)


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_stream_equals_whole_signal(size):
    audio = speech_excerpt()
    whole = embedding_log_mel(audio)
    np.testing.assert_allclose(stream_in_chunks(audio, [size]), whole, atol=STREAM_ATOL, rtol=0)


def test_stream_equals_whole_signal_for_random_chunk_sizes():
    audio = speech_excerpt()
    sizes = list(np.random.default_rng(5).integers(0, 900, size=50))
    streamed = stream_in_chunks(audio, sizes)
    np.testing.assert_allclose(streamed, embedding_log_mel(audio), atol=STREAM_ATOL, rtol=0)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=1500), min_size=1, max_size=30),
    n_samples=st.integers(min_value=0, max_value=4000),
)
def test_stream_equals_whole_signal_property(sizes, n_samples):
    if not any(sizes):
        sizes = [*sizes, 1]
    audio = speech_excerpt()[:n_samples]
    streamed = stream_in_chunks(audio, sizes) if n_samples else np.zeros((0, EMBEDDING_N_MELS))
    whole = embedding_log_mel(audio)
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=STREAM_ATOL, rtol=0)


def test_stream_counts_frames_and_reset_starts_afresh():
    audio = speech_excerpt()
    stream = EmbeddingMelStream()
    stream_in_chunks(audio[:1000], [333], stream)
    assert stream.frames_emitted == embedding_frame_count(1000)
    stream.reset()
    assert stream.frames_emitted == 0
    again = stream_in_chunks(audio, [1280], stream)
    np.testing.assert_allclose(again, embedding_log_mel(audio), atol=STREAM_ATOL, rtol=0)


# --- input checks and import hygiene ----------------------------------------------------------


@pytest.mark.parametrize(
    "audio, words",
    [
        (np.zeros(600, np.int16), ["audio", "int16", "float32"]),
        (np.zeros(600, np.float64), ["audio", "float64", "float32"]),
        (np.zeros((2, 600), np.float32), ["audio", "(2, 600)", "(n,)"]),
        (np.zeros((600, 1), np.float32), ["audio", "(600, 1)", "(n,)"]),
    ],
)
def test_wrong_input_is_a_clear_value_error(audio, words):
    for call in (embedding_log_mel, EmbeddingMelStream().push):
        with pytest.raises(ValueError) as caught:
            call(audio)
        assert all(word in str(caught.value) for word in words), str(caught.value)


@pytest.mark.parametrize("top_db", [0.0, -80.0, float("nan"), float("inf")])
def test_bad_top_db_is_a_clear_value_error(top_db):
    with pytest.raises(ValueError, match=r"top_db: got .*, expected None or a positive"):
        embedding_log_mel(np.zeros(600, np.float32), top_db=top_db)


def test_importing_the_module_loads_neither_librosa_nor_scipy():
    code = (
        "import sys, dsp.embedding_features; "
        "print(sorted(m for m in ('librosa', 'scipy', 'numba') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    assert done.stdout.strip() == "[]"
