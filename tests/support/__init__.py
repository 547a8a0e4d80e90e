"""Helpers the tests share (import them as `tests.support.<module>`; the fixtures are in
tests/conftest.py, the independent reference implementation in tests/reference/):

- `cli`: the real `s1mig` command line in a child process, the repository root.
- `databases`: fresh warehouse databases on the test server, a built hand-made warehouse.
- `drops`: the hand-made drops (2020-07-30/31, 08-01) and helpers to write and edit drops.
- `exports`: exported files compared with the reference's.
- `histories`: random migration histories for the property-based tests (hypothesis).
- `serving`: a real `s1mig serve` for a test, and its REST calls.
- `smtp_server`: an SMTP server on 127.0.0.1 that keeps what it receives."""
