"""Writes tests/data/pii_corpus.jsonl: the labelled corpus of the `pii` policy, written for aigw.

Sentences in the voice of chat traffic, with PII and secrets generated to be valid (Luhn, mod 97,
SSN rules, decodable JWT headers) or deliberately near-miss (bad check digits, order numbers, ISBNs,
versions, UUIDs, git SHAs, prices, certificates). Each line: {"text", "entities": [{"entity",
"start", "end"}]}. Seeded, so running it again gives the same file. Decisions it encodes:
a dotted quad is an IP address unless a version word comes right before it ("version 1.2.3.4");
a bare run of digits is a phone number only after a word like "call" or "phone"; public keys and
certificates are not secrets; "user@localhost" (no top-level domain) is not an e-mail address.
Run: `python bench/pii_corpus_build.py`.
"""

from __future__ import annotations

import base64
import json
import random
import string
from pathlib import Path

from aigw.store.token_format import new_token

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "pii_corpus.jsonl"
rng = random.Random(13)


def luhn_complete(prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        candidate = body + check
        total = sum((int(c) * 2 - 9 if int(c) > 4 else int(c) * 2) if i % 2 else int(c) for i, c in enumerate(reversed(candidate)))
        if total % 10 == 0:
            return candidate
    raise AssertionError


def card() -> str:
    kind = rng.choice(["visa", "mc", "amex", "discover", "mc2"])
    if kind == "amex":
        digits = luhn_complete(rng.choice(["34", "37"]), 15)
        sep = rng.choice([" ", "-", ""])
        return f"{digits[:4]}{sep}{digits[4:10]}{sep}{digits[10:]}"
    prefix = {"visa": "4", "mc": "5" + rng.choice("12345"), "discover": "6011", "mc2": "2221"}[kind]
    digits = luhn_complete(prefix, 16)
    sep = rng.choice([" ", "-", ""])
    return sep.join(digits[i : i + 4] for i in range(0, 16, 4))


def bad_card() -> str:
    good = card()
    last = good[-1]
    return good[:-1] + str((int(last) + rng.randint(1, 9)) % 10)


IBAN_FORMATS = {"DE": 18, "GB": None, "FR": 23, "NL": None, "ES": 20, "IT": None, "CH": 17, "BE": 12}


def iban(valid: bool = True) -> str:
    country = rng.choice(list(IBAN_FORMATS))
    if country == "GB":
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + "".join(rng.choice(string.digits) for _ in range(14))
    elif country == "NL":
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + "".join(rng.choice(string.digits) for _ in range(10))
    elif country == "IT":
        bban = rng.choice(string.ascii_uppercase) + "".join(rng.choice(string.digits) for _ in range(22))
    else:
        bban = "".join(rng.choice(string.digits) for _ in range(IBAN_FORMATS[country]))
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(numeric) % 97
    if not valid:
        check = (check + rng.randint(1, 50)) % 97 + 2
    code = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        return " ".join(code[i : i + 4] for i in range(0, len(code), 4))
    return code


def ssn() -> str:
    area = rng.choice([n for n in range(1, 900) if n != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def email() -> str:
    first = rng.choice(["john", "maria", "li.wei", "ops_team", "a.b+tag", "first-last", "noreply", "j.smith42", "sales"])
    domain = rng.choice(["example.com", "mail.example.org", "company.io", "sub.example.co.uk", "my-domain.net", "univ.edu"])
    return f"{first}@{domain}"


PHONES = [
    "(202) 555-0143", "+1 202-555-0179", "202.555.0164", "+44 20 7946 0958", "+49 30 901820", "+33 1 23 45 67 89",
    "1-800-555-0199", "+61 2 9374 4000", "+81 3-1234-5678", "(415) 555-2671", "+1 (646) 555-0123", "+34 912 345 678",
    "+91 98765 43210", "+55 11 91234-5678", "+1 202 555 0143", "(312) 555-0187", "646-555-0134",
]  # fmt: skip


def ipv4() -> str:
    return rng.choice([
        f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}", f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}", "8.8.8.8", "172.16.0.1",
    ])  # fmt: skip


IPV6 = ["2001:db8::1", "fe80::1ff:fe23:4567:890a", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "::1", "2606:4700:4700::1111", "::ffff:192.0.2.128"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(chars: str, n: int) -> str:
    return "".join(rng.choice(chars) for _ in range(n))


ALNUM = string.ascii_letters + string.digits


def secret() -> str:
    kind = rng.randrange(11)
    if kind == 0:
        return "sk-" + token(ALNUM, 48)
    if kind == 1:
        return "sk-proj-" + token(ALNUM + "_-", 156)
    if kind == 2:
        return "sk-ant-api03-" + token(ALNUM + "_-", 93) + "AA"
    if kind == 3:
        return rng.choice(["AKIA", "ASIA"]) + token(string.ascii_uppercase + string.digits, 16)
    if kind == 4:
        return "AIza" + token(ALNUM + "_-", 35)
    if kind == 5:
        return rng.choice(["ghp_", "gho_", "ghs_"]) + token(ALNUM, 36)
    if kind == 6:
        return "github_pat_" + token(ALNUM, 22) + "_" + token(ALNUM, 59)
    if kind == 7:
        return f"xoxb-{token(string.digits, 12)}-{token(string.digits, 13)}-{token(ALNUM, 24)}"
    if kind == 8:
        return rng.choice(["sk_live_", "rk_live_"]) + token(ALNUM, 24)
    if kind == 9:
        return new_token()[2]
    header = b64url(json.dumps({"alg": rng.choice(["HS256", "RS256"]), "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"sub": token(string.digits, 8), "name": "Jane", "iat": 1700000000}).encode())
    return f"{header}.{payload}.{token(ALNUM + '_-', 43)}"


def private_key() -> str:
    kind = rng.choice(["RSA ", "EC ", "", "OPENSSH "])
    lines = [token(ALNUM + "+/", 64) for _ in range(rng.randint(3, 8))]
    return f"-----BEGIN {kind}PRIVATE KEY-----\n" + "\n".join(lines) + f"\n-----END {kind}PRIVATE KEY-----"


POSITIVE_TEMPLATES = {
    "EMAIL": ["Please send the invoice to {} by Friday.", "my email is {}", "Contact: {}", "cc {} and me", "({})", "Reply to <{}>."],
    "PHONE": ["Call me at {} tomorrow.", "phone: {}", "You can reach the desk on {}.", "Mobile {} (after 6pm)", "Tel. {}"],
    "CREDIT_CARD": ["My card number is {} exp 04/27", "charge {} please", "card: {}.", "Use the card {} for the booking"],
    "IBAN": ["Wire it to IBAN {} today.", "IBAN: {}", "Account {} at the bank", "pay to {}, reference 7781"],
    "US_SSN": ["SSN {} on the form", "my social security number is {}.", "ssn: {}", "Employee SSN: {} (verified)"],
    "IP_ADDRESS": ["The server at {} is down", "ssh root@{}", "Blocked requests from {} today", "host={} port=22", "ping {}."],
    "SECRET": ["Here is my key: {}", "export OPENAI_API_KEY={}", "token = \"{}\"", "Authorization: Bearer {}", "use {} for the API"],
}
GENERATORS = {
    "EMAIL": email, "PHONE": lambda: rng.choice(PHONES), "CREDIT_CARD": card, "IBAN": iban, "US_SSN": ssn,
    "IP_ADDRESS": lambda: rng.choice([ipv4(), ipv4(), rng.choice(IPV6)]), "SECRET": secret,
}  # fmt: skip

NEGATIVES = [
    "Order #A-2024-558812 shipped on 2024-01-15.", "Your order 8812345678 is on its way.", "ISBN 978-3-16-148410-0",
    "ISBN-10 0-306-40615-2 is the old edition", "Upgrade to version 1.2.3.4 before Monday.", "We run v2.10.3 in production",
    "release 10.0.19041.1 fixed it", "The meeting is on 15/01/2024 at 10:30.", "Jan 15, 2024 at 10:30:45",
    "It costs $1,299.99 or EUR 45.00 a month.", "Commit a94a8fe5ccb19ba61c4c0873d391e987982fbbd3 broke the build",
    "see 3f2c1a9 for the fix", "request id 550e8400-e29b-41d4-a716-446655440000", "MAC 00:1A:2B:3C:4D:5E on eth0",
    "UPS tracking 1Z999AA10123456784", "sk-learn is a Python library", "Use the task-manager-service-v2 image",
    "write to user at example dot com", "ping me @username on Slack", "mail root@localhost for the logs",
    "pi is 3.14159265358979 roughly", "call extension 555-1234 internally", "ZIP 90210-1234", "The year 2024 had 366 days.",
    "1234 5678 9012 3456 is the example in the docs", "999.1.1.1 is not an address", "the range 1.2.3 to 1.2.9",
    "eyJhbGciOi is how a token starts", "-----BEGIN CERTIFICATE-----\nMIIB" + "A" * 60 + "\n-----END CERTIFICATE-----",
    "-----BEGIN PUBLIC KEY-----\nMFkw" + "B" * 60 + "\n-----END PUBLIC KEY-----", "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "Room 404, floor 3, building 12", "score 12:30:45 in the final", "The ratio was 16:9 and 4:3.", "Serial SN-88-1234-5555",
    "Invoice INV-000123-2024 for 3 items", "The function returns 0xDEADBEEF on error", "Matrix 4 8 15 16 23 42",
    "a.b.c.d notation", "Send 100 dollars to Alice", "The patch is 12 KB", "Colors: #ff0000 and #00ff00",
    "temperature 36.6 at 08:15", "He was born in 1987 and moved in 2005.", "Build 20240115.3 passed", "Port 8080 is open",
    "The key is under the mat.", "PRIVATE KEY is a phrase in this sentence", "sk_test is a prefix", "AKIA is an AWS prefix",
    "ghp_ tokens are GitHub's", "Use the IBAN field for transfers", "The card ends in 4242.", "My SSN is on file.",
    "GB is Great Britain and DE Germany", "Version: 192.168.0.1 of the firmware", "firmware 10.1.1.1 is out",
    "Coordinates 48.8566, 2.3522", "Time 10:30:00 UTC", "see section 1.2.3.4.5 of the spec", "interval 00:00:00.000",
]
# Cases a careful reader labels one way and a deterministic detector may well get wrong: kept so the
# figures are honest rather than perfect by construction.
HARD_POSITIVES = [
    ("UK office: {}", "020 7946 0958", "PHONE"),  # national format of another country than the default region
    ("Numbers: {} 202-555-0199", "202-555-0143", "PHONE"),  # two numbers in one run of digits and spaces
    ("iban {} please", "de89 3704 0044 0532 0130 00", "IBAN"),  # lower case
    ("SSN {}", "123456789", "US_SSN"),  # no dashes
    ("the host is at:{}", "10.0.0.1", "IP_ADDRESS"),
    ("DNS {} and", "1.1.1.1", "IP_ADDRESS"),
    ("route {}/24 through the VPN", "10.20.0.0", "IP_ADDRESS"),
    ("the sequence {} is Visa's test number", "4111111111111111", "CREDIT_CARD"),
    ("EMAIL ME: {}", "JOHN.DOE@EXAMPLE.COM", "EMAIL"),
    ("phone {}", "(+44) 20 7946 0958", "PHONE"),
    ("ref AB12 3456 7890 1234 or {}", "DE89 3704 0044 0532 0130 00", "IBAN"),  # after a near miss
    ("my number is {}", "2025550143", "PHONE"),
    ("card {} exp 09/28", "4111-1111-1111-1111", "CREDIT_CARD"),
    ("aws_secret_access_key = {}", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "SECRET"),  # no prefix to know it by
    ("Ünïcödé user: {}", "zoë.müller@example.de", "EMAIL"),
]


def ean13() -> str:
    """A barcode number (EAN check digit, not Luhn): 13 digits that may pass Luhn by chance."""
    body = rng.choice(["40", "50", "54", "64"]) + "".join(rng.choice(string.digits) for _ in range(10))
    check = (10 - sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(body)) % 10) % 10
    return body + str(check)


NEAR_MISSES = {"CREDIT_CARD": bad_card, "IBAN": lambda: iban(valid=False)}


def line(template: str, value: str, entity: str | None) -> dict:
    start = template.index("{}")
    text = template.replace("{}", value, 1)
    entities = [{"entity": entity, "start": start, "end": start + len(value)}] if entity else []
    return {"text": text, "entities": entities}


def main() -> None:
    rows: list[dict] = []
    for entity, templates in POSITIVE_TEMPLATES.items():
        for i in range(30 if entity != "SECRET" else 44):
            rows.append(line(templates[i % len(templates)], GENERATORS[entity](), entity))
    for _ in range(8):
        rows.append(line("Key file:\n{}\nkeep it safe", private_key(), "SECRET"))
    for _ in range(25):  # two entities in one text
        a, b = rng.sample(list(GENERATORS), 2)
        va, vb = GENERATORS[a](), GENERATORS[b]()
        text = f"Details: {va}; also {vb}."
        rows.append({"text": text, "entities": [
            {"entity": a, "start": 9, "end": 9 + len(va)}, {"entity": b, "start": 9 + len(va) + 7, "end": 9 + len(va) + 7 + len(vb)}]})  # fmt: skip
    rows.extend({"text": t, "entities": []} for t in NEGATIVES)
    for entity, make in NEAR_MISSES.items():
        for i in range(15):
            rows.append(line(POSITIVE_TEMPLATES[entity][i % 4], make(), None))
    for i in range(10):
        rows.append(line(POSITIVE_TEMPLATES["PHONE"][0].replace("Call me at", "Order number"), "2025550" + token(string.digits, 3), None))
    rows.extend(line(template, value, entity) for template, value, entity in HARD_POSITIVES)
    for _ in range(20):
        rows.append(line(rng.choice(["EAN {} on the box", "barcode {}", "Product {} in stock"]), ean13(), None))
    OUT.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    print(f"{len(rows)} lines -> {OUT}")


if __name__ == "__main__":
    main()
