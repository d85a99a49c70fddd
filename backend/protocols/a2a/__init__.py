"""The A2A agent: its card at ``/.well-known/agent-card.json`` (and the 0.3 path), JSON-RPC at
``/a2a`` in protocol 1.0 with the 0.3 method names kept, an A2A task being a view of a run."""
