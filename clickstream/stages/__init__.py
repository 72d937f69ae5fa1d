"""The Bytewax logic of the window stages: keyed shards, timers, snapshots, tagged outputs."""
