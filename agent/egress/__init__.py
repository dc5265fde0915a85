"""Audio out: the privacy gate, the only code that sends anything over the network.

`gate` (the gate and the life of an upload after a wake word, with retries), `target` (the
checked endpoint: address, TLS, bearer token), `buffer` (the trimmed command audio, in memory),
`payload` (each attempt's body), `exchange` (one ``POST`` and what its answer means),
`wyoming_exchange` (one exchange with a Wyoming speech-to-text server; the only module here
that imports the ``wyoming`` package, itself imported only for that kind of endpoint), `wire`
(byte formats, no network), `audit` (the owner-only log of uploads, written ahead of each), and
`receiver` with `decoder` (a reference endpoint for tests and demos, and its reading of bodies).
May import `agent.settings` and `agent.paths`; nothing of the other stages.
"""
