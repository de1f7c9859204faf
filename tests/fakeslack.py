"""The fake Slack Web API lives in bot/devtools (the demo uses it too); re-exported for the tests."""
from bot.devtools.fakeslack import Call, FakeSlack, free_port  # noqa: F401
