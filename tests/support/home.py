"""The App Home tab as the fake Slack sees it: open it, read what was published."""

from __future__ import annotations


def open_home(harness, user):
    before = len(harness.fake.calls_to("views.publish"))
    harness.event({"type": "app_home_opened", "user": user, "tab": "home", "channel": "D0HOME"})
    return [call for call in harness.fake.calls_to("views.publish")[before:] if call.params["user_id"] == user]


def view_text(call) -> str:
    view = call.params["view"]
    parts = []
    for block in view["blocks"]:
        parts.append((block.get("text") or {}).get("text", ""))
        parts += [element.get("text", "") for element in block.get("elements", []) if isinstance(element, dict)
                  and isinstance(element.get("text"), str)]
    return "\n".join(parts)
