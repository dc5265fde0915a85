"""The ServerApp component: earshot's coordinator (`agent.fleet.apps.server`)."""

from agent.fleet.apps import server as app

__all__ = ["app"]
