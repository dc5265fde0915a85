"""earshot's Flower apps: the ServerApp the coordinator runs and the ClientApp each device runs.

With `agent.fleet.secure` (SecAgg+, on Flower's legacy workflow), the only module that imports
Flower's app API. The ServerApp averages the configured words'
heads (``FedAvg``, weighted by each device's example count; optionally with server-side
differential privacy, fixed clipping) and hands every round to
`agent.fleet.coordinator.RoundWriter`; it also writes, per round, what reached it of each reply
(`describe_reply`: array names, shapes and types, metric names, or the error), so what a
coordinator learns can be checked. After the last round it offers the newest written heads to
every device (`offer_heads`). The ClientApp trains with `agent.fleet.device.local_update` and
sends back only the arrays and the count; offered heads it checks and uses only when they are no
worse on its own kept clips (`agent.fleet.adopt`), answering just how many it took.
The app folder Flower ships to its processes (``agent/fleet/app``) only points here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg, Strategy

from agent.fleet.adopt import FleetRound, adopt_heads
from agent.fleet.coordinator import RoundWriter, head_arrays, starting_heads
from agent.fleet.device import local_update, split_heads
from agent.fleet.secure import (
    fit_instructions,
    fit_reply,
    is_secure,
    run_secure,
    secure_aggregation_mod,
)
from agent.settings import load_settings

server = ServerApp()
client = ClientApp()


def describe_reply(message: Message) -> dict[str, Any]:
    """What the coordinator sees of one reply, besides Flower's routing metadata."""
    if message.has_error():
        return {"node": str(message.metadata.src_node_id), "error": message.error.reason}
    content = message.content
    return {
        "node": str(message.metadata.src_node_id),
        "arrays": {
            name: {k: {"shape": list(a.shape), "dtype": str(a.dtype)} for k, a in record.items()}
            for name, record in content.array_records.items()
        },
        "metrics": {name: sorted(record.keys()) for name, record in content.metric_records.items()},
        "configs": {name: sorted(record.keys()) for name, record in content.config_records.items()},
    }


class RecordingStrategy(Strategy):
    """Wraps a strategy: keeps what each reply holds, and writes every round's result."""

    def __init__(self, inner: Strategy, writer: RoundWriter, directory: Path) -> None:
        self.inner, self.writer, self.directory = inner, writer, directory

    def summary(self) -> None:
        """The wrapped strategy's."""
        self.inner.summary()

    def configure_train(self, server_round: int, arrays: Any, config: Any, grid: Grid) -> Any:
        """The wrapped strategy's."""
        return self.inner.configure_train(server_round, arrays, config, grid)

    def configure_evaluate(self, server_round: int, arrays: Any, config: Any, grid: Grid) -> Any:
        """The wrapped strategy's."""
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> Any:
        """The wrapped strategy's."""
        return self.inner.aggregate_evaluate(server_round, replies)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> Any:
        """Record the replies, aggregate when enough devices contributed, write the round."""
        replies = list(replies)
        seen = [describe_reply(m) for m in replies]  # before DP clipping rewrites them
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / f"replies-{server_round}.json").write_text(json.dumps(seen, indent=2))
        contributors = sum("error" not in s for s in seen)
        arrays, metrics = (None, None)
        if contributors >= self.writer.min_devices:
            arrays, metrics = self.inner.aggregate_train(server_round, replies)
        plain = None if arrays is None else {k: a.numpy() for k, a in arrays.items()}
        summary = {} if metrics is None else {str(k): v for k, v in metrics.items()}
        accepted = self.writer.write(server_round, plain, contributors, summary)
        return (arrays, metrics) if accepted else (None, None)


@server.main()
def coordinate(grid: Grid, context: Context) -> None:
    """One fleet run: the configured rounds of FedAvg over the words' heads.

    With ``secure-aggregation`` the rounds run under SecAgg+ (`agent.fleet.secure`).
    """
    run = context.run_config
    settings = load_settings(Path(str(run["config"])))
    words = tuple(w for w in str(run["words"]).split(",") if w)
    heads, base_sha256 = starting_heads(settings, words)
    devices = int(run["min-devices"])
    out = Path(str(run["out-dir"]))
    strategy: Strategy = FedAvg(
        fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=devices,
        min_available_nodes=devices,
    )  # fmt: skip
    if float(run["dp-noise-multiplier"]) > 0:
        strategy = DifferentialPrivacyServerSideFixedClipping(
            strategy, noise_multiplier=float(run["dp-noise-multiplier"]),
            clipping_norm=float(run["dp-clipping-norm"]), num_sampled_clients=devices,
        )  # fmt: skip
    writer = RoundWriter(out, base_sha256, devices)
    if bool(run["secure-aggregation"]):
        run_secure(
            grid, context, head_arrays(heads), writer, out / "replies",
            rounds=int(run["rounds"]), timeout_s=float(run["round-timeout"]),
        )  # fmt: skip
    else:
        RecordingStrategy(strategy, writer, out / "replies").start(
            grid=grid,
            initial_arrays=ArrayRecord({k: Array(v) for k, v in head_arrays(heads).items()}),
            num_rounds=int(run["rounds"]), timeout=float(run["round-timeout"]),
            train_config=ConfigRecord({"rounds": int(run["rounds"])}),
        )  # fmt: skip
    if bool(run.get("offer", True)):  # off for evaluations, which read the heads themselves
        offer_heads(grid, writer, out, float(run["round-timeout"]))
    writer.finish(int(context.run_id))


@client.train(mods=[secure_aggregation_mod])
def train(message: Message, context: Context) -> Message:
    """One round on this device: train the heads received, reply with the new arrays.

    Under secure aggregation the message and the reply are SecAgg+'s legacy ones
    (`agent.fleet.secure`): the update (new minus received arrays) leaves, masked.
    """
    secure = is_secure(message)
    config: Any
    if secure:
        arrays, config = fit_instructions(message)
    else:
        record = message.content.array_records["arrays"]
        arrays = {name: record[name].numpy() for name in record.keys()}
        config = message.content.config_records["config"]
    server_round = int(str(config["server-round"]))
    sent, examples, metrics = local_update(
        Path(str(context.node_config["config"])), arrays,
        coordinator=str(context.node_config.get("coordinator", "")), round_number=server_round,
        secure_aggregation=secure,
    )  # fmt: skip
    if server_round >= int(str(config["rounds"])) and "done-file" in context.node_config:
        Path(str(context.node_config["done-file"])).touch()  # see `earshot fleet join`
    if secure:
        return fit_reply(message, sent, arrays, examples, metrics)
    content = RecordDict({
        "arrays": ArrayRecord({k: Array(v) for k, v in sent.items()}),
        "metrics": MetricRecord({"num-examples": examples, **metrics}),
    })  # fmt: skip
    return Message(content=content, reply_to=message)


def offer_heads(grid: Grid, writer: RoundWriter, out: Path, timeout_s: float) -> None:
    """Send the run's newest written heads to every device, which checks them before use.

    What each device answered (how many heads it accepted and refused, nothing of its clips) is
    written to ``out/replies/offer.json``.
    """
    if writer.latest is None:
        return
    record, heads = writer.latest
    arrays = {k: Array(v) for k, v in head_arrays(heads).items()}
    config = {"round": record["round"], "base-sha256": writer.base_sha256,
              "contributors": record["contributors"]}  # fmt: skip
    messages = [
        Message(
            RecordDict({"arrays": ArrayRecord(arrays), "config": ConfigRecord(config)}),
            dst_node_id=node,
            message_type=MessageType.EVALUATE,
        )  # fmt: skip
        for node in grid.get_node_ids()
    ]
    replies = grid.send_and_receive(messages, timeout=timeout_s)
    (out / "replies").mkdir(parents=True, exist_ok=True)
    seen = [describe_reply(m) for m in replies]
    (out / "replies" / "offer.json").write_text(json.dumps(seen, indent=2))


@client.evaluate()
def adopt(message: Message, context: Context) -> Message:
    """The run's final heads: use each one only if it is no worse here (`agent.fleet.adopt`)."""
    record = message.content.array_records["arrays"]
    config = message.content.config_records["config"]
    origin = FleetRound(
        source=str(context.node_config.get("coordinator", "")), round=int(str(config["round"])),
        base_sha256=str(config["base-sha256"]), contributors=int(str(config["contributors"])),
    )  # fmt: skip
    settings = load_settings(Path(str(context.node_config["config"])))
    heads = split_heads({name: record[name].numpy() for name in record.keys()})
    decisions = adopt_heads(settings, heads, origin)
    accepted = sum(d.accepted for d in decisions)
    metrics = MetricRecord({"accepted": accepted, "refused": len(decisions) - accepted})
    return Message(RecordDict({"metrics": metrics}), reply_to=message)
