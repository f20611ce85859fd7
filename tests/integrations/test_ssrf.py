"""integrations.ssrf: which addresses a callback URL may reach."""

import pytest

from integrations.ssrf import CallbackRefused, parse_url, vet


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://10.0.0.1/hook", "private"),
        ("http://192.168.1.20/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://[::1]:9000/", "loopback"),
        ("http://[::ffff:10.0.0.1]/", "private"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://100.64.0.1/", "non-public"),
        ("http://2130706433/", "loopback"),  # 127.0.0.1 as a decimal number, as resolvers read it
        ("http://localhost:9380/", "loopback"),  # a name that resolves to loopback
    ],
)
def test_it_refuses_internal_addresses(db, url, reason):
    with pytest.raises(CallbackRefused) as caught:
        vet(url)
    assert reason in caught.value.message
    assert "COMBO_WEBHOOK_ALLOWED_HOSTS" in caught.value.message


@pytest.mark.parametrize("url", ["ftp://example.com/x", "http://user:pw@example.com/", "http:///nohost", "file:///etc/passwd"])
def test_it_refuses_urls_of_the_wrong_shape(url):
    with pytest.raises(CallbackRefused):
        vet(url)


def test_a_public_literal_address_passes():
    target = vet("https://93.184.215.14:8443/hook")
    assert [str(a) for a in target.addresses] == ["93.184.215.14"] and target.port == 8443


def test_the_allowlist_admits_cidrs_and_host_names(settings):
    settings.COMBO_WEBHOOK_ALLOWED_HOSTS = ["10.20.0.0/16", "LocalHost"]
    assert str(vet("http://10.20.3.4/").addresses[0]) == "10.20.3.4"
    assert vet("http://localhost:8000/").host == "localhost"
    with pytest.raises(CallbackRefused):
        vet("http://10.21.0.1/")
    with pytest.raises(CallbackRefused):
        vet("http://127.0.0.1/")  # the name is allowed, not every loopback address


@pytest.mark.parametrize("host", [
    "a" * 64 + ".example.com",  # a label over 63 characters
    ".".join(["abcdefghij"] * 24) + ".com",  # over 253 characters in all
    "bad..example.com",
    "exa mple.com",
    "-leading.example.com",
])
def test_a_host_no_dns_name_can_be_is_refused_at_once(host):
    with pytest.raises(ValueError, match="not a valid host name"):
        parse_url(f"https://{host}/hook")


@pytest.mark.parametrize("host, parsed", [
    ("Example.COM.", "example.com"),
    ("a" * 63 + ".example.com", "a" * 63 + ".example.com"),
    ("bücher.example", "bücher.example"),
    ("_dmarc.example.com", "_dmarc.example.com"),
    ("[2001:db8::1]", "2001:db8::1"),
])
def test_real_host_names_and_addresses_pass(host, parsed):
    assert parse_url(f"https://{host}/hook")[1] == parsed
