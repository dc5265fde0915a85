"""The Flower App's components: pointers to earshot's apps (`agent.fleet.apps`)."""
