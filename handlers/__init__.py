"""Slack listeners, one package per kind (commands, actions, views) plus events.

Listeners stay thin: parse → authorize → call bot/ → render. Each module in a package exposes
``register(app, ctx)``; the packages find their modules themselves, so adding a feature means
adding a file, not editing a list.
"""

import importlib
import pkgutil

from handlers import events


def register_package(package, app, ctx) -> None:
    for module_info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{module_info.name}")
        if hasattr(module, "register"):
            module.register(app, ctx)


def register(app, ctx) -> None:
    from handlers import actions, commands, views

    commands.register_commands(app, ctx)  # not "register": that name is the `/ami register` module
    register_package(actions, app, ctx)
    register_package(views, app, ctx)
    events.register(app, ctx)
