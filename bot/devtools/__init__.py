"""Development tools that run the real app without Slack or AWS: the fake Slack Web API, a signed-request
client playing Slack's side, the Block Kit text renderer, the console and `amibot demo`.

Nothing in the bot's runtime path imports this package; `amibot demo` loads it on demand, and `amibot docs`
(bot/devtools/docs.py) generates the docs that come from the code.
"""
