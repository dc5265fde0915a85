"""Base geometry: windows per hop, a hop's context, training examples, stream times; hop embedders.

Every property is checked on both bases' geometries (`models.base.geometry.Geometry`): the DS-CNN's
(97-frame windows every 10 frames, 3 joined 5 hops apart) and the imported embedding's (76-frame
windows every 8 frames, 16 consecutive ones joined).
"""

from collections.abc import Callable

import numpy as np
import pytest

from dsp.constants import SAMPLE_RATE_HZ
from dsp.embedding_features import embedding_frame_count
from dsp.features import frame_count
from kernels.runtime import create_engine
from models.base.geometry import Geometry, WindowEmbedder
from models.base.model import DSCNN_GEOMETRY, BaseModel
from models.base.speech_embedding import EMBEDDING_GEOMETRY, SpeechEmbedding
from models.paths import SHIPPED_BASE_MODEL, SHIPPED_EMBEDDING

FRAME_COUNTS: dict[str, Callable[[int], int]] = {
    "dscnn": frame_count,
    "speech_embedding": embedding_frame_count,
}
"""Each geometry's front end's frame count of a number of samples."""
GEOMETRIES = pytest.mark.parametrize(
    ("name", "geometry"),
    [("dscnn", DSCNN_GEOMETRY), ("speech_embedding", EMBEDDING_GEOMETRY)],
    ids=["dscnn", "speech_embedding"],
)


def random_features(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def chunked(frames: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """``frames`` cut into pieces of the given sizes, cycled (some empty) until all are used."""
    pieces, start, k = [], 0, 0
    while start < frames.shape[0]:
        size = sizes[k % len(sizes)]
        pieces.append(frames[start : start + size])
        start, k = start + size, k + 1
    return pieces


# ---- the documented numbers -------------------------------------------------------------------


def test_dscnn_geometry_is_100_ms_hops_and_three_windows_half_a_second_apart():
    g = DSCNN_GEOMETRY
    assert g.hop_s == pytest.approx(0.1) and g.frame_s == pytest.approx(0.01)
    assert g.window_frames == frame_count(SAMPLE_RATE_HZ) == 97  # 1 s windows
    assert g.context_windows == 3
    assert g.context_stride_hops * g.hop_s == pytest.approx(0.5)
    assert g.context_hops == 10
    assert g.context_frames == 97 + 10 * 10
    assert g.context_s == pytest.approx(2.0, abs=0.01)
    assert g.front_end.n_mels == 40
    assert g.as_dict() == {
        "window_frames": 97, "hop_frames": 10, "windows": 3, "stride_hops": 5, "bands": 40,
    }  # fmt: skip


def test_imported_geometry_is_80_ms_hops_and_sixteen_consecutive_windows():
    g = EMBEDDING_GEOMETRY
    assert g.hop_s == pytest.approx(0.08) and g.frame_s == pytest.approx(0.01)
    assert g.window_frames == 76
    assert g.context_windows == 16 and g.context_stride_hops == 1
    assert g.context_hops == 15
    assert g.context_frames == 76 + 15 * 8
    assert g.context_s == pytest.approx(1.98, abs=0.005)
    assert g.front_end.n_mels == 32
    assert g.as_dict() == {
        "window_frames": 76, "hop_frames": 8, "windows": 16, "stride_hops": 1, "bands": 32,
    }  # fmt: skip


@GEOMETRIES
def test_a_context_is_exactly_context_samples_of_audio(name, geometry):
    count = FRAME_COUNTS[name]
    g = geometry
    assert g.context_hops == (g.context_windows - 1) * g.context_stride_hops
    assert g.context_frames == g.window_frames + g.context_hops * g.hop_frames
    assert count(g.context_samples) == g.context_frames
    assert count(g.context_samples - 1) == g.context_frames - 1
    assert g.context_s == pytest.approx(g.context_samples / SAMPLE_RATE_HZ)
    assert g.hop_count(g.context_frames) == g.context_hops + 1


def test_the_geometry_is_frozen():
    with pytest.raises(AttributeError):
        DSCNN_GEOMETRY.hop_frames = 8  # type: ignore[misc]


# ---- windows, contexts and examples -----------------------------------------------------------


@GEOMETRIES
@pytest.mark.parametrize("more", [0, "hop-1", "hop", 345], ids=["window", "hop-1", "hop", "345"])
def test_hop_windows_are_slices_every_hop(name, geometry, more):
    g = geometry
    frames = {0: g.window_frames, "hop-1": g.window_frames + g.hop_frames - 1,
              "hop": g.window_frames + g.hop_frames, 345: 345}[more]  # fmt: skip
    features = random_features(np.random.default_rng(frames), frames, g.front_end.n_mels)
    windows = g.hop_windows(features)
    expected_hops = (frames - g.window_frames) // g.hop_frames + 1
    assert g.hop_count(frames) == expected_hops
    assert windows.shape == (expected_hops, g.window_frames, g.front_end.n_mels)
    for k in range(expected_hops):
        start = k * g.hop_frames
        np.testing.assert_array_equal(windows[k], features[start : start + g.window_frames])
    assert not windows.flags.writeable


@GEOMETRIES
def test_hop_windows_of_less_than_a_window_is_empty(name, geometry):
    g = geometry
    windows = g.hop_windows(np.ones((g.window_frames - 1, g.front_end.n_mels), np.float16))
    assert windows.shape == (0, g.window_frames, g.front_end.n_mels)
    assert windows.dtype == np.float16
    assert g.hop_count(g.window_frames - 1) == 0 and g.hop_count(0) == 0


@GEOMETRIES
def test_context_vectors_join_hops_i_to_i_plus_context_hops_stride_apart(name, geometry):
    g = geometry
    rng = np.random.default_rng(0)
    hops = g.context_hops + 13
    embeddings = random_features(rng, hops, 6)
    contexts = g.context_vectors(embeddings)
    assert contexts.shape == (hops - g.context_hops, g.context_windows * 6)
    joined = [k * g.context_stride_hops for k in range(g.context_windows)]
    assert joined[-1] == g.context_hops
    for i in range(contexts.shape[0]):
        by_hand = np.concatenate([embeddings[i + j] for j in joined])
        np.testing.assert_array_equal(contexts[i], by_hand)
    assert g.context_vectors(embeddings[: g.context_hops]).shape == (0, g.context_windows * 6)
    assert g.context_vectors(embeddings[: g.context_hops + 1]).shape == (1, g.context_windows * 6)


def test_context_vectors_by_hand():
    embeddings = np.arange(40, dtype=np.float32).reshape(20, 2)
    np.testing.assert_array_equal(
        DSCNN_GEOMETRY.context_vectors(embeddings)[3],
        np.concatenate([embeddings[3], embeddings[8], embeddings[13]]),
    )
    np.testing.assert_array_equal(
        EMBEDDING_GEOMETRY.context_vectors(embeddings)[2], embeddings[2:18].reshape(-1)
    )


@GEOMETRIES
def test_example_windows_are_the_hop_windows_of_each_example(name, geometry):
    g = geometry
    rng = np.random.default_rng(1)
    batch = random_features(rng, 4, g.context_frames, g.front_end.n_mels)
    windows = g.example_windows(batch)
    assert windows.shape == (4 * g.context_windows, g.window_frames, g.front_end.n_mels)
    for n, example in enumerate(batch):
        per_hop = g.hop_windows(example)
        assert per_hop.shape[0] == g.context_hops + 1  # an example is exactly one context long
        for k in range(g.context_windows):
            hop = k * g.context_stride_hops
            np.testing.assert_array_equal(windows[n * g.context_windows + k], per_hop[hop])


@GEOMETRIES
def test_example_windows_give_the_stream_context_of_its_last_hop(name, geometry):
    # Embedding each window by a fixed projection stands in for the base network.
    g = geometry
    bands = g.front_end.n_mels
    rng = np.random.default_rng(2)
    projection = random_features(rng, g.window_frames * bands, 5)

    def embed(windows):
        return windows.reshape(windows.shape[0], -1) @ projection

    stream = random_features(rng, g.context_frames + 3 * g.hop_frames + 5, bands)
    contexts = g.context_vectors(embed(g.hop_windows(stream)))
    assert contexts.shape[0] == 4
    for i in range(contexts.shape[0]):
        example = stream[i * g.hop_frames : i * g.hop_frames + g.context_frames][None]
        np.testing.assert_allclose(
            embed(g.example_windows(example)).reshape(1, -1)[0], contexts[i], rtol=1e-5, atol=1e-4
        )


# ---- stream times -----------------------------------------------------------------------------


@GEOMETRIES
def test_frame_and_hop_end_times_agree_with_the_frame_count(name, geometry):
    g, count = geometry, FRAME_COUNTS[name]
    fe = g.front_end
    for n_frames in (1, 2, g.window_frames, 150):
        samples = round(g.frame_end_s(n_frames) * SAMPLE_RATE_HZ)
        assert count(samples) == n_frames
        assert count(samples - 1) == n_frames - 1
    for k in range(0, 40, 3):
        samples = g.hop_end_s(k) * SAMPLE_RATE_HZ
        assert samples == pytest.approx(round(samples))
        samples = round(samples)
        assert count(samples) == k * g.hop_frames + g.window_frames
        assert count(samples - 1) == k * g.hop_frames + g.window_frames - 1
        assert g.hop_end_s(k) == pytest.approx(g.frame_end_s(k * g.hop_frames + g.window_frames))
    np.testing.assert_allclose(np.diff(g.hop_end_s(np.arange(5))), g.hop_s)
    first = ((g.window_frames - 1) * fe.hop_samples + fe.n_fft) / fe.sample_rate_hz
    assert g.hop_end_s(0) == pytest.approx(first)


# ---- hop embedders ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dscnn() -> BaseModel:
    return BaseModel.load(SHIPPED_BASE_MODEL)


@pytest.fixture(scope="module")
def imported() -> SpeechEmbedding:
    if not SHIPPED_EMBEDDING.is_file():
        pytest.skip(f"{SHIPPED_EMBEDDING} is not there")
    return SpeechEmbedding.load()


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise with a wobbling tone: frames that differ from hop to hop."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    tone = 0.3 * np.sin(2 * np.pi * (300 + 200 * np.sin(2 * np.pi * 1.3 * t)) * t)
    return (tone * (t % 0.7 < 0.4) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


UNEVEN = [1, 0, 13, 7, 30, 2, 97, 0, 5, 41]
"""Frame chunk sizes, cycled: less and more than a hop or a window, and nothing."""


def test_window_embedder_gives_embed_frames_for_uneven_chunks(dscnn):
    g = dscnn.geometry
    features = dscnn.features(speechlike(3.1))
    reference = dscnn.embed_frames(features)
    assert reference.shape == (g.hop_count(features.shape[0]), dscnn.dim)
    np.testing.assert_allclose(reference, dscnn.embed(g.hop_windows(features)), atol=1e-6)
    embedder = WindowEmbedder(create_engine(dscnn.inference_network(), backend="numpy"), g)
    scale = float(np.abs(reference).max())
    for attempt in range(2):  # the second time after a reset
        streamed = [e for piece in chunked(features, UNEVEN) for e in embedder.push(piece)]
        assert len(streamed) == reference.shape[0], attempt
        np.testing.assert_allclose(np.stack(streamed), reference, atol=1e-4 * scale)
        embedder.reset()
    assert isinstance(dscnn.hop_embedder("numpy"), WindowEmbedder)


def test_imported_hop_embedder_gives_embed_frames_for_uneven_chunks(imported):
    g = imported.geometry
    features = imported.features(speechlike(3.1, seed=1))
    reference = imported.embed_frames(features)
    assert reference.shape == (g.hop_count(features.shape[0]), imported.dim)
    scale = float(np.abs(reference).max())
    assert scale > 0
    # Streamed new columns only, they are the windows' embeddings computed whole.
    np.testing.assert_allclose(
        reference, imported.embed(g.hop_windows(features)), atol=1e-4 * scale
    )
    embedder = imported.hop_embedder()
    for sizes in (UNEVEN, [3, 8, 0, 77, 1]):
        streamed = [e for piece in chunked(features, sizes) for e in embedder.push(piece)]
        assert len(streamed) == reference.shape[0], sizes
        np.testing.assert_allclose(np.stack(streamed), reference, atol=1e-4 * scale)
        embedder.reset()


@pytest.mark.parametrize("which", ["dscnn", "imported"])
def test_embed_examples_is_the_context_of_a_streamed_example(which, request):
    base = request.getfixturevalue(which)
    g = base.geometry
    audio = speechlike(g.context_s + 0.35, seed=2)
    features = base.features(audio)
    stream = g.context_vectors(base.embed_frames(features))
    last = stream.shape[0] - 1
    assert last > 0
    starts = (0, last * g.hop_frames)  # row i of the stream's contexts starts at hop i
    examples = np.stack([features[s : s + g.context_frames] for s in starts])
    inputs = base.embed_examples(examples)
    assert inputs.shape == (2, g.context_windows * base.dim)
    scale = float(np.abs(stream).max())
    np.testing.assert_allclose(inputs[0], stream[0], atol=1e-4 * scale)
    np.testing.assert_allclose(inputs[1], stream[last], atol=1e-4 * scale)
    empty = base.embed_examples(np.zeros((0, g.context_frames, g.front_end.n_mels), np.float32))
    assert empty.shape == (0, g.context_windows * base.dim)


def test_geometries_are_equal_by_value():
    copy = Geometry(
        DSCNN_GEOMETRY.front_end, window_frames=97, hop_frames=10, context_windows=3,
        context_stride_hops=5, db_per_unit=DSCNN_GEOMETRY.db_per_unit,
    )  # fmt: skip
    assert copy == DSCNN_GEOMETRY and copy != EMBEDDING_GEOMETRY
