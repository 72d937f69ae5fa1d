"""Tools around the service: the load generator and its CLI, the dashboard report, topic creation."""
