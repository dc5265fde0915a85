"""Secure aggregation (SecAgg+) of the fleet's heads: the coordinator reads only each round's sum.

Flower 1.42 offers SecAgg+ only through its legacy API. On the coordinator, `run_secure` runs
Flower's ``DefaultWorkflow`` with a ``SecAggPlusWorkflow`` per round on a ``LegacyContext`` whose
strategy is a legacy ``FedAvg`` (`SecureFedAvg`). Each round is four exchanges with every device:
it sends two public keys, then its secrets' shares encrypted for the others, then its update
(the head it trained minus the head it received) weighted by its example count (at most
`MAX_WEIGHT`) and quantized (`CLIPPING_RANGE`, `QUANTIZATION_RANGE`), hidden under masks that
cancel only in the sum of all devices, then the shares that remove them. The coordinator thus
reads the round's weighted average update, never one device's, and adds it to the round's heads;
it still sees each device's example count and metrics. Every round is written through
`agent.fleet.coordinator.RoundWriter` as on the plain path, and what reached the coordinator per
round is written to ``replies/replies-K.json`` (`RecordingGrid`): the masked vectors' shapes and
types, and the other exchanges' contents by kind.

On a device, `secure_aggregation_mod` hands SecAgg+ messages to Flower's ``secaggplus_mod`` and
lets every other message through; the train message then comes in the legacy format
(``fitins.*``, read by `fit_instructions`) and the update goes back as a legacy ``fitres``
(`fit_reply`), which the mod masks before it leaves.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import numpy as np
from flwr.app import Context, Message
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import (
    Code,
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    Status,
    bytes_to_ndarray,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.serverapp import Grid

from agent.fleet.coordinator import RoundWriter

SHARES = 1.0
"""Every device of a round holds a share of every other device's secrets ..."""
THRESHOLD = 0.5
"""... and half of the shares (at least 2) rebuild a secret: a round survives devices dropping
out as long as that many stay, and the coordinator could unmask one device's update only with
that many devices' help."""
MAX_WEIGHT = 100
"""A device's weight (its example count) is capped here: SecAgg+ scales each update by
weight / MAX_WEIGHT before quantizing, so a larger cap costs precision."""
CLIPPING_RANGE = 8.0
"""Weighted update values are clipped to [-8, 8] before quantization. Updates, not heads, are
summed: a head's values reach beyond 8 (the first layer's bias), a round's change stays far
inside."""
QUANTIZATION_RANGE = 2**22
"""Levels of the quantization: stochastic rounding to a step of 2 * 8 / 2**22 (3.8e-6) of the
weighted value, unbiased; the average is off by at most devices * step / sum(weight / MAX_WEIGHT)
per value. Up to 1023 devices a round fit in `MODULUS_RANGE`."""
MODULUS_RANGE = 2**32
"""The masks' modulus (Flower's default and maximum)."""
MASKED = (
    f"SecAgg+: this device's update reached the coordinator only quantized and masked "
    f"({Key.MASKED_PARAMETERS}); the coordinator could read only the sum of the round's updates"
)
"""What each device's record in ``replies-K.json`` says of its head."""
NAMES = "names"
"""The fit configuration's key for the arrays' names (legacy parameters carry none)."""


def run_secure(
    grid: Grid,
    context: Context,
    initial: dict[str, np.ndarray],
    writer: RoundWriter,
    replies: Path,
    *,
    rounds: int,
    timeout_s: float,
) -> None:
    """``rounds`` rounds of FedAvg under SecAgg+ from the ``initial`` arrays, written by ``writer``.

    What reached the coordinator in each round is written to ``replies/replies-K.json``.
    """
    strategy = SecureFedAvg(initial, writer.min_devices, rounds)
    protocol = SecAggPlusWorkflow(
        SHARES, THRESHOLD, max_weight=MAX_WEIGHT, clipping_range=CLIPPING_RANGE,
        quantization_range=QUANTIZATION_RANGE, modulus_range=MODULUS_RANGE, timeout=timeout_s,
    )  # fmt: skip
    legacy = LegacyContext(
        context, config=ServerConfig(num_rounds=rounds, round_timeout=timeout_s), strategy=strategy
    )
    DefaultWorkflow(fit_workflow=SecureRound(protocol, strategy, writer, replies))(grid, legacy)


def weighted_mean(metrics: list[tuple[int, dict[str, Scalar]]]) -> dict[str, Scalar]:
    """Each numeric metric averaged over the devices, weighted by their example counts."""
    total = sum(n for n, _ in metrics)
    keys = {k for _, m in metrics for k, v in m.items() if isinstance(v, int | float)}
    return {k: sum(n * float(cast(float, m.get(k, 0.0))) for n, m in metrics) / total for k in keys}


class SecureFedAvg(FedAvg):
    """Flower's legacy FedAvg over every device, for SecAgg+: it gets the round's average only.

    SecAgg+ hands `aggregate_fit` each device's count and metrics, with the unmasked average
    update in place of every device's parameters; the round's heads are the heads sent plus that
    average. A round with fewer than ``min_devices`` contributions is not aggregated; an
    aggregated one is kept in `result` for `SecureRound` to write.
    """

    def __init__(self, initial: dict[str, np.ndarray], min_devices: int, rounds: int) -> None:
        self.names = list(initial)
        self.min_devices = min_devices
        self.sent: list[np.ndarray] = []
        self.result: tuple[dict[str, np.ndarray], dict[str, Scalar]] | None = None
        names = json.dumps(self.names)
        super().__init__(
            fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=min_devices,
            min_evaluate_clients=0, min_available_clients=min_devices,
            initial_parameters=ndarrays_to_parameters([initial[n] for n in self.names]),
            on_fit_config_fn=lambda r: {"server-round": r, "rounds": rounds, NAMES: names},
            fit_metrics_aggregation_fn=weighted_mean,
        )  # fmt: skip

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Flower's, keeping the heads sent: the average update is added to them."""
        self.sent = parameters_to_ndarrays(parameters)
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """The heads sent plus the average update, when at least ``min_devices`` contributed."""
        self.result = None
        if len(results) < self.min_devices:
            return None, {}
        average, metrics = super().aggregate_fit(server_round, results, failures)
        if average is None:
            return None, metrics
        updates = parameters_to_ndarrays(average)
        heads = [np.asarray(h + u, np.float32) for h, u in zip(self.sent, updates, strict=True)]
        self.result = (dict(zip(self.names, heads, strict=True)), metrics)
        return ndarrays_to_parameters(heads), metrics


class SecureRound:
    """One round's fit workflow: SecAgg+, recorded, then the round written."""

    def __init__(
        self, protocol: SecAggPlusWorkflow, strategy: SecureFedAvg, writer: RoundWriter, out: Path
    ) -> None:
        self.protocol, self.strategy, self.writer, self.out = protocol, strategy, writer, out

    def __call__(self, grid: Grid, context: Context) -> None:
        """Run the round's four exchanges; write what reached the coordinator, and the round."""
        config = context.state.config_records[MAIN_CONFIGS_RECORD]
        number = int(cast(int, config[WorkflowKey.CURRENT_ROUND]))
        self.strategy.result = None
        recording = RecordingGrid(grid)
        self.protocol(cast(Grid, recording), context)
        seen = recording.devices()
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"replies-{number}.json").write_text(json.dumps(seen, indent=2))
        contributors = sum("error" not in s for s in seen)
        arrays, metrics = self.strategy.result or (None, None)
        self.writer.write(number, arrays, contributors, dict(metrics or {}))


class RecordingGrid:
    """A Grid that describes every reply of the SecAgg+ exchanges sent through it, by stage.

    SecAgg+ uses only `send_and_receive`; everything else is the wrapped grid's.
    """

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.stages: dict[str, list[dict[str, Any]]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.grid, name)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """The wrapped grid's, each reply described under the messages' SecAgg+ stage."""
        messages = list(messages)
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        if messages:
            stage = str(messages[0].content.config_records[RECORD_KEY_CONFIGS][Key.STAGE])
            self.stages.setdefault(stage, []).extend(describe(r) for r in replies)
        return replies

    def devices(self) -> list[dict[str, Any]]:
        """Per device: its masked vector's reply (or why none came), and its other replies."""
        masked = {e["node"]: e for e in self.stages.get(Stage.COLLECT_MASKED_VECTORS, [])}
        nodes = dict.fromkeys(e["node"] for entries in self.stages.values() for e in entries)
        return [self._device(node, masked.get(node)) for node in nodes]

    def _device(self, node: str, masked: dict[str, Any] | None) -> dict[str, Any]:
        missing = {"node": node, "error": "no masked vector of this device reached the coordinator"}
        others = {
            stage: entry
            for stage, entries in self.stages.items()
            if stage != Stage.COLLECT_MASKED_VECTORS
            for entry in entries
            if entry["node"] == node
        }
        entry = missing if masked is None else {**masked, "masked": MASKED}
        return {**entry, "protocol": others}


def describe(message: Message) -> dict[str, Any]:
    """What the coordinator received in one SecAgg+ reply, by kind (no values)."""
    node = str(message.metadata.src_node_id)
    if message.has_error():
        return {"node": node, "error": message.error.reason}
    content = message.content
    return {
        "node": node,
        "arrays": {
            name: {k: {"shape": list(a.shape), "dtype": str(a.dtype)} for k, a in record.items()}
            for name, record in content.array_records.items()
        },
        "metrics": {name: sorted(record.keys()) for name, record in content.metric_records.items()},
        "configs": {
            name: {k: _kind(k, v) for k, v in record.items()}
            for name, record in content.config_records.items()
        },
    }


def _kind(key: str, value: Any) -> Any:
    """A configuration value by kind: masked arrays' shapes and types, else type and size."""
    if key == Key.MASKED_PARAMETERS:
        arrays = [bytes_to_ndarray(b) for b in value]
        return [{"shape": list(a.shape), "dtype": str(a.dtype)} for a in arrays]
    if isinstance(value, bytes):
        return f"bytes[{len(value)}]"
    if isinstance(value, list):
        kinds = sorted({type(v).__name__ for v in value})
        return f"list[{'|'.join(kinds)}] of {len(value)}"
    return type(value).__name__


def secure_aggregation_mod(message: Message, context: Context, call_next: ClientAppCallable) -> Any:
    """Flower's ``secaggplus_mod`` for SecAgg+ messages; any other passes straight through.

    Flower's mod takes every train message for SecAgg+'s (it fails on the plain path's).
    """
    if RECORD_KEY_CONFIGS not in message.content.config_records:
        return call_next(message, context)
    return secaggplus_mod(message, context, call_next)


def is_secure(message: Message) -> bool:
    """Whether a train message is SecAgg+'s (legacy ``fitins``) rather than the plain path's."""
    return "fitins.parameters" in message.content.array_records


def fit_instructions(message: Message) -> tuple[dict[str, np.ndarray], dict[str, Scalar]]:
    """The named arrays and the configuration of a SecAgg+ train message."""
    fitins = compat.recorddict_to_fitins(message.content, keep_input=True)
    names = json.loads(str(fitins.config[NAMES]))
    arrays = parameters_to_ndarrays(fitins.parameters)
    return dict(zip(names, arrays, strict=True)), fitins.config


def fit_reply(
    message: Message,
    sent: dict[str, np.ndarray],
    received: dict[str, np.ndarray],
    examples: int,
    metrics: dict[str, float],
) -> Message:
    """The legacy ``fitres`` reply SecAgg+ masks: the update, and its weight.

    The update is ``sent`` minus ``received``, array by array in the order received; the weight
    is the example count, capped at `MAX_WEIGHT`.
    """
    update = [sent[name].astype(np.float64) - value for name, value in received.items()]
    fitres = FitRes(
        status=Status(Code.OK, ""), parameters=ndarrays_to_parameters(update),
        num_examples=min(examples, MAX_WEIGHT), metrics=dict(metrics),
    )  # fmt: skip
    return Message(compat.fitres_to_recorddict(fitres, keep_input=False), reply_to=message)
