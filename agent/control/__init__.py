"""Watching and steering a running agent: control socket, events, hooks, the systemd unit.

`server` (the owner-only Unix socket behind ``earshot status``, ``events`` and reloads), `claim`
(the socket's folder checked and its lock taken before binding), `events` (the JSON event stream
and hooks, and the environment of every child the agent starts), `service` (install/remove the
user unit) and `procstat` (what /proc says about a process). May import `agent.settings` and
`agent.paths`.
"""
