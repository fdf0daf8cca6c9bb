"""A minimal 16-bit assembler: hand-encoded instructions, labels and relative-jump fixups.

Each instruction is given as its bytes and its GNU as Intel-syntax text, so the
listing documents the code and a test can feed the same text to ``as`` and
compare bytes (tests/live/test_live_probe_code.py).  Only what the probe guest
needs: fixed encodings, 8-bit relative jumps, 16-bit relative calls, and
16-bit immediates holding a label's address.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from msrvirt.errors import UsageError


class Fixup(Enum):
    """How an instruction's last bytes refer to a label."""

    NONE = "none"
    REL8 = "rel8"  # Jcc/JMP short: signed byte, relative to the next instruction
    REL16 = "rel16"  # CALL near: signed word, relative to the next instruction
    ABS16 = "abs16"  # a 16-bit immediate holding the label's address


@dataclass(frozen=True, slots=True, kw_only=True)
class Line:
    """One assembled instruction (or a label, with no bytes)."""

    address: int
    code: bytes
    text: str  # GNU as, .intel_syntax noprefix, .code16


@dataclass(frozen=True, slots=True, kw_only=True)
class Program:
    """Assembled code: where it goes, its bytes, its labels, and the listing."""

    origin: int
    code: bytes
    labels: dict[str, int]
    lines: tuple[Line, ...]

    def listing(self) -> str:
        """Address, bytes and text of every line, like an assembler's listing."""
        out = []
        for line in self.lines:
            if line.code:
                out.append(f"{line.address:04x}  {line.code.hex(' '):<24} {line.text}")
            else:
                out.append(f"{line.address:04x}  {'':<24} {line.text}")
        return "\n".join(out)

    def gas_source(self) -> str:
        """The program as GNU as input (labels and instructions; addresses are absolute)."""
        return "\n".join([".intel_syntax noprefix", ".code16"]
                         + [line.text for line in self.lines]) + "\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Item:
    code: bytes
    text: str
    fixup: Fixup
    target: str


class Asm16:
    """Collect instructions and labels; `build` lays them out from ``origin`` and fixes jumps."""

    def __init__(self, origin: int) -> None:
        self.origin = origin
        self._items: list[_Item] = []

    def label(self, name: str) -> None:
        """Define ``name`` at the next instruction."""
        self._items.append(_Item(code=b"", text=f"{name}:", fixup=Fixup.NONE, target=name))

    def op(self, code: bytes, text: str) -> None:
        """One instruction with fixed bytes."""
        self._items.append(_Item(code=code, text=text, fixup=Fixup.NONE, target=""))

    def jump8(self, opcode: int, target: str, text: str) -> None:
        """A short jump (JMP EB, Jcc 7x) to ``target``: opcode, then a rel8 fixed at build."""
        self._items.append(
            _Item(code=bytes([opcode, 0]), text=text, fixup=Fixup.REL8, target=target))

    def call16(self, target: str, text: str) -> None:
        """CALL near (E8 rel16) to ``target``."""
        self._items.append(
            _Item(code=b"\xe8\x00\x00", text=text, fixup=Fixup.REL16, target=target))

    def imm16(self, prefix: bytes, target: str, text: str) -> None:
        """An instruction ending in a 16-bit immediate = ``target``'s address.

        ``text`` has ``{addr}`` where the address goes (GNU as gets the number).
        """
        self._items.append(
            _Item(code=prefix + b"\x00\x00", text=text, fixup=Fixup.ABS16, target=target))

    def build(self) -> Program:
        """Lay out, resolve every label reference, and return the program."""
        labels: dict[str, int] = {}
        address = self.origin
        for item in self._items:
            if not item.code:
                if item.target in labels:
                    raise UsageError(f"label {item.target!r} must be defined once")
                labels[item.target] = address
            address += len(item.code)
        lines = []
        address = self.origin
        for item in self._items:
            code, text = item.code, item.text
            if item.fixup is not Fixup.NONE:
                if item.target not in labels:
                    raise UsageError(f"label {item.target!r} must be defined")
                rel = labels[item.target] - (address + len(code))
                if item.fixup is Fixup.REL8:
                    if not -128 <= rel <= 127:
                        raise UsageError(f"jump to {item.target!r} must be short, not {rel} bytes")
                    code = code[:-1] + (rel & 0xFF).to_bytes(1, "little")
                elif item.fixup is Fixup.REL16:
                    code = code[:-2] + (rel & 0xFFFF).to_bytes(2, "little")
                else:
                    code = code[:-2] + labels[item.target].to_bytes(2, "little")
                    text = text.format(addr=f"{labels[item.target]:#x}")
            lines.append(Line(address=address, code=code, text=text))
            address += len(code)
        return Program(origin=self.origin, code=b"".join(line.code for line in lines),
                       labels=labels, lines=tuple(lines))
