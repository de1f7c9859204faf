"""The floor for the ack-latency benchmark: a Bolt app that only acks, behind the same waitress server.

    python bench/bare_app.py --port 3001   (SLACK_SIGNING_SECRET and SLACK_API_URL from the environment)
"""

from __future__ import annotations

import argparse
import os
import re

import waitress
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient


def build() -> App:
    app = App(signing_secret=os.environ["SLACK_SIGNING_SECRET"], token_verification_enabled=False,
              client=WebClient(token="xoxb-bare", base_url=os.environ.get("SLACK_API_URL")))

    @app.command("/ami")
    def command(ack):
        ack()

    @app.action(re.compile(".*"))
    def action(ack):
        ack()

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    handler = SlackRequestHandler(build())
    waitress.serve(handler, host="127.0.0.1", port=args.port, threads=args.threads, ident="bare")


if __name__ == "__main__":
    main()
