"""Kafka adapters: client config and start-up checks, the click source, the sinks, watchers."""
