"""The harness on the demo's emulated AWS (bot.devtools.emulation): what moto lacks, emulated, under the real app."""

from __future__ import annotations

from dataclasses import dataclass

import boto3
from slack_sdk import WebClient

from bot.app import create_app
from bot.core.config import Settings, parse_policy
from bot.devtools.demo import emulate_accounts, emulated_aws
from bot.devtools.local import LocalApp
from tests.support.harness import BOT_TOKEN, SIGNING_SECRET, Harness

REGION = "us-east-1"
CURL = {"Title": "CVE-2023-38545 - curl, libcurl", "SeverityLabel": "CRITICAL", "Score": 9.8, "FixAvailable": True}


@dataclass
class EmulatedHarness(Harness):
    """The tests' Harness, with the app on the demo's emulated AWS."""

    session: object = None
    emulation: object = None
    runs: object = None  # bot.devtools.demo.RunEmulations: bakes and instance refreshes emulated too

    def start(self) -> EmulatedHarness:
        self.session = boto3.session.Session(region_name=REGION)
        self.emulation, aws = emulated_aws([REGION], self.session, runs=self.runs)
        settings = Settings(bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, slack_api_url=self.fake.url,
                            db_path=self.db_path)
        self.amibot = create_app(settings, parse_policy(self.policy_data),
                                 slack=WebClient(token=BOT_TOKEN, base_url=self.fake.url), aws=aws)
        emulate_accounts(self.emulation, self.amibot.ctx.aws, runs=self.runs)  # each assumed account has it too
        self._local = LocalApp(self.amibot, SIGNING_SECRET, self.fake).start()
        return self


def retention_rules(app, days: int = 14) -> None:
    rbin = app.session.client("rbin", REGION)
    for resource_type in ("EC2_IMAGE", "EBS_SNAPSHOT"):
        rbin.create_rule(ResourceType=resource_type,
                         RetentionPeriod={"RetentionPeriodValue": days, "RetentionPeriodUnit": "DAYS"})
