"""`python -m clickstream.topics`: create the service's topics (those of the settings) if missing."""

import argparse
import sys

from confluent_kafka import KafkaException

from clickstream.io.kafka import create_topics
from clickstream.runtime.settings import Settings, SettingsError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clickstream.topics", description=__doc__)
    parser.add_argument("--partitions", type=int, default=2, help="partitions per new topic")
    args = parser.parse_args(argv)
    if args.partitions < 1:
        parser.error("--partitions must be at least 1")
    try:
        settings = Settings.from_env()
        created = create_topics(settings, args.partitions)
    except SettingsError as exc:
        print(f"clickstream: {exc}", file=sys.stderr)
        return 2
    except KafkaException as exc:
        print(f"clickstream: creating topics on {Settings.from_env().bootstrap_servers} failed: "
              f"{exc.args[0].str() if exc.args else exc}", file=sys.stderr)
        return 2
    wanted = [settings.input_topic, *settings.output_topics]
    for topic in wanted:
        print(f"{topic}: {'created' if topic in created else 'exists'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
