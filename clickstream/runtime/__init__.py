"""The process around the dataflow: settings, exits, progress clocks, metrics, recovery, supervisor."""
