"""Route amibot's feature-probe clients to stand-ins in a test, leaving every other client on moto.

APIs moto lacks (the Recycle Bin, Inspector's image findings, Allowed AMIs, instance image metadata) are called
through ``aws.client("ec2", region, max_attempts=1)`` — one attempt, since an endpoint without them answers with
errors that are not worth retrying — and rbin through ``aws.client("rbin", …)``. Tests point exactly those at a
botocore Stubber (or any client) and the rest of the app keeps talking to moto.
"""

from __future__ import annotations


def route_probes(harness, monkeypatch, ec2=None, rbin=None, account=None) -> None:
    """`account` (a managed account's name or id): route that account's probe clients; default the bot's own."""
    handle = harness.ctx.aws.of(account)
    real = handle.client

    def client(service, region=None, max_attempts=6):
        if service == "rbin" and rbin is not None:
            return rbin
        if service == "ec2" and max_attempts == 1 and ec2 is not None:
            return ec2
        return real(service, region, max_attempts)

    monkeypatch.setattr(handle, "client", client)
