"""``earshot run``: the always-on agent.

One asyncio loop, one named task per stage, joined by bounded queues::

    capture --[audio]--> detect --[analyses]--> decide --[outbox]--> forward
    (PortAudio thread      (inference on one      (the state        (the privacy gate's
     queues blocks)         worker thread)          machine)          upload threads)

*capture* (`agent.capture.stage`) never waits: when the daemon falls behind, the oldest audio block
is dropped. *detect* runs the wake-word detector and the voice-activity detector on a worker thread
(`agent.daemon.analysis`), so the loop stays responsive; the capture hands it the blocks directly,
and while the daemon only listens their analyses reach the loop a few at a time, so the loop wakes
a few times a second, not once per block. *decide* owns the state
(`agent.daemon.session.State`): a wake word opens a `CommandSession`, whose end is judged from voice
activity; the command is then matched against the local commands (their shell actions:
`agent.daemon.actions`) or sent on. *forward* (`agent.daemon.outbox`) is the only stage that talks
to the privacy gate (`agent.egress.gate`), which alone sends anything over the network and audits
every upload.

Signals: SIGTERM and SIGINT stop within 2 s (SIGINT sets `Daemon.interrupted`); SIGHUP reloads
the config file and models, keeping the old ones when the new config is invalid. The control
socket (`agent.control.server`) answers `earshot status`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from agent.capture.sources import AudioSource
from agent.capture.stage import AudioQueue, Capture, OpenLive
from agent.control.events import EventBus, withheld_variables
from agent.control.procstat import proc_status
from agent.control.server import ControlServer
from agent.daemon.actions import ShellActions, save_debug_audio
from agent.daemon.analysis import Analysis, DetectStage
from agent.daemon.command_capture import Cut, Outcome
from agent.daemon.detectors import Models, load_models
from agent.daemon.feedback import FALSE_ALARM_S, FeedbackMemory
from agent.daemon.local_commands import Match
from agent.daemon.outbox import Outbox
from agent.daemon.session import CommandSession, RecentAudio, State
from agent.egress.audit import AuditLog
from agent.egress.gate import PrivacyGate, UploadRequest
from agent.settings import Settings, load_settings
from kernels.errors import EarshotError
from models.wake.detector import Detection

_LOGGER = logging.getLogger(__name__)

STOP_WITHIN_S = 1.5
"""Budget for shutting down after SIGTERM (the promise is 2 s)."""
RECENT_AUDIO_S = 3.0
"""Audio kept for the start of a command: the detector's decision delay plus the pre-roll."""


class Daemon:
    """The agent: runs until stopped (or until a recording ends).

    Parameters
    ----------
    models : Models
        The loaded config and models.
    config_path : Path, optional
        Reread on SIGHUP.
    open_live : callable, optional
        Opens the microphone in push mode (see `agent.capture.stage`); or give ``recording``.
    recording : AudioSource, optional
        A file or stream to process instead of a microphone.
    bus : EventBus, optional
        Where events go (built from the config by default).
    max_audio_s : float, optional
        Stop after this much audio, as if the recording ended there.
    """

    def __init__(
        self,
        models: Models,
        *,
        config_path: Path | None = None,
        open_live: OpenLive | None = None,
        recording: AudioSource | None = None,
        bus: EventBus | None = None,
        max_audio_s: float | None = None,
    ):
        self.models = models
        self.max_audio_s = max_audio_s
        self.config_path = config_path
        settings = models.settings
        self.bus = bus or EventBus(settings.events)
        self.bus.withhold(withheld_variables(settings.endpoint))  # no child sees the token
        self.audio = AudioQueue(settings.audio.queue_blocks)
        self.capture = Capture(self.audio, self._report, open_live=open_live, recording=recording)
        self.gate = self._make_gate(settings)
        self.state = State.LISTENING
        self.session: CommandSession | None = None
        self.counts: Counter[str] = Counter()
        self.level = -120.0
        self._vad_history: deque[tuple[int, np.ndarray]] = deque(maxlen=400)
        self._recent = RecentAudio(self._recent_s(settings))
        self._feedback = FeedbackMemory(self._recent)
        self._outbox = Outbox()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="earshot-infer")
        self._detect = DetectStage(
            self.audio, self._worker, models.detector, max_audio_s=max_audio_s
        )
        self._actions = ShellActions()
        self._started = time.monotonic()
        self._cpu = (time.monotonic(), time.process_time())
        self._stopping: asyncio.Event | None = None
        self._reloads: set[asyncio.Task[dict[str, object]]] = set()  # SIGHUP's, until done
        self.interrupted = False  # SIGINT stopped it: ``earshot run`` exits 130
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def stream_s(self) -> float:
        """Seconds of audio the detect stage has taken so far: the stream's clock."""
        return self._detect.stream_s

    # ---- life cycle ----------------------------------------------------------------------------

    async def run(self) -> int:
        """Run every stage until SIGTERM/SIGINT, or until a recording has been processed."""
        loop = self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop, signum)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        control = ControlServer(
            self.models.settings.events.resolved_socket(), self.bus, self.status,
            reload=self.reload, feedback=self.feedback,
        )  # fmt: skip
        await control.start()
        stages = {
            "capture": self._capture_stage(),
            "detect": self._detect.run(),
            "decide": self._decide_stage(),
            "forward": self._outbox.forward(lambda: self.gate),
            "status": self._status_stage(),
        }
        tasks = [asyncio.create_task(c, name=n) for n, c in stages.items()]
        self._emit_state()
        _LOGGER.info(
            "listening for %s on %s", [w.name for w in self.models.detector.wake_words],
            self.capture.name,
        )  # fmt: skip
        stop = asyncio.create_task(self._stopping.wait(), name="stop")
        ended = asyncio.create_task(self._outbox.ended.wait(), name="ended")
        waiting: set[asyncio.Task[Any]] = {stop, ended, *tasks}
        failed: list[asyncio.Task[Any]] = []
        while not failed and stop in waiting and ended in waiting:
            done, waiting = await asyncio.wait(waiting, return_when="FIRST_COMPLETED")
            failed = [t for t in done if t in tasks and not t.cancelled() and t.exception()]
        if ended.done():
            await self._drain_uploads()
        await self._shutdown([*tasks, stop, ended], control)
        if failed:
            raise failed[0].exception()  # type: ignore[misc]
        return 0

    def _stop(self, signum: signal.Signals) -> None:
        """Begin stopping on SIGTERM or SIGINT; SIGINT also marks the run `interrupted`."""
        self.interrupted |= signum == signal.SIGINT
        assert self._stopping is not None
        self._stopping.set()

    async def _shutdown(self, tasks: list[asyncio.Task[Any]], control: ControlServer) -> None:
        deadline = time.monotonic() + STOP_WITHIN_S
        self.capture.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(self.gate.close, max(0.1, deadline - time.monotonic()))
        await control.close()
        self.bus.close(timeout_s=max(0.1, deadline - time.monotonic()))
        self._worker.shutdown(wait=False, cancel_futures=True)
        _LOGGER.info("stopped after %.1f s of audio", self.stream_s)

    async def _drain_uploads(self) -> None:
        """At the end of a recording: let uploads finish, within their timeouts and retries.

        SIGTERM or SIGINT ends the wait at once: the promise to stop within 2 s holds here too.
        """
        assert self._stopping is not None
        endpoint = self.models.settings.endpoint
        wait_s = (endpoint.timeout_s + 2.0) * (endpoint.retries + 1)
        if self.gate.in_flight:
            _LOGGER.info("end of input: waiting up to %.0f s for %d upload(s)",
                         wait_s, self.gate.in_flight)  # fmt: skip
        deadline = time.monotonic() + wait_s
        while self.gate.in_flight and time.monotonic() < deadline:
            if self._stopping.is_set():
                break
            await asyncio.sleep(0.05)

    def _reload_on_signal(self) -> None:
        """SIGHUP: `reload` in a task, referenced until it is done (the loop holds it weakly)."""
        task = asyncio.ensure_future(self.reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    def _refuse_reload(self, problem: str) -> dict[str, object]:
        """Keep the running config and models: log, emit an ``error`` event, answer why."""
        _LOGGER.error("reload refused, the running config is kept: %s", problem)
        self._report("error", error=f"reload refused: {problem}")
        return {"ok": False, "error": problem}

    async def reload(self) -> dict[str, object]:
        """Reread the config and models; keep the running ones if anything is wrong."""
        if self.config_path is None:
            return {"ok": False, "error": "no config file to reload"}
        _LOGGER.info("reloading %s", self.config_path)
        try:
            settings = await asyncio.to_thread(load_settings, self.config_path)
            models = await asyncio.to_thread(load_models, settings)
            gate = self._make_gate(settings)
        except EarshotError as err:
            return self._refuse_reload(str(err))
        except Exception as err:  # a failed reload must never take the running agent down
            _LOGGER.exception("reload failed")
            return self._refuse_reload(f"{type(err).__name__}: {err}")
        old_gate, self.gate = self.gate, gate
        self.models = models
        self._recent.seconds = self._recent_s(settings)
        self._detect.use(models.detector)
        self.bus.settings = settings.events
        self.bus.withhold(withheld_variables(settings.endpoint))
        await asyncio.to_thread(old_gate.close, STOP_WITHIN_S)
        _LOGGER.info("reloaded: wake words %s", [w.name for w in models.detector.wake_words])
        return {"ok": True}

    @staticmethod
    def _recent_s(settings: Settings) -> float:
        """Seconds of recent audio kept in memory (more when learning may keep a miss)."""
        command = RECENT_AUDIO_S + settings.command.pre_roll_s
        learning = settings.learning
        return max(command, sum(FALSE_ALARM_S), learning.missed_s if learning.enabled else 0.0)

    def _make_gate(self, settings: Settings) -> PrivacyGate:
        audit = AuditLog(settings.privacy.resolved_audit_log())
        return PrivacyGate(
            settings.endpoint, audit, on_event=self._report_threadsafe,
            pre_roll_s=settings.command.pre_roll_s,
            max_audio_s=settings.command.max_s + RECENT_AUDIO_S,
        )  # fmt: skip

    # ---- stages --------------------------------------------------------------------------------

    async def _capture_stage(self) -> None:
        await self.capture.run()

    async def _decide_stage(self) -> None:
        while True:
            analysis = await self._detect.get(busy=self.session is not None)
            if analysis is None:
                if self.session is not None:  # the recording ended mid-command
                    await self._finish(self.session, self.state is State.CAPTURING, ended=True)
                await self._outbox.end()
                return
            self.level = analysis.level_dbfs
            self._recent.add(analysis.start_s, analysis.block)
            self._vad_history.append((analysis.vad_first_frame, analysis.vad_flags))
            if self.session is None:
                for detection in analysis.detections:
                    self._wake(detection)
                    break
            else:
                self.session.add_audio(analysis.start_s, analysis.block)
                await self._advance(analysis)

    async def _status_stage(self) -> None:
        """A status line in the log every ``logging.status_interval_s``."""
        while True:
            await asyncio.sleep(self.models.settings.logging.status_interval_s)
            s = self.status()
            _LOGGER.info(
                "%s; %.0f s of audio, level %.0f dBFS, CPU %.1f %%, %.0f MB; %s",
                s["state"], s["audio_s"], s["level_dbfs"], s["cpu_percent"], s["rss_mb"],
                ", ".join(f"{k} {v}" for k, v in self.counts.items()) or "no wake words yet",
            )  # fmt: skip

    # ---- the state machine ---------------------------------------------------------------------

    def _wake(self, detection: Detection) -> None:
        self.counts[f"wake:{detection.name}"] += 1
        self._report("wake", **detection.as_dict())
        settings = self.models.settings.command
        if self.models.settings.learning.enabled:
            self._feedback.on_wake(detection)
        history = self._recent.since(detection.end_s - settings.pre_roll_s)
        self.session = CommandSession(detection, settings, history)
        for first_frame, flags in self._vad_history:
            self.session.push_flags(first_frame, flags)
        self._set_state(self.session.state)

    async def _advance(self, analysis: Analysis) -> None:
        session = self.session
        assert session is not None
        cut = session.push_flags(analysis.vad_first_frame, analysis.vad_flags)
        streaming = self.gate.enabled and not self.models.matcher
        if streaming and session.endpointer.started and session.state is State.CAPTURING:
            if self.state is not State.CAPTURING:
                await self._open_upload(session, session.blocks)
            else:
                await self._outbox.audio(analysis.block, analysis.start_s)
        if self.state is not session.state and cut is None:
            self._set_state(session.state)
        if cut is not None:
            await self._finish(session, streaming)

    async def _open_upload(
        self, session: CommandSession, blocks: list[tuple[float, np.ndarray]]
    ) -> None:
        d = session.detection
        await self._outbox.open(UploadRequest(d.name, d.score, d.end_s, time.time()), blocks)
        self._set_state(State.CAPTURING)

    async def _finish(self, session: CommandSession, streamed: bool, ended: bool = False) -> None:
        if ended and session.cut is None:
            outcome = Outcome.ENDED if session.endpointer.started else Outcome.NO_SPEECH
            session.cut = Cut(outcome, session.endpointer.start_s, self.stream_s)
        cut = session.cut
        assert cut is not None
        self.session = None
        details = {
            "wake_word": session.detection.name, "score": round(session.detection.score, 4),
            "outcome": cut.outcome.value, "seconds": round(cut.end_s - cut.start_s, 3),
        }  # fmt: skip
        if cut.outcome is Outcome.NO_SPEECH:
            self._report("command", **details)
            self._set_state(State.LISTENING)
            return
        if streamed:
            await self._outbox.finish()
            self._report("command", **details, action="forward")
            self._set_state(State.FORWARDING)
            return
        utterance = session.utterance(cut.end_s)
        self._save_debug_audio(utterance)
        match = await self._match(utterance)
        if match is not None and match.command.action != "forward":
            self._set_state(State.HANDLING)
            self._handle_locally(match, session, details)
            self._set_state(State.LISTENING)
            return
        if match is not None:
            details |= {"command": match.command.name, "command_score": round(match.score, 4)}
        self._report("command", **details, action="forward")
        if self.gate.enabled:
            await self._open_upload(session, [(session.audio_start_s, utterance)])
            await self._outbox.finish()
            self._set_state(State.FORWARDING)
        else:
            _LOGGER.info("no endpoint configured: the command was not sent anywhere")
            self._set_state(State.LISTENING)

    async def _match(self, utterance: np.ndarray) -> Match | None:
        matcher = self.models.matcher
        if not matcher:
            return None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, matcher.match, utterance)

    def _handle_locally(self, match: Match, session: CommandSession, details: dict) -> None:
        command = match.command
        self.counts[f"command:{command.name}"] += 1
        event = self._report(
            "command", **details, command=command.name, command_score=round(match.score, 4),
            action=command.action,
        )  # fmt: skip
        if command.action == "shell" and command.run is not None:
            _LOGGER.info("running %r", command.run)
            self._actions.start(command.run, event, self.bus.withheld_env)

    def _save_debug_audio(self, utterance: np.ndarray) -> None:
        directory = self.models.settings.privacy.debug_audio_dir
        if directory is None:
            return
        path = save_debug_audio(utterance, Path(directory), self.counts.total())
        _LOGGER.info("debug: saved the command to %s", path)

    # ---- learning ------------------------------------------------------------------------------

    async def feedback(self, request: dict[str, object]) -> dict[str, object]:
        """Keep the last detection's audio (a false alarm) or the last seconds (a miss).

        The control socket's ``feedback`` command (`agent.daemon.feedback`,
        `agent.learning.feedback`). With learning off nothing is kept and the reply says so.
        """
        from agent.learning.feedback import FeedbackStore

        settings = self.models.settings
        kind, name, audio, details = self._feedback.clip(
            request.get("kind"), request.get("wake_word"), settings
        )
        clip = await asyncio.to_thread(
            FeedbackStore(settings.learning).keep, kind, name, audio, **details
        )
        _LOGGER.info("kept %s for %s: %s (%.1f s)", kind, name, clip.audio_path, clip.seconds)
        return {"kept": str(clip.audio_path), "kind": kind, "wake_word": name,
                "seconds": clip.seconds}  # fmt: skip

    # ---- events and status ---------------------------------------------------------------------

    def _set_state(self, state: State) -> None:
        if state is not self.state:
            self.state = state
            self._emit_state()

    def _emit_state(self) -> None:
        self._report("state", state=self.state.value)

    def _report(self, kind: str, **fields: object) -> dict[str, object]:
        event = self.bus.emit(kind, **fields)
        if kind == "upload":
            self.counts[f"upload:{fields.get('result')}"] += 1
            if self.state is State.FORWARDING:
                self._set_state(State.LISTENING)
        return event

    def _report_threadsafe(self, kind: str, fields: dict[str, object]) -> None:
        """`_report` from another thread (the privacy gate's upload threads)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(lambda: self._report(kind, **fields))

    def status(self) -> dict[str, object]:
        """What `earshot status` shows."""
        now, cpu = time.monotonic(), time.process_time()
        last_wall, last_cpu = self._cpu
        self._cpu = (now, cpu)
        cpu_percent = 100.0 * (cpu - last_cpu) / max(now - last_wall, 1e-6)
        return {
            "state": self.state.value,
            "uptime_s": round(now - self._started, 1),
            "audio_s": round(self.stream_s, 1),
            "source": self.capture.name,
            "microphone_lost": self.capture.lost,
            "level_dbfs": round(self.level, 1),
            "cpu_percent": round(cpu_percent, 1),
            "rss_mb": round((proc_status() or {}).get("VmRSS", 0) / 1024, 1),
            "wake_words": [w.name for w in self.models.detector.wake_words],
            "detectors": {
                w.name: w.model.manifest.sha256[:12] if w.model.manifest else None
                for w in self.models.detector.wake_words
            },  # fmt: skip
            "commands": [c.name for c, _ in self.models.matcher.commands],
            "counts": dict(self.counts),
            "dropped_blocks": self.audio.dropped,
            "uploads_in_flight": self.gate.in_flight,
            "endpoint": self.models.settings.endpoint.url,
        }
