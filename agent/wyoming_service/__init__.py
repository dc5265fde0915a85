"""`earshot wyoming`: the configured wake words as a Wyoming wake-word service.

Home Assistant's Wyoming integration (or any Wyoming client, such as a satellite) connects over
TCP or a Unix socket, asks what the service offers (``describe`` -> ``info``), streams audio
(``audio-start``, ``audio-chunk``..., ``audio-stop``) and gets a ``detection`` event for every wake
word heard, or one ``not-detected`` at the end of a stream without any. The protocol is the
official ``wyoming`` package's; this package supplies only the handler behind it.

- `agent.wyoming_service.service`: the connection handler (`WakeHandler`), the shared
  `WakeService` that builds one detector per connection, and `serve`;
- `agent.wyoming_service.address`: ``--uri`` checked and turned into a server (`server_for_uri`);
- `agent.wyoming_service.info`: the ``info`` answer to ``describe``.

Privacy: the service only receives audio. It forwards none anywhere, writes none to disk, and
does not use the privacy gate (`agent.egress`), the only code that sends audio: what leaves it are
the Wyoming events above, sent to the client that asked.

The package imports the wake-word detector (`models.wake`) and `kernels.errors` only; the CLI
(`agent.cli.wyoming`) loads the config's models and hands the detector's parts over. Importing
the package itself loads nothing (the ``wyoming`` package comes with its modules), so the CLI
can name `DEFAULT_URI` without slowing every other command.
"""

DEFAULT_URI = "tcp://127.0.0.1:10400"
"""Where `earshot wyoming` listens by default: loopback, on wyoming-openwakeword's port."""
