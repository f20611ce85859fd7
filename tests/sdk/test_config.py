"""Client configuration: base URL forms, environment fallbacks, options."""

import httpx
import pytest

from combo_sdk import DEFAULT_BASE_URL, AsyncComboAgent, ComboAgent
from combo_sdk._base import normalize_base_url


@pytest.mark.parametrize(
    "given",
    [
        "http://localhost:9380/v1",
        "http://localhost:9380/v1/",
        "http://localhost:9380",
        "http://localhost:9380/",
        " http://localhost:9380/v1 ",
    ],
)
def test_the_base_url_is_accepted_with_or_without_v1(given):
    assert normalize_base_url(given) == "http://localhost:9380/v1"


def test_a_base_url_behind_a_path_prefix_keeps_it():
    assert normalize_base_url("https://example.com/combo") == "https://example.com/combo/v1"
    assert normalize_base_url("https://example.com/combo/v1") == "https://example.com/combo/v1"


@pytest.mark.parametrize("bad", ["localhost:9380", "ftp://x/v1", "", "/v1"])
def test_a_base_url_without_http_is_refused(bad):
    with pytest.raises(ValueError):
        normalize_base_url(bad)


def test_defaults_and_environment(monkeypatch):
    monkeypatch.delenv("COMBO_API_KEY", raising=False)
    monkeypatch.delenv("COMBO_BASE_URL", raising=False)
    client = ComboAgent()
    assert client.base_url == DEFAULT_BASE_URL == "http://localhost:9380/v1"
    assert client.api_key is None and client.max_retries == 2
    client.close()

    monkeypatch.setenv("COMBO_API_KEY", "ragflow-from-env")
    monkeypatch.setenv("COMBO_BASE_URL", "http://combo.internal:9380")
    client = AsyncComboAgent()
    assert client.api_key == "ragflow-from-env" and client.base_url == "http://combo.internal:9380/v1"
    explicit = AsyncComboAgent(api_key="ragflow-arg", base_url="http://other:1/v1")
    assert explicit.api_key == "ragflow-arg" and explicit.base_url == "http://other:1/v1"


def test_with_options_copies_and_shares_the_pool():
    client = ComboAgent(api_key="ragflow-a", base_url="http://localhost:9380", timeout=5, max_retries=1)
    patient = client.with_options(timeout=httpx.Timeout(300.0), max_retries=5)
    assert patient.max_retries == 5 and patient.timeout.read == 300.0
    assert patient.api_key == "ragflow-a" and patient.base_url == client.base_url
    assert patient._http is client._http and not patient._owns_http
    assert client.timeout == 5 and client.max_retries == 1
    patient.close()
    assert not client._http.is_closed  # the copy does not close the shared pool
    client.close()
    assert client._http.is_closed


def test_a_negative_max_retries_is_refused():
    with pytest.raises(ValueError):
        ComboAgent(api_key="x", max_retries=-1)


def test_headers_carry_the_credential_and_the_sdk_version(scripted):
    from combo_sdk import __version__
    from tests.sdk.conftest import Reply, envelope

    server = scripted(Reply(200, envelope({"items": [], "next_cursor": None})))
    with ComboAgent(api_key="ragflow-abc", base_url=server.url, default_headers={"X-Team": "qa"}) as client:
        assert list(client.agents.list(limit=5)) == []
    request = server.requests[0]
    assert request.path == "/v1/combo/agents?limit=5"
    assert request.headers["Authorization"] == "Bearer ragflow-abc"
    assert request.headers["User-Agent"] == f"combo-sdk-python/{__version__}"
    assert request.headers["X-Team"] == "qa"


def test_a_timeout_is_an_api_timeout_error(scripted):
    import threading

    from combo_sdk import APITimeoutError

    release = threading.Event()
    server = scripted()

    class Slow(server.httpd.RequestHandlerClass):
        def do_GET(self):
            release.wait(5)

    server.httpd.RequestHandlerClass = Slow
    with ComboAgent(api_key="ragflow-a", base_url=server.url, timeout=0.3, max_retries=0) as client:
        with pytest.raises(APITimeoutError):
            client.agents.retrieve("a1")
    release.set()
