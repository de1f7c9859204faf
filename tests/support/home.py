"""The App Home tab as the fake Slack sees it: open it, read what was published."""

from __future__ import annotations

import time


def open_home(harness, user, wait: bool = True):
    """The views published for `user` after the tab opened. `wait=False` while a job runs on (a rollout's watch):
    only the first view, published at once from SQLite, is waited for."""
    before = len(harness.fake.calls_to("views.publish"))
    harness.event({"type": "app_home_opened", "user": user, "tab": "home", "channel": "D0HOME"}, wait=wait)

    def published():
        return [call for call in harness.fake.calls_to("views.publish")[before:] if call.params["user_id"] == user]

    deadline = time.monotonic() + 15
    while not wait and not published() and time.monotonic() < deadline:
        time.sleep(0.02)
    return published()


def view_text(call) -> str:
    view = call.params["view"]
    parts = []
    for block in view["blocks"]:
        parts.append((block.get("text") or {}).get("text", ""))
        parts += [element.get("text", "") for element in block.get("elements", []) if isinstance(element, dict)
                  and isinstance(element.get("text"), str)]
    return "\n".join(parts)
