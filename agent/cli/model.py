"""``earshot model import``: bring a pre-trained ONNX network into earshot's own model format."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kernels.errors import ConfigError

FRONT_ENDS = ("mel32", "mel40")
"""The front ends an imported network may read: `dsp.embedding_features` (32 bands, the
speech_embedding's) or `dsp.features` (40 bands, the own base's)."""


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Register ``model`` and its actions."""
    model = commands.add_parser("model", help="import pre-trained networks")
    actions = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    imp = actions.add_parser(
        "import",
        help="convert an ONNX network into an earshot model file",
        description="Read an ONNX graph (a chain of Conv, MaxPool, AveragePool, LeakyRelu, Relu, "
        "Max/Min/Clip against constants, Add/Mul, BatchNormalization, MatMul/Gemm, "
        "Reshape/Flatten/Transpose/Squeeze/Unsqueeze, Sigmoid, Softmax) and write it as an "
        "earshot network (.npz) with a manifest naming the source file and its sha256, the "
        "licence, the input and output shapes and the ops. Any other op is refused with the "
        "node's name and attributes, and nothing is written. The network then runs on numpy "
        "and on the wgpu kernels.",
        epilog="example (the shipped speech embedding, from openwakeword 0.5.1's wheel):\n"
        "  earshot model import .../openwakeword/resources/models/embedding_model.onnx \\\n"
        "      --out models/data/speech_embedding.npz --licence Apache-2.0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("file", type=Path, metavar="FILE.onnx", help="the ONNX model to import")
    imp.add_argument("--out", type=Path, required=True, metavar="FILE.npz", help="file to write")
    imp.add_argument(
        "--licence", required=True,
        help="the weights' licence as an SPDX id (e.g. Apache-2.0); recorded in the manifest",
    )  # fmt: skip
    imp.add_argument(
        "--front-end", choices=FRONT_ENDS, default="mel32",
        help="the features the network reads: mel32 (the speech embedding's 32-band log-mel, "
        "the default) or mel40 (earshot's own 40-band log-mel)",
    )  # fmt: skip
    imp.add_argument("--json", action="store_true", help="print the manifest as JSON")


NON_COMMERCIAL = ("-NC", "NONCOMMERCIAL", "NON-COMMERCIAL")


def run_model(args: argparse.Namespace) -> int:
    """``earshot model import``."""
    from dsp.constants import LIVE_FRONT_END
    from dsp.embedding_features import EMBEDDING_FRONT_END
    from models.nn.checkpoint import Manifest, save_model
    from models.nn.network_file import network_arrays
    from models.nn.onnx_import import import_onnx

    licence = args.licence.strip()
    if not licence or any(mark in licence.upper() for mark in NON_COMMERCIAL):
        raise ConfigError(
            f"--licence: got {args.licence!r}; earshot ships only weights under a licence that "
            "allows any use (e.g. Apache-2.0, MIT, BSD-3-Clause)"
        )
    if args.out.suffix != ".npz":
        raise ConfigError(f"--out: got {str(args.out)!r}, expected a file name ending in .npz")
    imported = import_onnx(args.file)
    architecture, arrays = network_arrays(imported.network)
    front_end = EMBEDDING_FRONT_END if args.front_end == "mel32" else LIVE_FRONT_END
    network = imported.network
    manifest = Manifest(
        "base", architecture, [], front_end=front_end.as_dict(),
        recipe={"command": f"earshot model import {args.file.name} --licence {licence} "
                           f"--front-end {args.front_end}"},
        metrics={"parameters": imported.parameters, "flops_per_window": network.flops()},
        extra={"source": imported.source, "licence": licence, "ops": imported.ops,
               "input_shape": list(network.input_shape),
               "output_shape": list(network.output_shape)},
    )  # fmt: skip
    try:
        written = save_model(args.out, arrays, manifest)
    except OSError as err:
        raise ConfigError(
            f"--out: cannot write {args.out} ({err.strerror or type(err).__name__})"
        ) from None
    if args.json:
        print(written.to_json())
        return 0
    print(f"{args.out}: {len(network.layers)} layers from {imported.source['file']} "
          f"(sha256 {imported.source['sha256'][:12]}...), licence {licence}")  # fmt: skip
    print(f"  input {list(network.input_shape)} -> output {list(network.output_shape)}; "
          f"{imported.parameters:,} parameters, {network.flops() / 2e6:.1f} M multiply-adds "
          "per window")  # fmt: skip
    print(f"  ops: {json.dumps(imported.ops)}")
    return 0
