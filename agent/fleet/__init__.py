"""Fleet learning: devices improve shared wake words together on Flower, sending weight updates.

A coordinator (`earshot fleet serve`) runs a Flower SuperLink and earshot's ServerApp, which
averages (FedAvg) the heads of the configured wake words and writes each round's result as a
versioned head with its manifest (`agent.fleet.coordinator`). A device (`earshot fleet join`)
runs a SuperNode with earshot's ClientApp, in its own process and never inside the daemon: it
trains the heads it receives on what it holds and has opted into (`learning:`; its kept
feedback, `agent.learning.feedback`) and sends back only the heads' arrays, each exchange written
to its audit log (`agent.fleet.device`). Audio, features and embeddings never leave it.

At the end of a run every device is offered the fleet's heads and uses one only if it is no
worse on what the device keeps (`agent.fleet.adopt`). Secure aggregation (`agent.fleet.secure`),
TLS with node authentication (`agent.fleet.flower`) and differential privacy, on the coordinator
or on each device (its accounting: `agent.fleet.accounting`), are settings of the ``fleet``
section. `agent.fleet.evaluation` measures all this on FSDD's real speakers (`earshot eval fleet`).

Flower (``flwr``) is the optional ``fleet`` extra and is imported only by `agent.fleet.apps`,
`agent.fleet.secure` and the Flower programs (`agent.fleet.flower`).
"""
