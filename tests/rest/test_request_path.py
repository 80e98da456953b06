"""The request path's cuts (rest.request_path): what they skip, and that the login and the
authorizer still decide every request."""

from __future__ import annotations

import logging

from jupyter_tfserving.rest.request_path import debug_written, drop_unwritten_debug


async def test_a_header_token_request_gets_no_login_cookie(rest):
    code, _, headers = await rest.call("/api/models")
    assert code == 200
    assert "Set-Cookie" not in headers  # jupyter_server would sign one on every request
    bearer = {"Authorization": f"Bearer {rest.token}"}
    code, _, headers = await rest.call("/api/models", headers=bearer)
    assert code == 200 and "Set-Cookie" not in headers


async def test_everything_else_still_goes_through_the_identity_provider(rest):
    # a wrong token, in either scheme, is refused
    for header in (f"token {rest.token}x", "token ", f"Basic {rest.token}", "Bearer"):
        code, data, _ = await rest.call("/api/models", headers={"Authorization": header})
        assert code == 403, (header, data)
    # ?token= takes precedence over the header in jupyter_server: a wrong one is refused
    code, _, _ = await rest.call("/api/models?token=wrong",
                                 headers={"Authorization": f"token {rest.token}"})
    assert code == 403
    # the query token alone: the usual path, which sets the login cookie; the cookie then
    # authenticates a request of its own
    code, _, headers = await rest.call(f"/api/models?token={rest.token}", auth=False)
    assert code == 200 and "Set-Cookie" in headers
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    code, _, _ = await rest.call("/api/models", auth=False, headers={"Cookie": cookie})
    assert code == 200


def test_debug_records_are_built_only_when_a_handler_writes_them():
    log = logging.getLogger("jupyter_tfserving.tests.request_path")
    log.propagate = False
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)  # as traitlets leaves the application's logger
    try:
        assert not debug_written(log)
        drop_unwritten_debug(log)
        assert log.level == logging.WARNING and not log.isEnabledFor(logging.DEBUG)
        handler.setLevel(logging.DEBUG)
        log.setLevel(logging.DEBUG)
        assert debug_written(log)
        drop_unwritten_debug(log)
        assert log.level == logging.DEBUG  # a handler writes DEBUG: nothing changes
    finally:
        log.removeHandler(handler)
