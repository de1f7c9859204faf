"""Lifecycle services: what amibot does with images, independent of Slack.

Modules are imported where used (so `amibot digest` loads only what it needs); ``load_all`` imports every one,
so that every ``@requires`` declaration is known when the IAM policy is generated (bot.aws.clients.iam_policy).
"""

import importlib
import pkgutil


def load_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
