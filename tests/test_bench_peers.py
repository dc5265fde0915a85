"""The peer benchmark really runs openWakeWord and Porcupine, each in its own process."""

from __future__ import annotations

import importlib.util
import json
import shutil
from importlib import metadata
from pathlib import Path

import pytest
import soundfile

from agent.bench import peers as bench_peers
from dsp.constants import SAMPLE_RATE_HZ
from tests.conftest import require


def require_peers() -> None:
    for package in (bench_peers.PACKAGES[peer] for peer in bench_peers.PEERS):
        require(
            importlib.util.find_spec(package) is not None,
            f"{package} is not installed (pip install -e '.[bench]')",
        )


def require_voices() -> None:
    for binary in ("espeak-ng", "flite"):
        require(shutil.which(binary) is not None, f"{binary} is not installed")


def write(path: Path, script) -> Path:
    from models.speech.demo_stream import build_stream

    soundfile.write(path, build_stream(script).audio, SAMPLE_RATE_HZ, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 20 s of everyday speech, no wake word."""
    from models.speech.demo_stream import other_speech

    require_voices()
    return write(tmp_path_factory.mktemp("peers") / "speech.wav", other_speech(20.0))


@pytest.fixture(scope="module")
def wake_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s of other speech, then "computer, what time is it" in the wake voice."""
    from models.speech.demo_stream import other_speech, wake_and_command

    require_voices()
    script = [*other_speech(2.0), *wake_and_command("computer", "what time is it")]
    return write(tmp_path_factory.mktemp("peers") / "wake.wav", script)


def test_both_peers_run_and_cost_a_fraction_of_a_core(speech_wav: Path):
    require_peers()
    audio_s = soundfile.info(str(speech_wav)).frames / SAMPLE_RATE_HZ
    assert audio_s > 15.0
    results = bench_peers.peer_cpu(speech_wav)
    assert [r["peer"] for r in results] == ["openwakeword", "porcupine"]
    for r in results:
        assert r["error"] is None, r
        assert r["version"] == metadata.version(bench_peers.PACKAGES[r["peer"]])
        assert r["audio_s"] == pytest.approx(audio_s)
        assert 0.0 < r["cpu_percent"] < 100.0
        assert r["cpu_s"] == pytest.approx(r["cpu_percent"] * audio_s / 100.0)
        assert r["wall_s"] > 0.0 and r["load_s"] > 0.0
        assert r["threads"] == 1
        assert isinstance(r["detections"], int)


def test_porcupine_hears_computer_said_by_espeak(wake_wav: Path):
    """An independent check that the peer is fed the real audio, frame by frame, in order."""
    require_peers()
    [result] = bench_peers.peer_cpu(wake_wav, peers=["porcupine"])
    assert result["error"] is None, result
    assert result["detections"] >= 1


def test_openwakeword_hears_alexa_said_by_espeak(tmp_path: Path):
    """The same check for openWakeWord, with its bundled "alexa" model."""
    from models.speech.demo_stream import other_speech, wake_and_command

    require_peers()
    require_voices()
    wav = write(tmp_path / "alexa.wav", [*other_speech(2.0), *wake_and_command("alexa", "stop")])
    [result] = bench_peers.peer_cpu(wav, peers=["openwakeword"])
    assert result["error"] is None, result
    assert result["detections"] >= 1
    assert result["max_score"] >= bench_peers.OWW_THRESHOLD


def test_a_missing_package_is_reported_not_raised(monkeypatch, tmp_path: Path):
    def absent(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(bench_peers.metadata, "version", absent)
    result = bench_peers.measure("porcupine", tmp_path / "unused.wav")
    assert result["error"] == "not installed: pip install 'earshot[bench]'"
    assert result["cpu_percent"] is None


def test_a_failing_peer_is_an_error_not_a_crash(tmp_path: Path):
    require_peers()
    stereo = tmp_path / "stereo.wav"
    soundfile.write(stereo, [[0.0, 0.0]] * 1600, SAMPLE_RATE_HZ, subtype="PCM_16")
    [result] = bench_peers.peer_cpu(stereo, peers=["porcupine"])
    assert "want 16 kHz mono" in result["error"]
    assert bench_peers.peer_cpu(stereo, peers=["nobody"])[0]["error"].startswith("unknown peer")


def test_main_prints_one_json_document(wake_wav: Path, capsys):
    require_peers()
    assert bench_peers.main(["--wav", str(wake_wav), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [r["peer"] for r in document["peers"]] == list(bench_peers.PEERS)
    assert all(r["error"] is None for r in document["peers"])


def test_earshots_bare_detector_loop_is_measured_like_a_peer(wake_wav: Path):
    [result] = bench_peers.peer_cpu(wake_wav, peers=["earshot"])
    assert result["error"] is None, result
    assert result["detections"] == 1  # "computer", once
    assert 0.0 < result["cpu_percent"] < 100.0
    assert result["frame_samples"] == 1280
