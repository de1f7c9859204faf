"""Lifecycle services: what amibot does with images, independent of Slack.

Modules are imported where used (so `amibot digest` loads only what it needs); bot/iam_policy.py imports every
one that declares AWS permissions, and bot/wiring.py every one the running app needs.
"""
