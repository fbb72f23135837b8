"""PowerShell objects as the parser sees them, from JSON or from CliXML.

`PSObject` is a dict whose keys are matched case-insensitively, as PowerShell matches
property names, and which remembers keys that appeared twice. `clixml_objects` turns an
`Export-Clixml` tree into the same shapes that `ConvertTo-Json` produces, so that one
set of value readers serves both: an object's string form is kept under `TOSTRING`, an
enum's number under `Value`, a multi-valued property becomes a list and `<Ref>` elements
resolve to the object they point at.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from xml.etree.ElementTree import Element

from shared.errors import InputError

# Not a key ConvertTo-Json can write, so it never collides with a real property.
TOSTRING = "\x00ToString"

_NS = "{http://schemas.microsoft.com/powershell/2004/04}"
_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_INTEGERS = {"I16", "I32", "I64", "U16", "U32", "U64", "By", "SB"}
_FLOATS = {"Db", "Sg", "D"}
_TEXTS = {"S", "G", "URI", "Version", "DT", "TS", "XD", "SBK", "BA", "SS", "PR"}
_LISTS = {"LST", "IE", "STK", "QUE"}
# Exchange objects nest a handful of levels; far deeper is hostile or broken input.
_MAX_DEPTH = 100
# Enums pair "value" with "Value"; any other key twice is a duplicate.
_ENUM_PAIR = "value"
# PowerShell writes numbers in ASCII; int() alone would also take "٤" or "1_0".
_INTEGER = re.compile(r"[+-]?[0-9]+")


class PSObject(dict[str, Any]):
    """A PowerShell object: keys matched in any case; repeated keys remembered."""

    def __init__(self, pairs: Iterable[tuple[str, Any]] = ()) -> None:
        super().__init__()
        self.duplicates: list[str] = []
        self._lower: dict[str, str] = {}
        for key, value in pairs:
            self.put(key, value)

    def put(self, key: str, value: Any) -> None:
        folded = key.lower()
        first = self._lower.get(folded)
        if first is None:
            self._lower[folded] = key
        elif first == key or folded != _ENUM_PAIR:
            self.duplicates.append(key)
        self[key] = value

    def has(self, name: str) -> bool:
        return name.lower() in self._lower

    def get_any(self, name: str) -> Any:
        key = self._lower.get(name.lower())
        return None if key is None else self[key]

    def values_named(self, name: str) -> list[Any]:
        """Every value whose key is `name` in any case (an enum's value/Value pair)."""
        return [value for key, value in self.items() if key.lower() == name.lower()]


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), text)


class _Reader:
    """Converts one CliXML tree; RefIds are scoped to the document."""

    def __init__(self) -> None:
        self.objects: dict[str, Any] = {}
        self.building: set[str] = set()
        self.type_names: dict[str, list[str]] = {}
        self.depth = 0

    def types_of(self, element: Element) -> list[str]:
        for child in element:
            tag = child.tag.removeprefix(_NS)
            if tag == "TN":
                names = [_unescape(t.text or "") for t in child if t.tag == _NS + "T"]
                self.type_names[child.get("RefId", "")] = names
                return names
            if tag == "TNRef":
                ref = child.get("RefId", "")
                if ref not in self.type_names:
                    raise InputError("CliXML refers to an unknown type list %r" % ref)
                return self.type_names[ref]
        return []

    def value(self, element: Element) -> Any:
        tag = element.tag.removeprefix(_NS)
        text = element.text or ""
        if tag == "Nil":
            return None
        if tag == "B":
            # Anything but true/false stays text, so the reader reports it instead of
            # reading it as False (a garbled IgnoreSTARTTLS must not pass).
            flag = text.strip().lower()
            return flag == "true" if flag in ("true", "false") else text
        if tag in _INTEGERS:
            return self.integer(tag, text)
        if tag in _FLOATS:
            return text.strip()
        if tag == "C":
            # A char is written as its UTF-16 code unit.
            code = self.integer(tag, text)
            if not 0 <= code <= 0xFFFF:
                raise InputError("CliXML <C> holds %r, not a character" % text[:40])
            return chr(code)
        if tag in _TEXTS:
            return _unescape(text)
        if tag == "Ref":
            return self.reference(element.get("RefId", ""))
        if tag == "Obj":
            return self.obj(element)
        raise InputError("CliXML element <%s> is not one PowerShell writes" % tag)

    def integer(self, tag: str, text: str) -> int:
        try:
            if not _INTEGER.fullmatch(text.strip()):
                raise ValueError(text)
            return int(text.strip())
        except ValueError:
            raise InputError("CliXML <%s> holds %r" % (tag, text[:40])) from None

    def reference(self, ref: str) -> Any:
        if ref in self.building:
            raise InputError("CliXML object %r refers to itself" % ref)
        if ref not in self.objects:
            raise InputError("CliXML refers to an unknown object %r" % ref)
        return self.objects[ref]

    def obj(self, element: Element) -> Any:
        ref = element.get("RefId")
        if ref is not None:
            if ref in self.objects or ref in self.building:
                raise InputError("CliXML defines object %r twice" % ref)
            self.building.add(ref)
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise InputError("CliXML is nested too deeply to be PowerShell output")
        converted = self._convert(element)
        self.depth -= 1
        if ref is not None:
            self.building.discard(ref)
            self.objects[ref] = converted
        return converted

    def _convert(self, element: Element) -> Any:
        self.types_of(element)
        result = PSObject()
        items: list[Any] | None = None
        for child in element:
            tag = child.tag.removeprefix(_NS)
            if tag in ("TN", "TNRef"):
                continue
            if tag == "ToString":
                result.put(TOSTRING, _unescape(child.text or ""))
            elif tag in ("Props", "MS"):
                for prop in child:
                    name = prop.get("N")
                    if name is None:
                        raise InputError("CliXML property without a name")
                    result.put(_unescape(name), self.value(prop))
            elif tag in _LISTS:
                items = [self.value(item) for item in child]
            elif tag == "DCT":
                items = None
                for entry in child:
                    parts = {e.get("N"): e for e in entry}
                    key, value = parts.get("Key"), parts.get("Value")
                    if key is None or value is None:
                        raise InputError("CliXML dictionary entry without Key or Value")
                    result.put(str(self.value(key)), self.value(value))
            else:
                # A bare primitive inside an object: an enum's number, a wrapped value.
                result.put("Value", self.value(child))
        if items is not None:
            return items
        if set(result) == {TOSTRING}:
            return result[TOSTRING]
        return result


def clixml_objects(root: Element) -> list[tuple[list[str], Any]]:
    """The top-level objects of an `<Objs>` document, each with its type names."""
    if root.tag.removeprefix(_NS) != "Objs":
        raise InputError("XML is not PowerShell CliXML (its root is <%s>)" % root.tag)
    reader = _Reader()
    found = []
    for child in root:
        if child.tag.removeprefix(_NS) == "Obj":
            types = reader.types_of(child)
            found.append((types, reader.obj(child)))
        else:
            found.append(([], reader.value(child)))
    return found
