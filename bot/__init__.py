"""amibot: the lifecycle of EC2 machine images, run from Slack."""

__version__ = "0.1.0"
