"""Lifecycle services: what amibot does with images, independent of Slack.

Importing this package imports every service module, so that every ``@requires`` declaration is
known when the IAM policy is generated (see bot.aws.iam_policy).
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
