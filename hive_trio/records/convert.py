"""The one converter: strict structure hooks, tagged unions, wire renames, and the JSON encoding.

Every surface (MCP results, host.sock rows, dashboard frames, HelperEvent bodies) encodes through
``CONVERTER`` and ``dumps``, so a field is named in exactly one place and JSON is written one way.
Imports only sibling record modules. It must never grow behaviour beyond shape and encoding.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final, TypeVar, cast

import attrs
import cattrs
from cattrs.cols import is_sequence, list_structure_factory
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.strategies import configure_tagged_union
from cattrs.v import format_exception

from hive_trio.records.events import DashboardEvent, DeliveredEvent, HelperEvent, SentEvent
from hive_trio.records.host import HostRequest
from hive_trio.records.rows import Delivery, Message
from hive_trio.records.stream import FRAME_TAGS, DashboardAction, RequestId, StreamFrame

T = TypeVar("T")


class RecordError(ValueError):
    """Input that does not decode into the record it claims to be. The message is for a person."""


_JSON_TYPE_NAMES: Final = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}


def json_type_name(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _strict(kind: type[Any], label: str) -> Any:
    """A structure hook that accepts exactly `kind`, where cattrs would otherwise coerce (`str(5)`)."""

    def hook(value: Any, _: type[Any]) -> Any:
        # bool is an int subclass; a JSON `true` is never a count or an id.
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {label}, got a boolean")
        if not isinstance(value, kind):
            raise TypeError(f"expected {label}, got {json_type_name(value)}")
        return value

    return hook


# sqlite's INTEGER (every id, count and limit here) is 64-bit; a larger JSON number is a bad request, not
# an OverflowError deep inside a query.
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1


def _structure_int(value: Any, _: type[Any]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {json_type_name(value)}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise TypeError("expected an integer that fits in 64 bits")
    return value


def _structure_float(value: Any, _: type[Any]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {json_type_name(value)}")
    if not math.isfinite(value):
        raise TypeError("expected a finite number")
    return float(value)


def _structure_text(value: Any, _: type[Any]) -> str:
    """A JSON string that is real Unicode: a lone surrogate (`"\\ud800"`) cannot be stored or sent on."""
    text: str = _strict(str, "a string")(value, str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"text is not valid Unicode (a lone surrogate at offset {exc.start})") from None
    return text


def _strict_list_factory(kind: Any, conv: cattrs.BaseConverter) -> Any:
    """cattrs would turn any iterable into a list (`"abc"` becomes `["a", "b", "c"]`); demand a JSON array."""
    inner = list_structure_factory(kind, conv)

    def hook(value: Any, type_: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, got {json_type_name(value)}")
        return inner(value, type_)

    return hook


def _strict_attrs_factory(kind: Any, conv: cattrs.Converter) -> Any:
    """cattrs reads an attrs record from anything with `in` (a string, a list); demand a JSON object."""
    inner = make_dict_structure_fn(kind, conv)

    def hook(value: Any, type_: Any) -> Any:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected an object, got {json_type_name(value)}")
        return inner(value, type_)

    return hook


def _structure_text_or_list(value: Any, _: Any) -> str | list[str]:
    """An answer: one string, or a list of selections (a multi-choice question)."""
    if isinstance(value, str):
        return _structure_text(value, str)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [_structure_text(v, str) for v in value]
    raise TypeError("expected a string or a list of strings")


def _structure_time_or_none(value: Any, _: Any) -> float | str | None:
    """A moment: unix seconds, or an RFC 3339 string (`remind`'s `at`); parsed by whoever uses it."""
    if value is None:
        return None
    if isinstance(value, str):
        return _structure_text(value, str)
    return _structure_float(value, float)


def _structure_request_id(value: Any, _: Any) -> RequestId:
    if value is None or (isinstance(value, int | str) and not isinstance(value, bool)):
        return value
    raise TypeError(f"expected a number or a string, got {type(value).__name__}")


def _make_converter() -> cattrs.Converter:
    """The converter, configured here and only here."""
    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_structure_hook(str, _structure_text)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(bool, _strict(bool, "a boolean"))
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook_factory(is_sequence, _strict_list_factory)
    conv.register_structure_hook_factory(attrs.has, _strict_attrs_factory)
    # An answer (`AnswerText`): one string or a list of selections, each real Unicode.
    conv.register_structure_hook_func(lambda t: t == (str | list[str]), _structure_text_or_list)
    conv.register_structure_hook(RequestId, _structure_request_id)
    conv.register_structure_hook_func(lambda t: t == (float | str | None), _structure_time_or_none)
    # `from`/`to` are Python keywords; the wire names are hyperhive's.
    renames = {"sender": override(rename="from"), "recipient": override(rename="to")}
    for cls in (SentEvent, DeliveredEvent, Delivery, Message):
        fields = {a.name for a in attrs.fields(cls)}
        ov: dict[str, Any] = {k: v for k, v in renames.items() if k in fields}
        if cls in (SentEvent, DeliveredEvent):
            ov["id"] = override(omit_if_default=True)  # an event without an id reads as it always did
        conv.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, conv, **ov))
        conv.register_structure_hook(cls, make_dict_structure_fn(cls, conv, **ov))
    configure_tagged_union(HelperEvent, conv, tag_generator=_tag_of, tag_name="event")
    configure_tagged_union(DashboardEvent, conv, tag_generator=_tag_of, tag_name="kind")
    configure_tagged_union(HostRequest, conv, tag_generator=_tag_of, tag_name="cmd")
    configure_tagged_union(DashboardAction, conv, tag_generator=_tag_of, tag_name="op")
    configure_tagged_union(StreamFrame, conv, tag_generator=FRAME_TAGS.__getitem__, tag_name="type")
    return conv


def _tag_of(cls: type[Any]) -> str:
    tag: str = cls.tag_value
    return tag


CONVERTER: Final = _make_converter()


def _format_leaf(exc: BaseException, _type: type | None) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, TypeError | ValueError) and str(exc):
        return str(exc)
    return format_exception(exc, _type)


def describe_error(exc: BaseException) -> str:
    """One line naming each bad field (`... @ $.field`), from cattrs' nested validation errors."""
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc, format_exception=_format_leaf))
    if isinstance(exc, KeyError):
        return f"missing or unknown key {exc}"
    return str(exc) or type(exc).__name__


_UNION_NAMES: Final[dict[Any, str]] = {
    HelperEvent: "HelperEvent",
    DashboardEvent: "DashboardEvent",
    HostRequest: "host request",
}


def structure(data: Any, cls: type[T] | Any) -> T:
    """Decode plain data into `cls`; any mismatch is a `RecordError` with a readable reason."""
    try:
        result: T = cast(T, CONVERTER.structure(data, cls))
    except RecordError:
        raise
    except Exception as exc:
        name = _UNION_NAMES.get(cls) or getattr(cls, "__name__", "record")
        raise RecordError(f"invalid {name}: {describe_error(exc)}") from exc
    return result


def unstructure(record: Any, cls: Any = None) -> Any:
    """Plain data (dicts, lists, str, numbers) for a record, union members tagged (pass the union as `cls`)."""
    return CONVERTER.unstructure(record, cls) if cls is not None else CONVERTER.unstructure(record)


def unstructure_event(event: DashboardEvent) -> dict[str, Any]:
    data: dict[str, Any] = CONVERTER.unstructure(event, DashboardEvent)
    return data


def unstructure_frame(frame: StreamFrame) -> dict[str, Any]:
    data: dict[str, Any] = CONVERTER.unstructure(frame, StreamFrame)
    return data


# Built once: `json.dumps` with any option builds a new `JSONEncoder` per call (about a microsecond, on
# every tool result). The same class and options, so the output is byte for byte `json.dumps`'s.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(data: Any) -> str:
    """Plain data as compact JSON, non-ASCII kept as is: the one JSON encoding of every surface."""
    return _ENCODER.encode(data)


def to_json(record: Any, cls: Any = None) -> str:
    return dumps(unstructure(record, cls))


def from_json(text: str | bytes, cls: type[T] | Any) -> T:
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"not valid JSON: {exc}") from exc
    return cast(T, structure(data, cls))
