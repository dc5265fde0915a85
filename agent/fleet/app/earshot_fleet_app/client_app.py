"""The ClientApp component: earshot's device (`agent.fleet.apps.client`)."""

from agent.fleet.apps import client as app

__all__ = ["app"]
