"""Pure code: no Kafka, no Bytewax, no Prometheus; every rule here is tested without a broker."""
