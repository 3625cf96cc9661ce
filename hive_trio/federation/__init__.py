"""Hives on several hosts, linked over NATS JetStream (docs/FEDERATION.md).

`serve_federation` (in `service`) is the one entry point the daemon starts; `bridge` crosses into
nats-py's asyncio, `link` holds the nats-py calls, `server` supervises the embedded `nats-server`.
Nothing here is imported unless `[federation] enabled = true`, so nats-py stays an optional extra.
"""
