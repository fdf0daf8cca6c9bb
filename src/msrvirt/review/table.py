"""The claims table: who said what, in which message, and the evidence each claim needs.

The table is data (review/claims.toml, docs/review.md describes its form): the messages of
the thread, then one row per claim with the text it quotes, the claim as msrvirt judges
it, the evidence it needs (each a `Need`: an evidence kind, its parameters, what result
supports the claim, and the part of the claim it bears on) and its links to other
messages (disputed by, superseded by...).  Nothing here judges; review/judge.py does.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any
from urllib.parse import quote as urlquote

from msrvirt.errors import FileFormatError

TABLE_FILE = "claims.toml"
ORIGIN = f"review/{TABLE_FILE}"


class Axis(StrEnum):
    """What a claim's verdict is split by."""

    ALL = "all"  # the whole claim, not split
    MSR = "msr"  # per MSR (or group of MSRs)
    GUEST = "guest"  # per guest kind (CPUID)
    HOST = "host"  # per host configuration
    PART = "part"  # per part of the claim (premise, reason, conclusion)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scope:
    """The part of a claim a piece of evidence bears on: an axis and a label."""

    axis: Axis
    label: str

    @classmethod
    def parse(cls, text: str) -> Scope:
        """'msr:RSP1-3' -> Scope(MSR, 'RSP1-3'); ValueError for an unknown axis."""
        axis, sep, label = text.partition(":")
        if not sep or not label.strip():
            raise ValueError(f"a scope must read 'AXIS:LABEL', not {text!r}")
        return cls(axis=Axis(axis.strip()), label=label.strip())


WHOLE = Scope(axis=Axis.ALL, label="the claim")


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A message of the thread (or msrvirt's own documentation, for its own claims)."""

    key: str
    who: str
    date: str | None  # YYYY-MM-DD as posted; None for msrvirt's own claims
    message_id: str | None  # without the angle brackets
    subject: str

    @property
    def lore(self) -> str | None:
        """The message's address in the lore.kernel.org archive."""
        if self.message_id is None:
            return None
        return f"https://lore.kernel.org/all/{urlquote(self.message_id, safe='@')}/"

    @property
    def cite(self) -> str:
        """'Chao Gao, 2025-11-12, <id> (Re: [PATCH v9 08/22] ...)'."""
        parts = [self.who] + ([self.date] if self.date else [])
        if self.message_id:
            parts.append(f"<{self.message_id}>")
        return ", ".join(parts) + f" ({self.subject})"


class Relation(StrEnum):
    """How another message bears on a claim."""

    DISPUTED_BY = "disputed-by"  # another message disputes the claim or its rationale
    SUPERSEDED_BY = "superseded-by"  # a later message replaces the rule the claim argues under
    WITHDRAWN_BY = "withdrawn-by"  # the claim's author took it back
    AGREED_BY = "agreed-by"
    IN_REPLY_TO = "in-reply-to"  # the message the claim answers

    @property
    def flags(self) -> bool:
        """Whether the review flags the claim for this link (not mere context)."""
        return self in (Relation.DISPUTED_BY, Relation.SUPERSEDED_BY, Relation.WITHDRAWN_BY)


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """Another message's bearing on a claim, with the sentence that bears."""

    relation: Relation
    message: Message
    quote: str
    claim: str | None  # the claim of the table that message makes, if it is one


class EvidenceKind(StrEnum):
    """Kinds of evidence a claim can need; review/kinds.py registers a producer for each."""

    VMCS_FIELDS = "vmcs-fields"  # the VMCS guest/host fields of MSRs (arch/vmcs.py)
    BITMAP = "bitmap"  # intercept decisions of a policy for a host and guest
    BITMAP_DIFF = "bitmap-diff"  # which MSRs two policies' bitmaps differ in
    ACCESS = "access"  # the decision for one kind of access under several policies
    CONSUMES = "consumes"  # which MSRs an event delivery consumes in the machine
    MACHINE_STATE = "machine-state"  # an MSR's value at a point of a run of the machine
    CHECK = "check"  # the exhaustive checker's verdict on a design
    WRITES = "writes"  # how often a workload's guest writes MSRs (cost model)
    EXITS_DELTA = "exits-delta"  # the exits one policy saves over another (cost model)
    CONFORMANCE = "conformance"  # the real kernel of this machine against the model
    SOURCE = "source"  # a fact of the kernel source or the patch, cited
    HOST_CHECK = "host-check"  # the checker with the host configuration as input
    NESTED = "nested"  # the nested VMX model


@dataclass(frozen=True, slots=True, kw_only=True)
class Need:
    """One piece of evidence a claim needs.

    ``expect`` names the result that supports the claim (its vocabulary depends on the
    kind; review/kinds.py lists it); None when the evidence only informs.  ``params`` are
    the kind's parameters as the table gives them (lists become tuples).
    """

    kind: EvidenceKind
    scope: Scope
    expect: str | None
    params: tuple[tuple[str, Any], ...]

    def get(self, name: str, default: Any = None) -> Any:
        for key, value in self.params:
            if key == name:
                return value
        return default

    @property
    def param_names(self) -> frozenset[str]:
        return frozenset(key for key, _ in self.params)


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """One claim as posted: where it comes from, what it says, what decides it."""

    id: str
    number: int  # 1-based position in the table
    message: Message
    quote: str  # the message's own words
    text: str  # the claim msrvirt judges, a close paraphrase of the quote
    needs: tuple[Need, ...]
    links: tuple[Link, ...]

    @property
    def scopes(self) -> tuple[Scope, ...]:
        """The scopes of its needs, in the order they first appear."""
        return tuple(dict.fromkeys(n.scope for n in self.needs))


@dataclass(frozen=True, slots=True, kw_only=True)
class Table:
    messages: dict[str, Message]
    claims: tuple[Claim, ...]

    def claim(self, claim_id: str) -> Claim:
        for c in self.claims:
            if c.id == claim_id:
                return c
        raise KeyError(claim_id)


def _str(obj: Mapping[str, Any], key: str, where: str, *, optional: bool = False) -> Any:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise FileFormatError(ORIGIN, f"{where}: {key} must be a non-empty string, not {value!r}")
    return " ".join(value.split())


def _freeze(value: Any) -> Any:
    return tuple(_freeze(v) for v in value) if isinstance(value, list) else value


def _message(key: str, obj: Any) -> Message:
    where = f"message {key}"
    if not isinstance(obj, Mapping):
        raise FileFormatError(ORIGIN, f"{where} must be a table")
    extra = sorted(set(obj) - {"who", "date", "message_id", "subject"})
    if extra:
        raise FileFormatError(ORIGIN, f"{where}: unknown key {extra[0]!r}")
    return Message(key=key, who=_str(obj, "who", where), date=_str(obj, "date", where, optional=True),
                   message_id=_str(obj, "message_id", where, optional=True),
                   subject=_str(obj, "subject", where))


def _need(obj: Any, where: str) -> Need:
    if not isinstance(obj, Mapping):
        raise FileFormatError(ORIGIN, f"{where} must be a table")
    try:
        kind = EvidenceKind(str(obj.get("kind")))
        scope = Scope.parse(obj["scope"]) if "scope" in obj else WHOLE
    except (ValueError, TypeError) as err:
        raise FileFormatError(ORIGIN, f"{where}: {err}") from None
    expect = obj.get("expect")
    if expect is not None and not isinstance(expect, str):
        raise FileFormatError(ORIGIN, f"{where}: expect must be a string, not {expect!r}")
    params = tuple((k, _freeze(v)) for k, v in obj.items() if k not in ("kind", "scope", "expect"))
    return Need(kind=kind, scope=scope, expect=expect, params=params)


def _link(obj: Any, messages: Mapping[str, Message], where: str) -> tuple[Link, str | None]:
    if not isinstance(obj, Mapping):
        raise FileFormatError(ORIGIN, f"{where} must be a table")
    try:
        relation = Relation(str(obj.get("relation")))
    except ValueError as err:
        raise FileFormatError(ORIGIN, f"{where}: {err}") from None
    key = _str(obj, "message", where)
    if key not in messages:
        raise FileFormatError(ORIGIN, f"{where}: message must be a key of [messages], not {key!r}")
    claim = _str(obj, "claim", where, optional=True)
    return Link(relation=relation, message=messages[key], quote=_str(obj, "quote", where),
                claim=claim), claim


def parse_table(obj: Any) -> Table:
    """Build the table from its parsed TOML; FileFormatError naming the bad row and key."""
    if not isinstance(obj, Mapping) or set(obj) != {"messages", "claims"}:
        raise FileFormatError(ORIGIN, "the table must have exactly [messages] and [[claims]]")
    messages = {key: _message(key, m) for key, m in obj["messages"].items()}
    claims: list[Claim] = []
    referenced: list[tuple[str, str]] = []
    for number, row in enumerate(obj["claims"], 1):
        where = f"claim {number}"
        if not isinstance(row, Mapping):
            raise FileFormatError(ORIGIN, f"{where} must be a table")
        extra = sorted(set(row) - {"id", "message", "quote", "claim", "needs", "links"})
        if extra:
            raise FileFormatError(ORIGIN, f"{where}: unknown key {extra[0]!r}")
        claim_id = _str(row, "id", where)
        where = f"claim {claim_id}"
        key = _str(row, "message", where)
        if key not in messages:
            raise FileFormatError(ORIGIN, f"{where}: message must be a key of [messages], not {key!r}")
        needs = tuple(_need(n, f"{where}, need {i}") for i, n in enumerate(row.get("needs", []), 1))
        if not needs:
            raise FileFormatError(ORIGIN, f"{where} must need some evidence")
        links = []
        for i, n in enumerate(row.get("links", []), 1):
            link, other = _link(n, messages, f"{where}, link {i}")
            links.append(link)
            if other is not None:
                referenced.append((claim_id, other))
        claims.append(Claim(id=claim_id, number=number, message=messages[key],
                            quote=_str(row, "quote", where), text=_str(row, "claim", where),
                            needs=needs, links=tuple(links)))
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise FileFormatError(ORIGIN, f"claim ids must be unique, not {sorted(ids)}")
    for claim_id, other in referenced:
        if other not in ids:
            raise FileFormatError(ORIGIN, f"claim {claim_id}: a link's claim must be a claim id,"
                                  f" not {other!r}")
    return Table(messages=messages, claims=tuple(claims))


def load_table() -> Table:
    """The built-in claims table (not yet checked against the evidence kinds: judge.py does)."""
    text = (resources.files("msrvirt.review") / TABLE_FILE).read_text()
    try:
        return parse_table(tomllib.loads(text))
    except tomllib.TOMLDecodeError as err:
        raise FileFormatError(ORIGIN, f"not valid TOML: {err}") from None
