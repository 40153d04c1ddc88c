"""The privacy and URL scanners take any text, in linear time, and are not fooled by spelling
(review reliability.md D6, D10)."""

from __future__ import annotations

import time

import pytest
from hypothesis import strategies as st

from kimi_student import privacy
from kimi_student.privacy import pii_values, privacy_violations, url_allowed, url_allowlist, urls
from tests.props import tiers

any_text = st.text(st.characters(exclude_categories=()), max_size=300)
email_ish = st.text(st.sampled_from("ab1.-_%+@ \nxy.z"), max_size=60)


def check_scanners_take_any_text(text: str, prompt: str) -> None:
    assert isinstance(pii_values(text), set)
    for u in urls(text):
        assert isinstance(url_allowed(u), bool)
    assert all(isinstance(v, str) for v in privacy_violations(prompt, [text]))


test_scanners_take_any_text, test_scanners_take_any_text_many = tiers(
    check_scanners_take_any_text, text=any_text, prompt=any_text
)


def check_linear_email_scan_finds_what_the_regex_finds(text: str) -> None:
    assert [m.span() for m in privacy._emails(text)] == [m.span() for m in privacy.EMAIL.finditer(text)]


test_linear_email_scan_finds_what_the_regex_finds, test_linear_email_scan_many = tiers(
    check_linear_email_scan_finds_what_the_regex_finds, text=email_ish
)

hosts = st.sampled_from(url_allowlist())
paths = st.text(st.sampled_from("abc/-_.?=&#%0"), max_size=20)
schemes = st.sampled_from(["http", "https", "HTTPS", "Http"])


def check_allowlisted_urls_pass_and_userinfo_never_does(scheme: str, host: str, path: str, user: str) -> None:
    url = f"{scheme}://{host}/{path}"
    assert urls(f"see {url} now") == [url.rstrip(".,;:")]
    assert url_allowed(url)
    assert not url_allowed(f"{scheme}://{user}@{host}/{path}")
    assert not url_allowed(f"{scheme}://evil.example.net\\{user}.{host}/{path}")


test_allowlisted_urls_pass_and_userinfo_never_does, test_allowlisted_urls_many = tiers(
    check_allowlisted_urls_pass_and_userinfo_never_does,
    scheme=schemes,
    host=hosts,
    path=paths,
    user=st.text(st.sampled_from("evil.xample:"), min_size=1, max_size=12),
)


@pytest.mark.parametrize(
    "text",
    [
        "HTTPS://evil.example.net/phish",
        "https://evil.example.net\\@docs.python.org/phish",
        "https://evil.example.net\\.docs.python.org/phish",
        "https://x@docs.python.org/",
        "http://[oops/x",
        "http://[::1",
        "https://evil.example.net%2f.docs.python.org/",
        "\uff48\uff54\uff54\uff50\uff53\uff1a\uff0f\uff0fevil.example.net/",  # fullwidth https://
    ],
)
def test_urls_that_used_to_pass_the_allowlist_are_flagged(text: str) -> None:
    assert privacy_violations("", [f"See {text} now."])


@pytest.mark.parametrize(
    "text, kind",
    [
        ("ceo.private\uff20evil-corp.com", "email"),
        ("ceo.pri\u200bvate@evil-corp.com", "email"),
        ("ceo.private@evil\u2060-corp.com", "email"),
        ("4111\u200b1111 1111 1111", "card"),
    ],
)
def test_invisible_and_fullwidth_spellings_are_read(text: str, kind: str) -> None:
    assert kind in {k for k, _ in pii_values(text)}
    assert not privacy_violations(text, [text])  # what the prompt holds may be repeated


ADVERSARIAL = [
    "0123456789abcdef",
    "a.b-c_d%e+f",
    "a@",
    "a@b",
    "1 ",
    "1-",
    "sk-",
    "token ",
    "http://",
    "+1 ",
    "\u200b@",
]


@pytest.mark.parametrize("unit", ADVERSARIAL)
def test_scan_time_grows_linearly(unit: str) -> None:
    def best(text: str) -> float:
        out = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            privacy_violations("", [text])
            out = min(out, time.perf_counter() - t)
        return out

    small, big = best(unit * (10_000 // len(unit))), best(unit * (40_000 // len(unit)))
    assert big < 8 * small + 0.02, (unit, small, big)
