"""Deterministic detectors of personal data and secrets, one per shape of finding.

Each detector is a candidate regex plus a validator (Luhn, mod-97, SSN rules, `ipaddress`,
`phonenumbers`, JWT header decoding), so the regexes can stay loose and cheap while precision comes
from the checks. Every candidate regex is linear on hostile input: it starts behind a negative
lookbehind of its own character class (so a search never restarts inside a run it already rejected)
and every repetition is bounded and, where the next token is disjoint, possessive (no backtracking).

Where a regex must start with a lookbehind, the lookbehind is written after the first character, so
the engine can skip ahead to the possible first characters; rare shapes also name `needles`, substrings
without which the regex is not run at all. Together they make ordinary prose cost ~100 us per KB.

Each detector also has a `live` regex, anchored at the end of the text: it matches from any position
whose text could still become, or change, a candidate if more text arrived. It is a superset by
design (holding back too much only delays a stream; too little would leak). The stream masker uses it
to hold back only what may still be part of a finding; `horizon` bounds how far back it can reach.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Callable

import orjson

from aigw.store.token_format import TOKEN_ID_ALPHABET, TOKEN_ID_LENGTH, TOKEN_PREFIX

ENTITIES = ("SECRET", "IBAN", "CREDIT_CARD", "US_SSN", "EMAIL", "IP_ADDRESS", "PHONE")  # overlap priority

Span = tuple[int, int]
Validator = Callable[[str, "re.Match[str]"], list[Span]]


@dataclass(frozen=True, slots=True)
class Detector:
    entity: str
    candidates: re.Pattern[str]
    validate: Validator  # the findings inside one candidate (absolute spans), often none
    live: re.Pattern[str]  # see the module docstring
    horizon: int  # the longest text `live` can match
    needles: tuple[str, ...] = ()  # a candidate contains one of these: without any, skip the regex


# --- e-mail ---------------------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]{1,64}+@[A-Za-z0-9-]{1,63}+(?:\.[A-Za-z0-9-]{1,63}+){1,8}+")
_EMAIL_LIVE = re.compile(r"(?<![\w.%+-])[\w.%+-]{1,64}+(?:@[A-Za-z0-9.-]{0,600})?\Z")
_TLD = re.compile(r"[A-Za-z]{2,24}|xn--[A-Za-z0-9-]{1,59}")


def _email(text: str, match: re.Match[str]) -> list[Span]:
    start, end = match.span()
    at = text.index("@", start)
    while start < at and text[start] == ".":
        start += 1
    if start == at:
        return []
    labels = text[at + 1 : end].split(".")
    while labels and not _TLD.fullmatch(labels[-1]):
        labels.pop()
    if len(labels) < 2 or any(label.startswith("-") or label.endswith("-") for label in labels):
        return []
    return [(start, at + 1 + len(".".join(labels)))]


# --- phone numbers --------------------------------------------------------------------------------

_SEP = r"[ \-.()/\u00a0]"
_PHONE = re.compile(rf"[+(\d](?<![\w+(][+(\d])(?:(?<=\d)|(?<=\()\+?\d|\d)(?:{_SEP}{{0,3}}+\d){{0,17}}+")
_PHONE_LIVE = re.compile(rf"(?<![\w+(])(?:\(\+?|\+)?(?:\d(?:{_SEP}{{0,3}}+\d){{0,17}}+)?{_SEP}{{0,3}}\Z")
# A bare run of digits is a phone number only after one of these words: order numbers, account
# numbers and timestamps are bare digits too.
_PHONE_WORDS = re.compile(r"(?:phone|tel|call|mobile|cell|fax|whatsapp|text me|sms|dial|reach me|my number|number is)\W{0,8}(?:\w+\W{1,3}){0,2}\Z", re.I)
_PHONE_CONTEXT = 32


_DIGIT_GROUPS = re.compile(r"\d+")


def _phone(region: str) -> Validator:
    # Imported when a pii policy looks for phone numbers, not with the gateway: its metadata costs
    # ~6 MiB of memory, which an instance without such a policy need not pay.
    from phonenumbers import Leniency, PhoneNumberMatcher

    @functools.lru_cache(maxsize=4096)  # the same number is often repeated in a conversation
    def numbers(candidate: str) -> tuple[tuple[int, int, bool], ...]:
        groups = [len(g) for g in _DIGIT_GROUPS.findall(candidate)]
        # Numbers are written in at most ~6 groups (+33 1 23 45 67 89), of 7 to 17 digits, with few
        # one-digit groups: runs like "1 1 1 1", dates, versions and lists of IPs are not worth the
        # library's time (~40 us a call).
        if not 7 <= sum(groups) <= 17 or len(groups) > 8 or groups.count(1) > 2:
            return ()
        matcher = PhoneNumberMatcher(candidate, region, leniency=Leniency.STRICT_GROUPING, max_tries=8)
        return tuple((n.start, n.end, n.raw_string.isdigit()) for n in matcher)

    def validate(text: str, match: re.Match[str]) -> list[Span]:
        base = match.start()
        found = []
        for start, end, bare in numbers(match.group()):
            start, end = base + start, base + end
            if bare and not _PHONE_WORDS.search(text[max(0, start - _PHONE_CONTEXT) : start]):
                continue
            found.append((start, end))
        return found

    return validate


# --- payment cards --------------------------------------------------------------------------------

_CARD = re.compile(
    r"\d(?<![\w.]\d)(?:\d{12,18}+|\d{3}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{3})?|\d{3}([ -])\d{6}\2\d{4,5})(?![\w-]|[.,]\d)"
)
_CARD_LIVE = re.compile(r"(?<![\w.])\d[\d -]{0,22}[.,]?\Z")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if i % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


# Groups of four digits after a country code and check digits are the inside of an IBAN (valid or not).
_IBAN_BEFORE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: [A-Z0-9]{4}){0,7} \Z")


def _card(text: str, match: re.Match[str]) -> list[Span]:
    start = match.start()
    if _IBAN_BEFORE.search(text[max(0, start - 40) : start]):
        return []
    digits = re.sub(r"\D", "", match.group())
    # Issuer ranges in use (Amex, Diners, JCB 3; Visa 4; Mastercard 51-55 and 2221-2720; Discover,
    # Maestro, UnionPay 5/6): other first digits are account or order numbers.
    issuer = digits[0] in "3456" or 2221 <= int(digits[:4]) <= 2720
    if issuer and len(set(digits)) > 1 and luhn_valid(digits):
        return [match.span()]
    return []


# --- IBAN -----------------------------------------------------------------------------------------

# The body is read in a lookahead: the candidate is one character, so the search goes on right after
# it and an IBAN that follows a near miss ("... 00 or GB82 ...") is still found.
_IBAN = re.compile(r"[A-Za-z](?<![A-Za-z0-9][A-Za-z])(?=([A-Za-z]\d{2}(?: ?[A-Za-z0-9]){11,30}+))")
_IBAN_LIVE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z](?:[A-Za-z](?:\d(?:\d(?: ?[A-Za-z0-9]){0,30}+ ?)?)?)?\Z")
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


_LETTER_DIGITS = str.maketrans({c: str(ord(c) - 55) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"})  # A=10 ... Z=35
_NUMERIC_BBAN = frozenset("AT BA BE CZ DE DK EE ES FI HR HU LT ME NO PL PT RS SE SI SK TN".split())


def iban_valid(iban: str) -> bool:
    """ISO 13616: the country's length, and mod 97 of the rearranged number is 1."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    if not iban[2:4].isdigit() or (iban[:2] in _NUMERIC_BBAN and not iban[4:].isdigit()):
        return False
    rearranged = iban[4:] + iban[:4]
    return int(rearranged.translate(_LETTER_DIGITS)) % 97 == 1


def _iban(text: str, match: re.Match[str]) -> list[Span]:
    start, stop = match.start(), match.end(1)
    length = IBAN_LENGTHS.get(text[start : start + 2].upper())
    if length is None:
        return []
    compact = text[start:stop].replace(" ", "")
    if len(compact) < length or not iban_valid(compact[:length].upper()):
        return []
    end, seen = start, 0
    while seen < length:  # where the last character of the IBAN is, spaces included
        seen += text[end] != " "
        end += 1
    return [] if end < len(text) and text[end].isalnum() else [(start, end)]


# --- US social security numbers -------------------------------------------------------------------

_SSN = re.compile(r"\d(?<![\w-]\d)\d{2}([- ]?)(\d{2})\1(\d{4})(?![\w-]|[.,]\d)")
# Nine bare digits are an SSN only after one of these (they are as often an id or an amount).
_SSN_WORDS = re.compile(r"(?:ssn|ss#|social security(?: number| no\.?)?|tax id|tin)\W{0,12}(?:is\W{1,3})?\Z", re.I)
_SSN_LIVE = re.compile(r"(?<![\w-])\d[\d -]{0,10}[.,]?\Z")


def _ssn(text: str, match: re.Match[str]) -> list[Span]:
    area, (separator, group, serial) = match.group()[:3], match.groups()
    if not separator and not _SSN_WORDS.search(text[max(0, match.start() - 32) : match.start()]):
        return []
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return []
    return [match.span()]


# --- IP addresses ---------------------------------------------------------------------------------

_IPV4 = re.compile(r"\d(?<![\w.]\d)\d{0,2}+(?:\.\d{1,3}+){3}(?![\w]|\.\d)")
_IPV4_LIVE = re.compile(r"(?<![\w.])[\d.]{1,16}\Z")
# "version 1.2.3.4" is a version number: a dotted quad right after one of these words is not an address.
_VERSION_WORDS = re.compile(r"(?:version|ver|release|build|firmware|v)[\s:.#]{0,3}\Z", re.I)
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f:.]{2,45}+(?![\w:.])")
_IPV6_LIVE = re.compile(r"(?<![\w:.])[0-9A-Fa-f:.]{1,46}\Z")


def _ipv4(text: str, match: re.Match[str]) -> list[Span]:
    if any(int(octet) > 255 or octet != str(int(octet)) for octet in match.group().split(".")):
        return []  # 256 and up; leading zeros (01.02.03.04) are not how addresses are written
    start = match.start()
    return [] if _VERSION_WORDS.search(text[max(0, start - 16) : start]) else [match.span()]


def _ipv6(text: str, match: re.Match[str]) -> list[Span]:
    candidate = match.group().rstrip(".")
    if candidate.count(":") < 2 or not any(c not in ":." for c in candidate):
        return []
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return []
    return [(match.start(), match.start() + len(candidate))]


# --- secrets --------------------------------------------------------------------------------------

_KEYS = re.compile(
    r"(?<![\w-])(?:"
    r"sk-(?P<sk>[A-Za-z0-9_-]{20,512}+)"  # OpenAI (sk-, sk-proj-, sk-svcacct-), Anthropic (sk-ant-)
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])"  # AWS access key ids
    r"|AIza[0-9A-Za-z_-]{35}(?![\w-])"  # Google API keys
    r"|gh[pousr]_[A-Za-z0-9]{36,255}+|github_pat_[A-Za-z0-9_]{22,255}+"  # GitHub
    r"|xox[abprs]-[A-Za-z0-9-]{10,255}+"  # Slack
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{16,255}+"  # Stripe
    rf"|{TOKEN_PREFIX}[{TOKEN_ID_ALPHABET}]{{{TOKEN_ID_LENGTH}}}_[A-Za-z0-9_-]{{43,64}}+"  # this gateway's tokens
    r")"
)
_KEY_NEEDLES = ("sk-", "AKIA", "ASIA", "AIza", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox", "k_live_", "k_test_", TOKEN_PREFIX)
_KEYS_LIVE = re.compile(r"(?<![\w-])[A-Za-z0-9_-]{1,600}\Z")


def _key(text: str, match: re.Match[str]) -> list[Span]:
    body = match.group("sk")
    if body is not None:  # "sk-" starts ordinary words too: a key is long and mixes cases and digits
        mixed = any(c.isdigit() for c in body) and any(c.isupper() for c in body) and any(c.islower() for c in body)
        if len(body) < 32 or not mixed:
            return []
    return [match.span()]


_JWT = re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{5,2048}+\.[A-Za-z0-9_-]{5,8192}+\.[A-Za-z0-9_-]{0,2048}+")
_JWT_LIVE = re.compile(
    r"(?<![\w-])e(?:y(?:J[A-Za-z0-9_-]{0,2048}+(?:\.[A-Za-z0-9_-]{0,8192}+(?:\.[A-Za-z0-9_-]{0,2048}+)?)?)?)?\Z"
)


def _jwt(text: str, match: re.Match[str]) -> list[Span]:
    header = match.group().partition(".")[0]
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):
        return []
    return [match.span()] if isinstance(decoded, dict) and "alg" in decoded else []


# A PEM private key: the header, a body with no "-----" in it, the footer. Without a footer within
# 16 KiB (a 4096-bit RSA key is ~3.3 KB), the header and the base64 lines right after it (a key cut off).
_KEY_BLOCK_BODY = 16384
_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----(?:"
    rf"(?:[^-]|-(?!----)){{0,{_KEY_BLOCK_BODY}}}+-----END [A-Z0-9 ]{{0,40}}PRIVATE KEY-----"
    r"|(?:\r?\n[A-Za-z0-9+/=]{1,76}+(?![^\r\n])){0,200}+)"
)
_PRIVATE_KEY_LIVE = re.compile(
    rf"-----BEGIN [A-Z0-9 ]{{0,40}}PRIVATE KEY-----(?:[^-]|-(?!----)){{0,{_KEY_BLOCK_BODY}}}+(?:-{{1,5}}[A-Z0-9 ]{{0,60}}-{{0,5}})?\Z"
    r"|-{1,5}(?:[A-Z0-9 ]{1,60}-{0,5})?\Z"
)


def _private_key(text: str, match: re.Match[str]) -> list[Span]:
    start, end = match.span()
    while end > start and text[end - 1].isspace():
        end -= 1
    return [(start, end)]


def build_detectors(entities: frozenset[str], region: str) -> tuple[Detector, ...]:
    """The detectors of the chosen entities, in overlap priority order."""
    all_detectors = (
        Detector("SECRET", _PRIVATE_KEY, _private_key, _PRIVATE_KEY_LIVE, _KEY_BLOCK_BODY + 200, ("-----BEGIN",)),
        Detector("SECRET", _JWT, _jwt, _JWT_LIVE, 12300, ("eyJ",)),
        Detector("SECRET", _KEYS, _key, _KEYS_LIVE, 600, _KEY_NEEDLES),
        Detector("IBAN", _IBAN, _iban, _IBAN_LIVE, 66),
        Detector("CREDIT_CARD", _CARD, _card, _CARD_LIVE, 24),
        Detector("US_SSN", _SSN, _ssn, _SSN_LIVE, 13),
        Detector("EMAIL", _EMAIL, _email, _EMAIL_LIVE, 666, ("@",)),
        Detector("IP_ADDRESS", _IPV4, _ipv4, _IPV4_LIVE, 16),
        Detector("IP_ADDRESS", _IPV6, _ipv6, _IPV6_LIVE, 46, (":",)),
        Detector("PHONE", _PHONE, _phone(region), _PHONE_LIVE, 80),
    )
    return tuple(d for d in all_detectors if d.entity in entities)


def region_known(region: str) -> bool:
    import phonenumbers  # see _phone

    return region in phonenumbers.SUPPORTED_REGIONS
