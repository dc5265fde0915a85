"""Real capture through PulseAudio: play a known WAV into a null sink, record its monitor.

PortAudio reaches the private server through ALSA's pulse plugin; PULSE_SOURCE selects the sink's
monitor. Under CI=true these tests must run (see conftest.require).
"""

import signal
import subprocess
import threading
import time

import numpy as np
import pytest
import soundfile

from agent.capture.devices import find_input_device, list_input_devices
from agent.capture.sources import MicrophoneSource
from agent.paths import DEMO_AUDIO
from dsp.audio import load_audio
from kernels.errors import AudioError
from tests.conftest import EARSHOT, REPO, agent_home, run_earshot, tone

SR = 16_000
REFERENCE_SECONDS = 2.5
RECORD_SECONDS = 5.0
MIN_CORRELATION = 0.9


@pytest.fixture(scope="module")
def reference_wav(tmp_path_factory):
    """2.5 s of speech from the bundled demo, as a 16 kHz WAV."""
    samples = load_audio(DEMO_AUDIO)[: int(REFERENCE_SECONDS * SR)]
    path = tmp_path_factory.mktemp("capture") / "reference.wav"
    soundfile.write(path, samples, SR, subtype="PCM_16")
    return path, samples


def best_alignment_correlation(recorded: np.ndarray, reference: np.ndarray) -> float:
    """Normalized cross-correlation of the two signals' overlap at their best alignment.

    Lags of either sign are searched: an idle null sink's monitor delivers nothing, so a capture
    may begin only once playback has started, a few milliseconds into the reference.
    """
    n = recorded.size + reference.size
    xcorr = np.fft.irfft(np.fft.rfft(recorded, n) * np.conj(np.fft.rfft(reference, n)), n)
    lag = int(np.argmax(xcorr))
    lag = lag if lag < recorded.size else lag - n  # recorded[t + lag] ~ reference[t]
    rec_start, ref_start = max(lag, 0), max(-lag, 0)
    length = min(recorded.size - rec_start, reference.size - ref_start)
    assert length > 0.8 * reference.size, f"only {length} samples overlap at lag {lag}"
    a = recorded[rec_start : rec_start + length].astype(np.float64)
    b = reference[ref_start : ref_start + length].astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def test_pulse_device_is_listed(pulse_env):
    names = [d.name for d in list_input_devices()]
    assert "pulse" in names
    assert find_input_device("puls").name == "pulse"
    with pytest.raises(AudioError, match=r"'no-such-mic' is not an input device; available.*pulse"):
        find_input_device("no-such-mic")


def test_record_command_captures_what_was_played(pulse_server, reference_wav, tmp_path):
    path, reference = reference_wav
    out = tmp_path / "recorded.wav"
    recorder = subprocess.Popen(
        [*EARSHOT, "record", str(out), "--seconds", str(RECORD_SECONDS), "--device", "pulse"],
        cwd=REPO, env=pulse_server.env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    for line in recorder.stderr:  # wait for the prompt: capture has started
        if line.startswith("recording"):
            break
    pulse_server.play(path)
    _, stderr = recorder.communicate(timeout=30)
    assert recorder.returncode == 0, stderr
    recorded, rate = soundfile.read(out, dtype="float32")
    assert rate == SR
    assert recorded.size == int(RECORD_SECONDS * SR)
    correlation = best_alignment_correlation(recorded, reference)
    assert correlation > MIN_CORRELATION, f"normalized cross-correlation {correlation:.3f}"


def test_microphone_source_resamples_from_native_rate(pulse_env, reference_wav):
    path, reference = reference_wav
    with MicrophoneSource("pulse", capture_rate_hz=44_100) as mic:
        assert mic.capture_rate_hz == 44_100
        player = threading.Thread(target=pulse_env.play, args=(path,))
        player.start()
        chunks, have = [], 0
        for chunk in mic.chunks():
            chunks.append(chunk)
            have += chunk.size
            if have >= RECORD_SECONDS * SR:
                break
        player.join()
    recorded = np.concatenate(chunks)
    assert recorded.dtype == np.float32
    correlation = best_alignment_correlation(recorded, reference)
    assert correlation > MIN_CORRELATION, f"normalized cross-correlation {correlation:.3f}"


def test_slow_consumer_drops_oldest_blocks_without_stalling_capture(pulse_env, tmp_path):
    long_tone = tmp_path / "tone.wav"
    soundfile.write(long_tone, tone(440, 6.0, SR), SR, subtype="PCM_16")
    with MicrophoneSource("pulse", block_ms=20, queue_blocks=3) as mic:
        player = threading.Thread(target=pulse_env.play, args=(long_tone,))
        player.start()
        chunks = mic.chunks()
        assert next(chunks).size > 0  # audio flows (a fresh server may take ~2 s to start)
        time.sleep(1.0)  # nobody reads: ~50 blocks arrive for a queue of 3
        assert mic.dropped_blocks >= 20
        assert next(chunks).size > 0
        player.join()


def test_devices_command_and_unknown_device(pulse_server):
    listed = run_earshot("devices", env=pulse_server.env)
    assert listed.returncode == 0
    assert "pulse" in listed.stdout
    missing = run_earshot("run", "--device", "no-such-mic", "--seconds", "1", env=pulse_server.env)
    assert missing.returncode == 3
    assert "'no-such-mic' is not an input device" in missing.stderr
    assert "[0] pulse" in missing.stderr or "] pulse" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_run_listens_to_the_microphone(pulse_server, tmp_path):
    result = run_earshot("run", "--seconds", "1", env=agent_home(tmp_path, pulse_server.env))
    assert result.returncode == 0, result.stderr
    assert "capturing from microphone" in result.stderr
    assert "stopped after 1.0 s of audio" in result.stderr
    assert "device_lost" not in result.stdout


def test_input_overflows_are_counted_and_reported(pulse_env, caplog):
    import sounddevice as sd

    overflow = sd.CallbackFlags()
    overflow.input_overflow = True
    block = np.full((320, 1), 0.25, np.float32)
    with MicrophoneSource("pulse", block_ms=20) as mic:
        with caplog.at_level("WARNING", logger="agent.capture.sources"):
            mic._on_audio(block, 320, None, overflow)  # what PortAudio calls when audio was lost
            mic._on_audio(block, 320, None, overflow)
        assert mic.overflows == 2
        assert "input overflow (audio was lost), 2 so far" in caplog.text
        queued = []
        while not mic._queue.empty():
            queued.append(mic._queue.get_nowait())
        assert any(np.all(chunk == 0.25) for chunk in queued)  # the block still reached the queue


# ---- earshot record: owner-only, streamed to the file, Ctrl-C keeps the audio, bad arguments ----

WAV_HEADER_BYTES = 44
GROWTH_TIMEOUT_S = 30.0


def start_recorder(out, seconds: str, env) -> subprocess.Popen:
    """``earshot record`` from the null sink's monitor, once it has said that it records."""
    recorder = subprocess.Popen(
        [*EARSHOT, "record", str(out), "--seconds", seconds, "--device", "pulse"],
        cwd=REPO, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert recorder.stderr is not None
    for line in recorder.stderr:  # the prompt: capture has started
        if line.startswith("recording"):
            return recorder
    recorder.wait(timeout=10)
    raise AssertionError(f"no prompt; exit code {recorder.returncode}")


def test_record_writes_an_owner_only_file_even_over_a_readable_one(pulse_server, tmp_path):
    out = tmp_path / "voice.wav"
    out.write_bytes(b"an older, world-readable file")
    out.chmod(0o644)
    recorder = start_recorder(out, "0.5", pulse_server.env)
    _, stderr = recorder.communicate(timeout=30)
    assert recorder.returncode == 0, stderr
    assert out.stat().st_mode & 0o777 == 0o600
    recorded, rate = soundfile.read(out, dtype="float32")
    assert rate == SR and recorded.size == SR // 2


def test_ctrl_c_keeps_what_was_recorded_which_streams_to_the_file(
    pulse_server, reference_wav, tmp_path
):
    path, reference = reference_wav
    out = tmp_path / "long.wav"
    recorder = start_recorder(out, "3600", pulse_server.env)
    try:
        pulse_server.play(path)
        # The audio reaches the file while recording, not at the end: memory does not grow.
        deadline = time.monotonic() + GROWTH_TIMEOUT_S
        while not (out.exists() and out.stat().st_size > WAV_HEADER_BYTES + SR):
            assert time.monotonic() < deadline, "nothing written to the file while recording"
            assert recorder.poll() is None, recorder.stderr.read() if recorder.stderr else ""
            time.sleep(0.05)
        assert out.stat().st_mode & 0o777 == 0o600
        recorder.send_signal(signal.SIGINT)
        _, stderr = recorder.communicate(timeout=30)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait()
    assert recorder.returncode == 130, stderr
    assert "Traceback" not in stderr
    recorded, rate = soundfile.read(out, dtype="float32")  # a complete WAV file
    assert rate == SR
    assert f"interrupted: wrote {recorded.size / SR:.2f} s to {out}" in stderr
    assert recorded.size >= reference.size
    correlation = best_alignment_correlation(recorded, reference)
    assert correlation > MIN_CORRELATION, f"normalized cross-correlation {correlation:.3f}"


@pytest.mark.parametrize("seconds", ["0", "-3", "nan", "inf", "-inf", "1e12", "86401"])
def test_record_refuses_a_length_that_is_not_positive_finite_and_at_most_a_day(
    pulse_server, tmp_path, seconds
):
    out = tmp_path / "x.wav"
    result = run_earshot(
        "record", str(out), f"--seconds={seconds}", "--device", "pulse", env=pulse_server.env
    )
    assert result.returncode == 2, result.stderr
    got = f"{float(seconds):g}"
    assert (
        f"earshot: error: --seconds: got {got}, expected a length in seconds from 0.001 to "
        "86400 (a day)" in result.stderr
    )
    assert "recording" not in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("case", ["missing-folder", "a-file-as-folder", "a-folder"])
def test_record_checks_its_output_before_recording(pulse_server, tmp_path, case):
    if case == "missing-folder":
        folder = tmp_path / "nosuch"
        out, expected = folder / "x.wav", f"the folder {folder} does not exist; create it first"
    elif case == "a-file-as-folder":
        folder = tmp_path / "notes.txt"
        folder.write_text("not a folder")
        out, expected = folder / "x.wav", f"{folder} is not a folder"
    else:
        out, expected = tmp_path, "is a folder; expected the name of a WAV file to write"
    result = run_earshot(
        "record", str(out), "--seconds", "1", "--device", "pulse", env=pulse_server.env
    )
    assert result.returncode == 2, result.stderr
    assert f"earshot: error: {out}: {expected}" in result.stderr
    assert "capturing" not in result.stderr and "recording" not in result.stderr
    assert "Traceback" not in result.stderr
