"""Watching and steering a running agent: control socket, events, hooks, the systemd unit.

`server` (the owner-only Unix socket behind ``earshot status``, ``events`` and reloads), `events`
(the JSON event stream and hooks), `service` (install/remove the user unit) and `procstat` (what
/proc says about a process). May import `agent.settings` and `agent.paths`.
"""
