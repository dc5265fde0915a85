"""Audio out: the privacy gate, the only code that sends anything over the network.

`gate` (uploads after a wake word, with retries), `wire` (byte formats, no network), `audit` (one
owner-only JSON line per upload) and `receiver` (a reference endpoint for tests and demos). May
import `agent.settings` and `agent.paths`; nothing of the other stages.
"""
