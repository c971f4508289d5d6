"""What every run spec shares: one coercion of rendered values, field metadata that yields both the JSON schema
(Airflow Param, UI form) and the range checks of ``problems()``, and ``from_mapping``/``to_dict``.

A rendered template arrives as a string (``"10"``, ``"True"``, ``"{'a': 1}"``) unless the DAG renders natively;
:func:`coerce` is the one place such values become the types the spec declares. Pure logic, no I/O.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self, TypeVar

from elastic_inference.exceptions import SpecError

Kind = Literal["integer", "number", "boolean", "string", "array", "object"]
_NULLS = ("", "None", "null")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_KIND_TEXT = {
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "string": "a string",
    "array": "a list",
    "object": "a mapping",
}


def _literal(text: str) -> Any:
    """JSON, or the Python literal a non-native render gives (``{'a': 1}``, ``True``)."""
    try:
        return json.loads(text)
    except ValueError:
        return ast.literal_eval(text)


def coerce(value: Any, kind: Kind, field: str, *, optional: bool = False) -> Any:
    """``value`` as ``kind``; rendered strings are parsed. Raises :class:`SpecError` naming ``field``."""
    if value is None or (isinstance(value, str) and value.strip() in _NULLS and kind != "string"):
        if optional:
            return None
        message = f"{field} must be {_KIND_TEXT[kind]}, got {value!r}"
        raise SpecError(message, problems=[message])
    try:
        return _coerce(value, kind)
    except (TypeError, ValueError, SyntaxError):
        message = f"{field} must be {_KIND_TEXT[kind]}, got {value!r}"
        raise SpecError(message, problems=[message]) from None


def _coerce(value: Any, kind: Kind) -> Any:
    if kind == "string":
        return value if isinstance(value, str) else str(value)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError(value)
    if kind in ("integer", "number"):
        if isinstance(value, bool):
            raise TypeError(value)
        number = value if isinstance(value, (int, float)) else float(str(value).strip())
        if isinstance(number, float) and number.is_integer():
            return int(number)  # "10", 10.0 -> 10: renders as "10" (an HPA target, a label) like the user wrote it
        if kind == "integer" and not isinstance(number, int):
            raise ValueError(value)
        return number
    if isinstance(value, str):
        value = _literal(value)
    if kind == "array":
        if isinstance(value, (list, tuple)):
            return list(value)
        raise TypeError(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(value)


def spec_field(
    default: Any,
    kind: Kind,
    *,
    doc: str = "",
    param: str | None = None,
    optional: bool = False,
    hint: str = "",
    **schema: Any,
) -> Any:
    """A dataclass field with its JSON-schema keywords (``minimum``, ``maximum``, ``exclusiveMinimum``, ``enum``,
    ``pattern``, ``minItems``, ...). ``param`` is the name the user sets it by (default: the field name);
    ``hint`` says in words what ``pattern`` wants."""
    metadata = {"kind": kind, "doc": doc, "param": param, "optional": optional, "hint": hint, "schema": schema}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_schema(f: dataclasses.Field[Any]) -> dict[str, Any]:
    """The JSON schema of one spec field (enums carry no ``type``: the enum says it all)."""
    meta = f.metadata
    schema = dict(meta["schema"])
    if "enum" in schema:
        schema["enum"] = list(schema["enum"])
    else:
        schema["type"] = [meta["kind"], "null"] if meta["optional"] else meta["kind"]
    return schema


def range_problems(label: str, value: Any, schema: Mapping[str, Any], hint: str = "") -> list[str]:
    """The schema keywords a value breaks, as sentences naming ``label`` and the allowed range."""
    p: list[str] = []
    if value is None:
        return p
    if "enum" in schema and value not in schema["enum"]:
        p.append(f"{label}={value!r}: use one of {tuple(schema['enum'])}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            p.append(f"{label} must be >= {schema['minimum']}, got {value}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            p.append(f"{label} must be > {schema['exclusiveMinimum']}, got {value}")
        if "maximum" in schema and value > schema["maximum"]:
            p.append(f"{label} must be <= {schema['maximum']}, got {value}")
    if isinstance(value, str) and "pattern" in schema and not re.match(schema["pattern"], value):
        p.append(f"{label} {value!r} is not {hint or 'valid: it must match ' + schema['pattern']}")
    return p


S = TypeVar("S", bound="Spec")


@dataclasses.dataclass(frozen=True)
class Spec:
    """Base of the run specs (dataclasses whose fields are all :func:`spec_field`)."""

    #: where the user sets this spec's fields, for messages: ``"load_test."`` names ``load_test.hold_seconds``
    label_prefix: ClassVar[str] = ""
    #: keys :meth:`to_dict` adds (derived names) that :meth:`from_mapping` accepts and ignores
    derived: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def spec_fields(cls) -> tuple[dataclasses.Field[Any], ...]:
        return dataclasses.fields(cls)

    @classmethod
    def label(cls, name: str) -> str:
        f = next((f for f in cls.spec_fields() if f.name == name), None)
        param = f.metadata.get("param") if f is not None else None
        return param or f"{cls.label_prefix}{name}"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | str | None = None, **overrides: Any) -> Self:
        """Build from a mapping (or its rendered JSON/Python-literal text): unknown keys are refused, every
        value is coerced to its field's type; every failure is reported at once (:class:`SpecError`)."""
        mapping: Mapping[str, Any] = (
            coerce(values, "object", cls.label_prefix.rstrip(".") or cls.__name__)
            if isinstance(values, str)
            else values or {}
        )
        given = {**mapping, **overrides}
        known = {f.name: f for f in cls.spec_fields()}
        problems = []
        unknown = sorted(set(given) - set(known) - set(cls.derived))
        if unknown:
            problems.append(
                f"unknown {cls.label_prefix.rstrip('.') or cls.__name__} field(s) {unknown}: known are {sorted(known)}"
            )
        kwargs: dict[str, Any] = {}
        for name, value in given.items():
            f = known.get(name)
            if f is None:
                continue
            try:
                kwargs[name] = coerce(value, f.metadata["kind"], cls.label(name), optional=f.metadata["optional"])
            except SpecError as e:
                problems.extend(e.problems)
        if problems:
            raise SpecError(f"{cls.__name__}: " + "; ".join(problems), problems=problems)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (XCom) values; ``from_mapping(to_dict())`` gives the spec back."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in self.spec_fields()}

    def problems(self) -> list[str]:
        """Every problem (empty = valid), each naming the field and the fix. Subclasses add cross-field rules."""
        p: list[str] = []
        for f in self.spec_fields():
            p.extend(
                range_problems(self.label(f.name), getattr(self, f.name), f.metadata["schema"], f.metadata["hint"])
            )
        return p

    def validate(self) -> Self:
        problems = self.problems()
        if problems:
            raise SpecError(f"{type(self).__name__} is invalid:\n  - " + "\n  - ".join(problems), problems=problems)
        return self

    @classmethod
    def object_schema(cls, names: list[str]) -> dict[str, Any]:
        """The JSON schema of an object param holding ``names``: no ``required``, so a part is accepted (the
        left-out keys keep their defaults, merged in ``plan``)."""
        by_name = {f.name: f for f in cls.spec_fields()}
        return {
            "type": "object",
            "properties": {n: field_schema(by_name[n]) for n in names},
            "additionalProperties": False,  # a typo (hold_second) is refused, not silently ignored
        }

    @classmethod
    def defaults(cls: type[S], names: list[str]) -> dict[str, Any]:
        spec = cls()
        return {n: copy.deepcopy(getattr(spec, n)) for n in names}
