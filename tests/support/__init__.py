"""What the tests share: the harness that drives the real app, seeding moto, the policies, payloads and
readers several test modules use. Test modules import from here (and get fixtures from tests/conftest.py),
never from one another, so a test file can be changed or deleted without breaking another
(tests/test_test_layout.py holds that)."""
