"""The `pii` policy kind: each entity, masking, blocking, entity subsets, the corpus figures, and
linear time on hostile input."""

from __future__ import annotations

import time

import pytest

from aigw.policies.guardrails.pii import PiiPolicy, PiiScanner
from aigw.policies.guardrails.pii_detectors import iban_valid, luhn_valid
from aigw.policies.guardrails.verdicts import Phase, PolicyContext
from aigw.store.token_format import new_token
from tests.pii_corpus_eval import evaluate

SCANNER = PiiScanner()
CALL = PolicyContext(Phase.CALL, "chat", "alice", "openai")
JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("mail john.doe@example.com now", "mail [EMAIL] now"),
        ("a.b+tag@sub.example.co.uk.", "[EMAIL]."),
        ("call (202) 555-0143 or +44 20 7946 0958", "call [PHONE] or [PHONE]"),
        ("call me on 2025550143", "call me on [PHONE]"),
        ("card 4111 1111 1111 1111, amex 3782-822463-10005", "card [CREDIT_CARD], amex [CREDIT_CARD]"),
        ("pay DE89 3704 0044 0532 0130 00 or GB82WEST12345698765432.", "pay [IBAN] or [IBAN]."),
        ("ssn 078-05-1120", "ssn [US_SSN]"),
        ("my SSN is 078051120; order 078051120", "my SSN is [US_SSN]; order 078051120"),
        ("phone (+44) 20 7946 0958", "phone [PHONE]"),
        ("iban de89 3704 0044 0532 0130 00!", "iban [IBAN]!"),
        ("ref AB12 3456 7890 1234 or DE89 3704 0044 0532 0130 00", "ref AB12 3456 7890 1234 or [IBAN]"),
        ("host:10.0.0.1:8080", "host:[IP_ADDRESS]:8080"),
        ("hosts 192.168.1.10, 2001:db8::1 and ::ffff:192.0.2.128", "hosts [IP_ADDRESS], [IP_ADDRESS] and [IP_ADDRESS]"),
        ("key sk-proj-" + "aB3xY9" * 20 + " ok", "key [SECRET] ok"),
        ("key sk-ant-api03-" + "Zq7_Kd2-" * 12 + "AA", "key [SECRET]"),
        ("AKIAIOSFODNN7EXAMPLE AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW", "[SECRET] [SECRET]"),
        ("ghp_" + "a1B2" * 9 + " xoxb-123456789012-abcdefABCDEF", "[SECRET] [SECRET]"),
        ("sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "[SECRET]"),
        (f"Bearer {new_token()[2]}", "Bearer [SECRET]"),
        (f"jwt {JWT}.", "jwt [SECRET]."),
        (f"here:\n{PEM}\nthanks", "here:\n[SECRET]\nthanks"),
        ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nMIIEvQIBADANBgkq\n\ncut off", "[SECRET]\n\ncut off"),
    ],
)
def test_each_entity_is_masked_with_its_placeholder(text: str, masked: str) -> None:
    assert SCANNER.mask(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "Order #A-2024-558812 shipped on 2024-01-15.",
        "Your order 8812345678 is on its way.",  # bare digits without a phone word
        "ISBN 978-3-16-148410-0",
        "Upgrade to version 1.2.3.4 before Monday.",
        "see section 1.2.3.4.5",
        "card 4111 1111 1111 1112",  # Luhn fails
        "IBAN DE88 3704 0044 0532 0130 00",  # mod 97 fails
        "ssn 000-12-3456, 666-12-3456, 912-12-3456, 123-00-4567, 123-45-0000",
        "request 550e8400-e29b-41d4-a716-446655440000 commit a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",
        "It costs $1,299.99; MAC 00:1A:2B:3C:4D:5E at 12:30:45",
        "sk-learn-is-a-python-library-for-ml and task-manager",
        "root@localhost",
        "eyJhbGciOi.notjson.x -----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
        "999.1.1.1 and 01.02.03.04",
    ],
)
def test_near_misses_are_left_alone(text: str) -> None:
    assert SCANNER.find(text) == []


def test_checksums() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("DE89370400440532013000") and not iban_valid("DE88370400440532013000")
    assert not iban_valid("DE8937040044053201300")  # the wrong length for Germany


def test_entities_choose_a_subset() -> None:
    scanner = PiiScanner(["EMAIL"])
    assert scanner.mask("john@example.com 078-05-1120") == "[EMAIL] 078-05-1120"


def test_the_default_region_reads_national_numbers() -> None:
    assert PiiScanner(["PHONE"], region="GB").mask("ring 020 7946 0958") == "ring [PHONE]"
    assert PiiScanner(["PHONE"], region="US").mask("ring 020 7946 0958") == "ring 020 7946 0958"


async def test_block_denies_with_the_entities_found_and_never_the_text() -> None:
    policy = PiiPolicy("no-pii", frozenset(Phase), "block", SCANNER)
    verdict = await policy.check(["hi john@example.com", "and 078-05-1120"], CALL)
    assert verdict.action == "deny"
    assert verdict.categories == ("US_SSN", "EMAIL")
    assert "john" not in verdict.message and "078" not in verdict.message and "no-pii" in verdict.message


async def test_mask_rewrites_every_segment_and_keeps_their_number() -> None:
    policy = PiiPolicy("no-pii", frozenset(Phase), "mask", SCANNER)
    verdict = await policy.check(["hi john@example.com", "", "nothing here"], CALL)
    assert verdict.action == "mask" and verdict.texts == ("hi [EMAIL]", "", "nothing here")
    assert verdict.categories == ("EMAIL",)
    assert (await policy.check(["nothing here"], CALL)).action == "allow"


def test_corpus_precision_and_recall_stay_above_their_floor() -> None:
    table, mistakes = evaluate()
    for entity, (precision, recall, labelled) in table.items():
        assert labelled >= 30, entity
        assert precision >= 0.95, (entity, precision, mistakes)
        assert recall >= 0.90, (entity, recall, mistakes)


MB = 1_000_000
HOSTILE = {
    "digits": "1" * MB, "a@": "a@" * (MB // 2), "begin": "-----BEGIN" * (MB // 10), "dashes": "-" * MB,
    "key headers": "-----BEGIN RSA PRIVATE KEY-----" * (MB // 31), "header then body": "-----BEGIN PRIVATE KEY-----\n" + "A" * MB,
    "spaced digits": "1 " * (MB // 2), "dotted digits": "1." * (MB // 2), "colons": ":" * MB, "hex colons": "a:" * (MB // 2),
    "word": "a" * MB, "eyJ": "eyJ" * (MB // 3), "jwt parts": "eyJabcde." * (MB // 9), "sk-": "sk-" * (MB // 3),
    "iban heads": "DE89 " * (MB // 5), "email dots": "a." * (MB // 2), "at dots": "a@b." * (MB // 4),
    "phone heads": "+1 (202) " * (MB // 9), "ssn heads": "123-45-" * (MB // 7), "ips": "192.168.1.1 " * (MB // 12),
}  # fmt: skip


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_megabyte_of_hostile_text_takes_well_under_a_second(name: str) -> None:
    started = time.perf_counter()
    SCANNER.find(HOSTILE[name])
    assert time.perf_counter() - started < 2.5  # ~0.1-0.4 s measured alone; generous for a busy machine
