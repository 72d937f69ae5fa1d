"""clickstream: real-time clickstream analytics on Kafka with Bytewax.

Layers, each a package; a module imports only from its own layer or the ones listed before it:
  core     pure code: parsing, window rules and aggregates, shards, partitioner, record contract
  runtime  the process: settings, exits, progress clocks, metrics, recovery store, supervisor
  io       Kafka adapters: client config and checks, the click source, the sinks, watchers
  stages   the Bytewax logic of the user and page window stages
  tools    the load generator, the report, topic creation
`io` and `stages` do not import each other; `dataflows/clickstream.py` wires them.
"""
