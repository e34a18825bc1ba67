"""No token leaves without its binding: a token response certbound cannot
bind is replaced by an error, never released unbound."""

import pytest
import requests

from conftest import another_envoy, good_client


@pytest.fixture(scope="module")
def small_envoy(stack, tmp_path_factory):
    # A body limit that a token request fits in but the AS's token response does not.
    workdir = tmp_path_factory.mktemp("small")
    envoy = another_envoy(
        stack,
        workdir,
        {
            "max_body_bytes": 64,
            "clients": [good_client(stack)],
        },
        name="small-envoy",
    )
    yield envoy
    envoy.stop()


def test_token_response_that_cannot_be_bound_is_replaced_by_502(stack, small_envoy):
    r = requests.post(
        small_envoy.url + "/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": "good-client"},
        cert=stack.clients["good"].pair,
        verify=str(stack.pki.ca_path),
        timeout=15,
    )
    assert r.status_code == 502, r.text
    assert r.json()["error"] == "server_error"
    assert "access_token" not in r.text
    assert r.headers["cache-control"] == "no-store"
    assert int(r.headers["content-length"]) == len(r.content)
    assert small_envoy.counter("certbound.refused.unbindable_token_response") == 1
    assert small_envoy.counter("certbound.tokens_bound") == 0
