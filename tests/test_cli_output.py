"""What the command line prints, and how it ends, as a user reading it sees it.

A closed or full standard output, the status rows, thresholds near 1, why a false-alarm target
is missed, take-check and model-file messages, MP3 decoder notes, and enrollment checking every
take before it trains anything. Commands run as subprocesses of ``python -m agent`` with their
own data and config homes (`tests.conftest.agent_home`); the control server is a real one on a
real Unix socket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from agent.control.events import EventBus
from agent.control.server import ControlServer
from agent.settings import EventSettings, WakeWordSettings
from dsp.audio import load_audio
from dsp.constants import SAMPLE_RATE_HZ
from kernels.errors import AudioError, ModelError
from models.base.model import BaseModel
from models.paths import SHIPPED_BASE_MODEL
from models.wake.model import WakeWordModel, shipped_detector
from tests.conftest import EARSHOT, REPO, agent_home, run_earshot

SR = SAMPLE_RATE_HZ
SHIPPED_CONFIG = REPO / "config" / "earshot.yaml"
EXIT_BROKEN_PIPE = 141
"""What a shell reports for ``cat`` killed by SIGPIPE: 128 + 13."""
NO_TRAINING_TIMEOUT_S = 60
"""Enrollment that refuses its takes needs seconds; training a detector from text takes
minutes, so a run past this has started training."""


# ---- a closed or full standard output ------------------------------------------------------------


def run_into_closed_pipe(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run the CLI with standard output a pipe whose reader has already gone."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [*EARSHOT, *args], stdout=write, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env=env, timeout=120,
        )  # fmt: skip
    finally:
        os.close(write)


@pytest.mark.parametrize(
    "args", [("config", "check", str(SHIPPED_CONFIG)), ("audit",), ("audit", "--json"), ("--help",)]
)
def test_a_closed_pipe_ends_quietly_as_cat_does(args, agent_env):
    result = run_into_closed_pipe(*args, env=agent_env)
    assert result.returncode == EXIT_BROKEN_PIPE, result.stderr
    assert result.stderr == ""


def test_a_full_standard_output_is_one_line_naming_it(agent_env):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [*EARSHOT, "config", "check", str(SHIPPED_CONFIG)], stdout=full,
            stderr=subprocess.PIPE, text=True, cwd=REPO, env=agent_env, timeout=120,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "earshot: error: cannot write to standard output: No space left on device"
    ]


def test_events_into_a_closed_pipe_end_quietly(agent_env):
    async def events_into_a_closed_pipe(path: Path) -> tuple[int, str]:
        bus = EventBus(EventSettings(stdout=False))
        server = ControlServer(path, bus, lambda: dict(STATUS))
        await server.start()
        read, write = os.pipe()
        os.close(read)
        try:
            process = await asyncio.create_subprocess_exec(
                *EARSHOT, "events", "--socket", str(path), stdout=write,
                stderr=asyncio.subprocess.PIPE, cwd=REPO, env=agent_env,
            )  # fmt: skip
            os.close(write)
            waiting = asyncio.ensure_future(process.wait())
            while not waiting.done():  # an event for the subscriber, once it has subscribed
                bus.emit("state", state="listening")
                await asyncio.wait([waiting], timeout=0.05)
            assert process.stderr is not None
            return await waiting, (await process.stderr.read()).decode()
        finally:
            await server.close()

    with tempfile.TemporaryDirectory(prefix="earshot-test-") as name:
        code, stderr = asyncio.run(
            asyncio.wait_for(events_into_a_closed_pipe(Path(name) / "control.sock"), 60)
        )
    assert code == EXIT_BROKEN_PIPE, stderr
    assert stderr == ""


# ---- earshot status ------------------------------------------------------------------------------

STATUS = {
    "state": "listening",
    "uptime_s": 61.0,
    "source": "microphone [0] pulse",
    "microphone_lost": False,
    "level_dbfs": -41.5,
    "audio_s": 60.0,
    "dropped_blocks": 0,
    "uploads_in_flight": 0,
}


def test_status_rows_keep_a_space_between_every_label_and_its_value():
    async def status_through_the_cli(path: Path) -> subprocess.CompletedProcess:
        server = ControlServer(path, EventBus(EventSettings(stdout=False)), lambda: dict(STATUS))
        await server.start()
        try:
            return await asyncio.to_thread(run_earshot, "status", "--socket", str(path))
        finally:
            await server.close()

    with tempfile.TemporaryDirectory(prefix="earshot-test-") as name:  # short for AF_UNIX
        result = asyncio.run(status_through_the_cli(Path(name) / "control.sock"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    rows = {}
    for line in lines:
        found = re.fullmatch(r"([a-z ()]+): +(\S.*)", line)
        assert found, f"no space after the label: {line!r}"
        rows[found[1]] = found[2]
    assert rows["microphone lost"] == "no"
    assert rows["dropped blocks"] == "0"
    assert rows["uploads now"] == "0"
    columns = {len(line) - len(value) for line, value in zip(lines, rows.values(), strict=True)}
    assert len(columns) == 1, f"values start in different columns: {lines}"


# ---- thresholds and false-alarm targets ----------------------------------------------------------


def test_threshold_text_tells_the_highest_threshold_from_1():
    from models.wake.metrics import MAX_THRESHOLD, threshold_text

    assert threshold_text(MAX_THRESHOLD) == "0.99995"
    assert float(threshold_text(MAX_THRESHOLD)) < 1
    assert threshold_text(0.5) == "0.5000"
    assert threshold_text(0.9976476) == "0.9976"
    assert threshold_text(2e-5) == "0.00002"


def test_enroll_summary_shows_thresholds_below_1_and_why_a_target_is_missed(capsys, tmp_path):
    from agent.cli import enroll as enroll_cli
    from models.enroll.finetune import EnrollmentResult
    from models.wake.metrics import MAX_THRESHOLD
    from models.wake.speaker import N_CEPSTRA, SpeakerProfile

    shipped = WakeWordModel.load(shipped_detector("computer"))
    # Detectors whose scores on speech without the wake word are all above the highest
    # threshold (0.99995): none gets to 0.1 false alarms per hour.
    text_only, eager = (
        dataclasses.replace(shipped, calibration=[np.full_like(c, s) for c in shipped.calibration])
        for s in (0.99998, 0.99999)
    )
    wake = WakeWordSettings(name="computer", phrase="computer", false_accepts_per_hour=0.1)
    result = EnrollmentResult(eager, {"metrics": {"takes": 3}}, 0.93, 0.99)
    speaker = SpeakerProfile([np.zeros((20, N_CEPSTRA), np.float32)], 1.0, 0.5, 0.05)
    enroll_cli._summary(wake, text_only, result, speaker, 4.2, tmp_path)
    out = capsys.readouterr().out

    assert "1.0000" not in out
    assert re.search(r"^  threshold\s+0\.99995\s+0\.99995$", out, re.M), out
    rates = re.search(r"^  expected false alarms per hour\s+(\S+)\s+(\S+)$", out, re.M)
    assert rates, out
    before, after = float(rates[1]), float(rates[2])
    assert before > 0.1 and after > 100  # both miss the target of 0.1 ...
    for label, rate in (("text-only", rates[1]), ("enrolled", rates[2])):  # ... and it says why
        assert (
            f"  the {label} detector cannot reach the target of 0.1 false alarms/h: even at the "
            f"highest threshold, 0.99995, its calibration (1.00 h of speech without the wake "
            f"word) gives {rate} per hour"
        ) in out, out
    assert MAX_THRESHOLD < 1


# ---- take checks and model files -----------------------------------------------------------------


def computer_take(path: Path, seed: int = 0) -> Path:
    """A recording of "computer" by a synthetic voice, in 0.5 s of faint noise on each side."""
    from models.speech.augment import apply_gain
    from models.speech.dataset import trim_silence
    from models.speech.synth import Rendition, SpeechCache, Voice
    from tests.test_wake_cli import require_synthesizer

    require_synthesizer()
    clip = trim_silence(SpeechCache().get(Rendition("computer", Voice("espeak-ng", "en-us"))))
    clip = apply_gain(clip, -20.0 - 10 * np.log10(np.mean(np.square(clip))))
    rng = np.random.default_rng(seed)
    audio = (rng.standard_normal(clip.size + SR) * 1e-3).astype(np.float32)
    audio[SR // 2 : SR // 2 + clip.size] += clip
    soundfile.write(path, audio, SR, subtype="PCM_16")
    return path


def test_too_few_usable_recordings_is_a_sentence_without_a_dangling_separator(tmp_path):
    from agent.enroll.capture import enrollment_from_files
    from models.enroll.takes import TakeChecker

    take = computer_take(tmp_path / "take.wav")
    detector = WakeWordModel.load(shipped_detector("computer"))
    checker = TakeChecker(BaseModel.load(SHIPPED_BASE_MODEL), detector.phrase_duration_s)
    with pytest.raises(AudioError) as caught:
        enrollment_from_files([take], checker)
    assert str(caught.value) == "enrollment: 1 of 1 recordings are usable, need at least 3"


def edited_copy(source: Path, path: Path, edit) -> Path:
    """A copy of the model file ``source`` with its (unchecksummed) manifest changed by ``edit``."""
    from models.nn.checkpoint import MANIFEST_KEY

    with np.load(source) as data:
        arrays = {name: data[name] for name in data.files}
    manifest = json.loads(str(arrays[MANIFEST_KEY]))
    edit(manifest)
    arrays[MANIFEST_KEY] = np.array(json.dumps(manifest))
    with path.open("wb") as f:
        np.savez(f, **arrays)
    return path


@pytest.mark.parametrize(("key", "value"), [("channels", "64"), ("first_channels", 2.5)])
def test_a_base_model_whose_layers_cannot_be_built_is_named(tmp_path, key, value):
    path = edited_copy(
        SHIPPED_BASE_MODEL, tmp_path / "base.npz",
        lambda m: m["architecture"]["args"].__setitem__(key, value),
    )  # fmt: skip
    with pytest.raises(ModelError) as caught:
        BaseModel.load(path)
    assert str(caught.value).startswith(f"{path}: "), caught.value
    assert str(value) in str(caught.value)


def test_a_transfer_head_whose_layers_do_not_fit_its_file_is_named(tmp_path):
    from models.base.architecture import build_head
    from models.base.transfer import TransferRecognizer

    base = BaseModel.load(SHIPPED_BASE_MODEL)
    recognizer = TransferRecognizer(base, "lights", background=False)
    recognizer.words = ["on", "off"]
    recognizer.head = build_head(base.config.embedding_dim, 2, np.random.default_rng(0))
    saved = tmp_path / "lights.npz"
    recognizer.save(saved)
    path = edited_copy(saved, tmp_path / "edited.npz", lambda m: m["labels"].append("dim"))
    with pytest.raises(ModelError) as caught:
        TransferRecognizer.load(path, base)
    assert str(caught.value).startswith(f"{path}: "), caught.value


# ---- MP3 decoder notes ---------------------------------------------------------------------------


def truncated_mp3(path: Path) -> Path:
    """An MP3 file cut in half: its Xing header then overstates its length."""
    t = np.arange(3 * SR) / SR
    whole = path.with_name("whole.mp3")
    soundfile.write(whole, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR,
                    format="MP3")  # fmt: skip
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 37])
    return path


def test_mp3_decoder_notes_stay_off_stderr_and_stderr_comes_back(tmp_path, capfd):
    if "MP3" not in soundfile.available_formats():
        pytest.skip("this libsndfile has no MP3 support")
    audio = load_audio(truncated_mp3(tmp_path / "cut.mp3"))
    assert 0.5 * SR < audio.size < 3 * SR
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 20)
    with pytest.raises(AudioError, match=rf"^{re.escape(str(garbage))}: not a readable audio"):
        load_audio(garbage)
    os.write(2, b"stderr is back\n")
    captured = capfd.readouterr()
    assert captured.err == "stderr is back\n"


def test_an_mp3_through_the_cli_prints_no_decoder_notes(tmp_path, agent_env):
    if "MP3" not in soundfile.available_formats():
        pytest.skip("this libsndfile has no MP3 support")
    result = run_earshot("run", "--file", str(truncated_mp3(tmp_path / "cut.mp3")), "--fast",
                         env=agent_env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "libmpg123" not in result.stderr and "Xing" not in result.stderr, result.stderr


# ---- enrollment checks every take before it trains anything --------------------------------------


def trained_nothing(env: dict[str, str]) -> bool:
    """Whether no detector was trained into the default models folder of ``env``'s data home."""
    folder = Path(env["XDG_DATA_HOME"]) / "earshot" / "wake"
    return not folder.exists() or not any(folder.iterdir())


def test_enroll_from_missing_files_fails_before_training_naming_each(tmp_path):
    env = agent_home(tmp_path / "home")
    files = [tmp_path / f"missing{i}.wav" for i in (1, 2, 3)]
    result = run_earshot("enroll", "computer", "--from", *map(str, files), env=env,
                         timeout=NO_TRAINING_TIMEOUT_S)  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "earshot: error: enrollment: 3 of 3 recordings cannot be read: " in result.stderr
    for path in files:
        assert f"{path}: no such file" in result.stderr
    assert "detector from text" not in result.stderr and "training" not in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert trained_nothing(env)


def unusable_takes(folder: Path) -> list[Path]:
    """Three recordings that hold no speech: silence, steady noise, faint noise."""
    rng = np.random.default_rng(5)
    audio = {
        "silence.wav": np.zeros(SR, np.float32),
        "noise.wav": (0.05 * rng.standard_normal(2 * SR)).astype(np.float32),
        "faint.wav": (1e-4 * rng.standard_normal(SR)).astype(np.float32),
    }
    for name, samples in audio.items():
        soundfile.write(folder / name, samples, SR, subtype="FLOAT")
    return [folder / name for name in audio]


def test_enroll_starts_from_the_shipped_detector_and_checks_the_takes_first(tmp_path):
    env = agent_home(tmp_path / "home")
    files = unusable_takes(tmp_path)
    result = run_earshot("enroll", "computer", "--from", *map(str, files), env=env,
                         timeout=NO_TRAINING_TIMEOUT_S)  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "computer: starting from the detector shipped with earshot" in result.stderr
    assert "earshot: error: enrollment: 0 of 3 recordings are usable, need at least 3; " in (
        result.stderr
    )
    for path in files:
        assert f"{path}: no speech heard" in result.stderr
    assert "detector from text" not in result.stderr
    assert trained_nothing(env)


def test_enroll_checks_the_takes_before_training_a_phrase_without_a_detector(tmp_path):
    env = agent_home(tmp_path / "home")
    config = tmp_path / "earshot.yaml"
    config.write_text("wake_words:\n  - name: beacon\n    phrase: hello beacon\n")
    files = unusable_takes(tmp_path)
    assert not shipped_detector("beacon").exists()
    result = run_earshot("enroll", "beacon", "--config", str(config), "--from",
                         *map(str, files), env=env, timeout=NO_TRAINING_TIMEOUT_S)  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "enrollment: 0 of 3 recordings are usable, need at least 3; " in result.stderr
    for path in files:
        assert f"{path}: no speech heard" in result.stderr
    assert "detector from text" not in result.stderr
    assert trained_nothing(env)
