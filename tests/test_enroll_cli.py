"""`earshot enroll`, `earshot forget` and the speaker check, through the real CLI.

The wake word ``seven`` is trained once per session with the small recipe
(`tests.test_wake_cli.trained_seven`); enrolling it re-uses that recipe's cached examples. Every
CLI run gets its own ``XDG_DATA_HOME`` (where enrollments live) and ``XDG_CONFIG_HOME``; the
speech and wake-data caches (``XDG_CACHE_HOME``) are the session's, as in `test_wake_cli`, so
nothing is synthesized twice.

The "user" is one espeak-ng voice (``en-gb-scotland+caleb``, a speaker of the held-out voice
split: neither the wake word's training voices nor the speaker check's impostors use it) at
varied rates and pitches; "other people" are clearly different synthetic voices. The microphone
test plays its takes into a PulseAudio null sink while the CLI records the sink's monitor; under
CI=true it must run (see conftest.require).
"""

import csv
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile

from agent.cli.wake import TRAILING_S
from agent.daemon.detectors import load_detector_model
from agent.enroll.store import INFO_FILE, MODEL_FILE, ROOM_FILE, enrollment
from agent.settings import load_settings
from dsp.audio import load_audio
from dsp.constants import SAMPLE_RATE_HZ
from kernels.errors import ModelError
from models.base.geometry import Embedder
from models.speech.augment import apply_gain
from models.speech.dataset import trim_silence
from models.speech.synth import Rendition, SpeechCache, Voice
from models.wake.detector import Detector, WakeWord, stream_scores
from models.wake.evaluation import peak_score
from models.wake.metrics import rate_at_threshold
from models.wake.model import WakeWordModel, model_path, recordings_digest
from tests.conftest import EARSHOT, REPO, run_earshot
from tests.test_enroll_capture import best_correlation, session_audio
from tests.test_wake_cli import default_base, place, require_synthesizer, trained_seven

SR = SAMPLE_RATE_HZ
USER = Voice("espeak-ng", "en-gb-scotland+caleb")
ENROLL_TAKES = [(0.9, 40), (1.0, 45), (1.1, 50), (0.95, 42)]
"""(rate, pitch) of the user's takes given to `enroll --from`."""
HELD_OUT = [(1.0, 50), (0.92, 44), (1.08, 41), (0.97, 47), (1.03, 39), (0.9, 52)]
"""(rate, pitch) of the user's later utterances, never enrolled."""
MIC_TAKES = [(1.0, 44), (0.93, 48), (1.06, 41)]
OTHERS = [
    Voice("espeak-ng", name)
    for name in (
        "en-us", "en-us+f3", "en-us+f5", "en-gb-x-rp+m7", "en-029+m3", "en-us+Alex",
        "en-gb+klatt", "en-gb-x-gbcwmd+f2",
    )
]  # fmt: skip
TAKE_DBFS = -20.0
CONFIG = """\
wake_words:
  - name: seven
    phrase: seven
    threshold: 0.5
    verify_speaker: {verify}
detection:
  backend: numpy
models:
  directory: {directory}
"""


# ---- helpers -------------------------------------------------------------------------------------


def voice_clip(voice: Voice, rate: float = 1.0, pitch: int = 50) -> np.ndarray:
    """``seven`` said by ``voice``, trimmed, at `TAKE_DBFS` RMS."""
    clip = trim_silence(SpeechCache().get(Rendition("seven", voice, rate=rate, pitch=pitch)))
    return apply_gain(clip, TAKE_DBFS - 10 * np.log10(np.mean(np.square(clip))))


def take_file(path: Path, clip: np.ndarray, seed: int = 0) -> Path:
    """A recording as a user would make it: 0.5 s of faint noise around the phrase, 16-bit."""
    audio = place([], clip.size / SR + 1.0, seed=seed) * 0.3  # -60 dBFS
    audio[int(0.5 * SR) : int(0.5 * SR) + clip.size] += clip
    soundfile.write(path, audio, SR, subtype="PCM_16")
    return path


def write_float_wav(path: Path, audio: np.ndarray) -> Path:
    soundfile.write(path, audio, SR, subtype="FLOAT")
    return path


def xdg_env(root: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (this process's by default) with a private data and config home under ``root``.

    The cache stays the session's.
    """
    env = dict(os.environ if env is None else env)
    return env | {"XDG_DATA_HOME": str(root / "data"), "XDG_CONFIG_HOME": str(root / "config")}


def enrollment_root(root: Path) -> Path:
    return root / "data" / "earshot" / "enrollment"


def copy_enrollment(source_root: Path, root: Path) -> Path:
    """A copy of an enrollment tree (modes kept) for a test that changes or deletes it."""
    shutil.copytree(enrollment_root(source_root), enrollment_root(root))
    return enrollment_root(root) / "seven"


def detect_scores(audio_file: Path, config: Path, env: dict[str, str], out: Path) -> np.ndarray:
    """The per-hop scores `earshot detect --scores` wrote for one file."""
    result = run_earshot("detect", str(audio_file), "--config", str(config), "--scores", str(out),
                         env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    with out.open() as f:
        header, *rows = list(csv.reader(f))
    assert header == ["time_s", "seven"]
    return np.array([float(r[1]) for r in rows])


def offline(base: Embedder, model: WakeWordModel, audio: np.ndarray) -> np.ndarray:
    """The scores `earshot detect` gives with ``model`` (it appends `TRAILING_S` of silence)."""
    trailing = np.zeros(int(TRAILING_S * SR), np.float32)
    return stream_scores(base, [model.head], np.concatenate([audio, trailing]))[:, 0]


def assert_nothing_stored(root: Path) -> None:
    """No enrollment, and no staging folder, under ``root``'s data home."""
    folder = enrollment_root(root)
    left = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert left == [], f"left behind in {folder}: {left}"


# ---- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base() -> Embedder:
    """The base ``seven`` is trained on (the configs name none: the default)."""
    return default_base()


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> dict[bool, Path]:
    """Configs of ``seven`` (the session's trained model), without and with the speaker check."""
    models = trained_seven(tmp_path_factory).parent / "models"
    root = tmp_path_factory.mktemp("enroll-config")
    out = {}
    for verify in (False, True):
        path = root / f"verify-{str(verify).lower()}.yaml"
        path.write_text(CONFIG.format(verify=str(verify).lower(), directory=models))
        out[verify] = path
    return out


@pytest.fixture(scope="module")
def text_model(configs, base) -> WakeWordModel:
    settings = load_settings(configs[False])
    return WakeWordModel.load(
        model_path(settings.models.resolved_directory(), "seven"), base_sha256=base.sha256
    )


@pytest.fixture(scope="module")
def takes(tmp_path_factory) -> list[Path]:
    """Four files of the user saying "seven"."""
    require_synthesizer()
    folder = tmp_path_factory.mktemp("takes")
    return [
        take_file(folder / f"take{i}.wav", voice_clip(USER, rate, pitch), seed=i)
        for i, (rate, pitch) in enumerate(ENROLL_TAKES)
    ]


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory, configs, takes):
    """`earshot enroll seven --from` the four takes, once; (completed process, XDG root)."""
    root = tmp_path_factory.mktemp("enrolled")
    result = run_earshot(
        "enroll", "seven", "--config", str(configs[False]), "--from", *map(str, takes),
        env=xdg_env(root),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result, root


@pytest.fixture(scope="module")
def enrolled_model(enrolled, base) -> WakeWordModel:
    _, root = enrolled
    return WakeWordModel.load(enrollment_root(root) / "seven" / MODEL_FILE, base_sha256=base.sha256)


# ---- enroll --from, list, detect, forget ---------------------------------------------------------


def test_enroll_from_files_prints_before_and_after_and_stores_owner_only(
    enrolled, enrolled_model, text_model, takes, configs
):
    result, root = enrolled
    folder = enrollment_root(root) / "seven"
    assert "seven: fine-tuning on 4 takes" in result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout
    assert re.search(r"^seven: enrolled 4 takes in \d+\.\d s$", out, re.M), out
    assert re.search(r"^\s+text only\s+enrolled$", out, re.M), out

    # Before/after columns: thresholds, false-alarm rates and held-out scores, as measured.
    info = json.loads((folder / INFO_FILE).read_text())
    assert info["takes"] == 4 and info["phrase"] == "seven" and info["rejected_takes"] == []
    rows = {
        label.strip(): values
        for label, values in re.findall(r"^  (threshold|expected false alarms per hour|"
                                        r"held-out take score)(.*)$", out, re.M)
    }  # fmt: skip
    assert rows["threshold"].split() == ["0.5000", "0.5000"]
    wake = load_settings(configs[False]).wake_word("seven")
    rates = [float(v) for v in rows["expected false alarms per hour"].split()]
    for rate, model in zip(rates, (text_model, enrolled_model), strict=True):
        curve = model.false_alarm_curve(wake.smoothing_hops, wake.refractory_s)
        assert rate == pytest.approx(rate_at_threshold(curve, 0.5), rel=6e-3, abs=1e-3)  # 3 digits
    held = re.findall(r"(\d\.\d{3}) \((detected|missed)\)", rows["held-out take score"])
    assert len(held) == 2, rows["held-out take score"]
    for (score, verdict), stored in zip(
        held, (info["held_out_score_before"], info["held_out_score_after"]), strict=True
    ):
        assert float(score) == pytest.approx(stored, abs=5e-4)
        assert verdict == ("detected" if stored >= 0.5 else "missed")
    speaker = enrolled_model.speaker
    assert speaker is not None
    assert f"speaker check off (verify_speaker: false): threshold {speaker.threshold:.3f}" in out
    assert f"stored (owner-only) in {folder}" in out

    # The enrolled detector: fine-tuned from the text-only one on these takes, speaker included.
    assert text_model.manifest is not None
    assert enrolled_model.extra["text_model_sha256"] == text_model.manifest.sha256
    assert enrolled_model.extra["enrolled_takes"] == 4
    assert not np.array_equal(enrolled_model.head.w1, text_model.head.w1)
    assert len(speaker.templates) == 4

    # Owner-only: the folders 0700, every file 0600; the takes are trimmed copies, no room.
    for directory in (enrollment_root(root), folder):
        assert directory.stat().st_mode & 0o777 == 0o700, directory
    files = sorted(p.name for p in folder.iterdir())
    assert files == sorted([INFO_FILE, MODEL_FILE, *(f"take-{i}.wav" for i in range(1, 5))])
    for path in folder.iterdir():
        assert path.is_file() and path.stat().st_mode & 0o777 == 0o600, path
    for stored, original in zip(enrollment(enrollment_root(root), "seven").take_paths, takes,
                                strict=True):  # fmt: skip
        audio, given = load_audio(stored), load_audio(original)
        assert 0.2 < audio.size / SR < given.size / SR - 0.5  # trimmed, the noise around it gone
        assert best_correlation(given, audio) > 0.95

    listed = run_earshot("enroll", "--list", env=xdg_env(root))
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"^seven: 4 takes of 'seven', .* KiB in {re.escape(str(folder))}$",
                     listed.stdout, re.M), listed.stdout  # fmt: skip


def test_detect_uses_the_enrollment_until_it_is_forgotten(
    enrolled, enrolled_model, text_model, configs, base, tmp_path, monkeypatch
):
    _, source_root = enrolled
    root = tmp_path / "xdg"
    folder = copy_enrollment(source_root, root)
    env = xdg_env(root)
    (rate, pitch) = HELD_OUT[0]
    audio = place([(1.0, voice_clip(USER, rate, pitch))], 2.5)
    wav = write_float_wav(tmp_path / "held-out.wav", audio)
    with_enrolled = offline(base, enrolled_model, audio)
    with_text = offline(base, text_model, audio)
    assert np.abs(with_enrolled - with_text).max() > 0.01, "the heads score this take differently"

    scores = detect_scores(wav, configs[False], env, tmp_path / "enrolled.csv")
    np.testing.assert_allclose(scores, with_enrolled, atol=1e-4)
    wake = load_settings(configs[False]).wake_word("seven")
    assert enrolled_model.manifest is not None
    monkeypatch.setenv("XDG_DATA_HOME", env["XDG_DATA_HOME"])
    loaded = load_detector_model(wake, base.sha256, Path("unused"))
    assert loaded.manifest is not None and loaded.speaker is not None
    assert loaded.manifest.sha256 == enrolled_model.manifest.sha256

    forgot = run_earshot("forget", "seven", env=env)
    assert forgot.returncode == 0, forgot.stderr
    assert f"seven: deleted its enrollment ({folder})" in forgot.stdout
    assert not folder.exists()
    listed = run_earshot("enroll", "--list", env=env)
    assert listed.returncode == 0 and "seven" not in listed.stdout
    assert listed.stdout.startswith("no enrollments in ")

    scores = detect_scores(wav, configs[False], env, tmp_path / "text.csv")
    np.testing.assert_allclose(scores, with_text, atol=1e-4)
    fallback = load_detector_model(
        wake, base.sha256, load_settings(configs[False]).models.resolved_directory()
    )
    assert text_model.manifest is not None and fallback.manifest is not None
    assert fallback.speaker is None and fallback.manifest.sha256 == text_model.manifest.sha256

    for name in ("seven", "nosuch"):  # forgotten already, never enrolled
        again = run_earshot("forget", name, env=env)
        assert again.returncode == 2
        assert f"forget: no enrollment of {name!r}" in again.stderr
        assert "Traceback" not in again.stderr


# ---- bad input stores nothing --------------------------------------------------------------------


def bad_recordings(folder: Path, good: list[Path]) -> list[Path]:
    """Two usable takes and three that fail the checks: silence, clipped speech, steady noise."""
    rng = np.random.default_rng(3)
    clipped = np.clip(voice_clip(USER, *ENROLL_TAKES[2]) * 30, -1, 1)
    silence = write_float_wav(folder / "silence.wav", np.zeros(SR, np.float32))
    noise = write_float_wav(
        folder / "noise.wav", (0.1 * rng.standard_normal(SR)).astype(np.float32)
    )
    return [*good[:2], silence, take_file(folder / "clipped.wav", clipped), noise]


@pytest.mark.parametrize(
    ("case", "code"),
    [("unknown-name", 2), ("too-few-usable", 3), ("two-samples", 2), ("again-unenrolled", 2)],
)
def test_bad_input_exits_with_its_reason_and_stores_nothing(case, code, configs, takes, tmp_path):
    config = str(configs[False])
    if case == "unknown-name":
        args = ["enroll", "nosuch", "--config", config, "--from", *map(str, takes)]
        expected = ["'nosuch'"]
    elif case == "too-few-usable":
        files = bad_recordings(tmp_path, takes)
        args = ["enroll", "seven", "--config", config, "--from", *map(str, files)]
        expected = [
            "enrollment: 2 of 5 recordings are usable, need at least 3",
            f"{files[2]}: no speech heard",
            f"{files[3]}: clipped: ",
            f"{files[4]}: no speech heard",
        ]
    elif case == "two-samples":
        args = ["enroll", "seven", "--config", config, "--samples", "2"]
        expected = ["samples: got 2, expected at least 3"]
    else:
        args = ["enroll", "seven", "--config", config, "--again"]
        expected = ["enroll --again: 'seven' has no stored takes"]
    result = run_earshot(*args, env=xdg_env(tmp_path))
    assert result.returncode == code, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert_nothing_stored(tmp_path)


# ---- enroll --again ------------------------------------------------------------------------------


def test_enroll_again_fine_tunes_from_the_stored_takes(enrolled, configs, base, tmp_path):
    _, source_root = enrolled
    root = tmp_path / "xdg"
    folder = copy_enrollment(source_root, root)
    takes_before = {p.name: p.read_bytes() for p in folder.glob("take-*.wav")}
    model_before = (folder / MODEL_FILE).stat()
    created_before = json.loads((folder / INFO_FILE).read_text())["created"]

    result = run_earshot("enroll", "seven", "--config", str(configs[False]), "--again",
                         env=xdg_env(root))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "seven: fine-tuning on 4 takes" in result.stderr
    assert re.search(r"^seven: enrolled 4 takes in ", result.stdout, re.M)
    assert folder.stat().st_mode & 0o777 == 0o700
    assert {p.name: p.read_bytes() for p in folder.glob("take-*.wav")} == takes_before
    model_after = (folder / MODEL_FILE).stat()
    assert model_after.st_ino != model_before.st_ino  # a new file, not the copied one
    assert model_after.st_mode & 0o777 == 0o600
    assert json.loads((folder / INFO_FILE).read_text())["created"] > created_before
    # Trained on the stored takes, as they were read back from the folder.
    model = WakeWordModel.load(folder / MODEL_FILE, base_sha256=base.sha256)
    stored = enrollment(enrollment_root(root), "seven")
    assert stored is not None
    assert model.extra["takes_sha256"] == recordings_digest(stored.takes())
    assert model.speaker is not None and len(model.speaker.templates) == 4
    assert not list(enrollment_root(root).glob(".seven.*"))  # no staging or old folder left


# ---- the microphone, through PulseAudio ----------------------------------------------------------


@pytest.mark.pulse
def test_enroll_from_the_microphone(pulse_server, configs, tmp_path):
    require_synthesizer()
    played = [voice_clip(USER, rate, pitch) for rate, pitch in MIC_TAKES]
    wav = tmp_path / "session.wav"
    soundfile.write(wav, session_audio(played), SR, subtype="PCM_16")
    env = xdg_env(tmp_path, pulse_server.env)
    command = [
        *EARSHOT, "enroll", "seven", "--config", str(configs[False]), "--samples", "3",
        "--room-seconds", "2", "--countdown", "0", "--device", "pulse",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    prompted = threading.Event()

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "stay quiet" in line:
                prompted.set()
        prompted.set()  # it ended without the prompt: the assertion below shows why

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert prompted.wait(timeout=60), "no room prompt within 60 s"
        assert process.poll() is None, "".join(lines)
        pulse_server.play(wav)
        code = process.wait(timeout=90)
        stdout = process.stdout.read() if process.stdout else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=5)
    stderr = "".join(lines)
    assert code == 0, stderr[-3000:]
    assert "Recording the room for 2 s: please stay quiet." in stderr
    assert 'Take 3 of 3: say "seven"' in stderr
    assert stderr.count("  ok (") == 3, stderr
    assert re.search(r"^seven: enrolled 3 takes in ", stdout, re.M), stdout

    stored = enrollment(enrollment_root(tmp_path), "seven")
    assert stored is not None
    assert [p.name for p in stored.take_paths] == ["take-1.wav", "take-2.wav", "take-3.wav"]
    for path, reference in zip(stored.take_paths, played, strict=True):
        correlation = best_correlation(load_audio(path), reference)
        assert correlation > 0.9, f"{path.name}: normalized cross-correlation {correlation:.3f}"
    room = load_audio(stored.directory / ROOM_FILE)
    assert room.size == 2 * SR
    assert json.loads((stored.directory / INFO_FILE).read_text())["takes"] == 3
    for path in stored.directory.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path


# ---- the speaker check ---------------------------------------------------------------------------


def detections(base: Embedder, wake: WakeWord, audio: np.ndarray):
    detector = Detector(base, [wake], backend="numpy")
    found = []
    for i in range(0, audio.size, 1280):
        found += detector.push(audio[i : i + 1280])
    return found


def test_verify_speaker_accepts_the_enrolled_voice_more_than_others(enrolled_model, base):
    speaker = enrolled_model.speaker
    assert speaker is not None
    user = [voice_clip(USER, rate, pitch) for rate, pitch in HELD_OUT]
    others = [voice_clip(voice) for voice in OTHERS]
    # A threshold well below every clip's peak: the head fires on all, the speaker check decides.
    peaks = [peak_score(base, enrolled_model.head, c, smoothing_hops=2) for c in user + others]
    threshold = 0.5 * min(peaks)
    assert threshold > 0.1, f"peaks {peaks}"
    plain = WakeWord(enrolled_model, threshold)
    checked = WakeWord(enrolled_model, threshold, verify_speaker=True)

    accepted = {}
    for label, clips in (("user", user), ("others", others)):
        hits = 0
        for seed, clip in enumerate(clips):
            audio = place([(1.0, clip)], 3.0, seed=seed)
            assert detections(base, plain, audio), f"{label} {seed}: the head did not fire"
            found = detections(base, checked, audio)
            for d in found:
                assert d.speaker_score is not None and d.speaker_score >= speaker.threshold
                assert d.score >= threshold
            hits += bool(found)
        accepted[label] = hits / len(clips)
    assert accepted["user"] >= 0.66, accepted
    assert accepted["others"] <= 0.25, accepted
    assert accepted["user"] - accepted["others"] >= 0.5, accepted


def test_verify_speaker_needs_an_enrolled_model(text_model):
    assert WakeWord(text_model, 0.5).verify_speaker is False
    with pytest.raises(ModelError, match=r"verify_speaker needs an enrolled model.*earshot enroll "
                                         r"seven"):  # fmt: skip
        WakeWord(text_model, 0.5, verify_speaker=True)


def test_detect_with_verify_speaker(enrolled, enrolled_model, configs, tmp_path):
    """Without an enrollment detect refuses to run; with one only the user's phrase fires."""
    other = voice_clip(OTHERS[0])
    user_clip = voice_clip(USER, *HELD_OUT[1])
    audio = place([(1.0, user_clip), (4.0, other)], 6.0)
    wav = write_float_wav(tmp_path / "two-voices.wav", audio)

    refused = run_earshot("detect", str(wav), "--config", str(configs[True]),
                          env=xdg_env(tmp_path))  # fmt: skip
    assert refused.returncode == 5
    assert (
        "seven: verify_speaker is on, but there is no usable enrollment; run "
        "`earshot enroll seven`" in refused.stderr
    )
    assert "Traceback" not in refused.stderr and refused.stdout == ""

    _, root = enrolled
    spans = {"user": (1.0, 1.0 + user_clip.size / SR), "other": (4.0, 4.0 + other.size / SR)}

    def fired(config: Path) -> dict[str, list[dict]]:
        result = run_earshot("detect", str(wav), "--config", str(config), env=xdg_env(root))
        assert result.returncode == 0, result.stderr
        found = [json.loads(line) for line in result.stdout.splitlines()]
        return {
            who: [d for d in found if start - 0.1 <= d["time_s"] <= end + 1.0]
            for who, (start, end) in spans.items()
        }

    plain = fired(configs[False])
    assert plain["user"] and plain["other"], "both voices say the phrase; the head hears both"
    assert all("speaker_score" not in d for d in plain["user"] + plain["other"])
    checked = fired(configs[True])
    assert checked["other"] == [], checked
    assert len(checked["user"]) == 1, checked
    assert enrolled_model.speaker is not None
    assert checked["user"][0]["speaker_score"] >= round(enrolled_model.speaker.threshold, 4)
