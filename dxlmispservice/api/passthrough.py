"""Modern PyMISP names: the allow-list rules, argument binding and JSON in and out.

Any public method of :class:`pymisp.PyMISP` named in ``apiNames`` becomes a topic whose payload keys are
the method's keyword arguments. Everything that can be decided from PyMISP's class is decided once, at
build time (:func:`build_handler`), never per request:

* **The rules** (:func:`refusal_reason`). Refused, with the reason in the start error:
  private and dunder names; properties and other non-method attributes; static helpers that do not call
  MISP; methods that read or write files on the service's host (a parameter typed ``Path``, ``BinaryIO``,
  ``BytesIO``, ``StringIO``, ``IO``, ``BufferedIOBase``..., or named like ``path``/``filepath``/``filename``);
  methods that return raw bytes (return annotation ``bytes``, ``BytesIO``, ``IO``, ``requests.Response``);
  and the small explicit :data:`DENIED` set, each with its reason.
* **Binding.** The payload is bound to the method's signature before MISP is called: an unknown or missing
  argument raises :class:`~dxlmispservice.errors.InvalidArguments` listing the accepted ones. ``pythonify``
  is the service's business (always ``False``) and is refused from payloads.
* **Entities in.** A parameter annotated with a MISP entity class (``MISPEvent``, ``MISPAttribute``,
  ``MISPObject``, ``MISPSighting``, ``MISPTag``...) takes a JSON object, bare or wrapped
  (``{"Event": {...}}``); where several classes fit, the wrapper key picks one. Where the parameter also
  takes an id or UUID (``event: MISPEvent | int | str``), an object with a ``uuid`` or ``id`` stands for
  that identifier, which is all PyMISP would use of it.
* **Path parameters.** What PyMISP puts into MISP's URL path is found by calling it
  (:mod:`~dxlmispservice.api.pathprobe`; a method the probe cannot classify is refused) and, for entity,
  ``UUID`` and ``*_id`` parameters, by the annotation; each such value is checked before MISP is called
  (:mod:`~dxlmispservice.api.pathargs`).
* **JSON out.** Results come back as MISP's JSON (:func:`to_json`).
"""
from __future__ import annotations

import inspect
import json
import re
import types
from collections import abc
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable, Mapping
from uuid import UUID

import pymisp
import requests
from pymisp import PyMISP
from pymisp.abstract import AbstractMISP
from pymisp.exceptions import MISPServerError, PyMISPEmptyResponse, PyMISPError, PyMISPUnexpectedResponse

from dxlmispservice.api.handler import PAGING
from dxlmispservice.api.pathargs import ID_ONLY_ENTITIES, MAX_ID, check_path_kwargs, check_path_value
from dxlmispservice.api.pathprobe import PathParameters, Unclassified, path_parameters
from dxlmispservice.api.references import entity_reference, is_id_first
from dxlmispservice.errors import InternalError, InvalidArguments, MispServiceError
from dxlmispservice.events.feedstate import MAX_TIMESTAMP
from dxlmispservice.transport import requests_sent

if TYPE_CHECKING:
    from dxlmispservice.misp import MispConnection

#: Names refused by design although the generic rules would let them through: name -> reason.
DENIED: dict[str, str] = {
    "direct_call": "it calls any MISP URL named in the payload, which would bypass this allow-list",
    "toggle_global_pythonify": "it switches the shared client for every request to Python objects",
    "get_all_functions": "with not_implemented=true it reads PyMISP's source file on the service's host",
    "change_user_password": "it changes the password of the service's own MISP account",
}

#: Arguments the service sets itself: they are refused from payloads.
FORCED: dict[str, Any] = {"pythonify": False}

_FILE_TYPES = re.compile(r"\b(Path|PurePath|PathLike|IO|BinaryIO|TextIO|IOBase|BufferedIOBase|BufferedReader"
                         r"|RawIOBase|BytesIO|StringIO)\b")
_FILE_NAMES = re.compile(r"^(path|.*_path|filepath|file_path|filename|file_name|file|fp|fd|.*_file|directory|dirname)$")
_RAW_RETURNS = re.compile(r"\b(bytes|bytearray|memoryview|BytesIO|IO|BinaryIO|Response)\b")
_ENTITY_NAMES = re.compile(r"\b(AbstractMISP|MISP[A-Za-z]+)\b")
_WRAPPER_OVERRIDES = {"MISPOrganisationBlocklist": "OrgBlocklist"}
_NOT_FROM_JSON = {"MISPObjectAttribute"}  # needs its object's template: only ever built inside a MISPObject


def _entity_classes() -> dict[str, type[AbstractMISP]]:
    """Every entity class pymisp exports, by class name."""
    found: dict[str, type[AbstractMISP]] = {}
    for name in dir(pymisp):
        obj = getattr(pymisp, name)
        if inspect.isclass(obj) and issubclass(obj, AbstractMISP) and obj is not AbstractMISP:
            found[obj.__name__] = obj
    return found


_ENTITIES = _entity_classes()
#: The key MISP wraps each entity in ({"Event": {...}}) -> the class.
WRAPPERS: dict[str, type[AbstractMISP]] = {
    _WRAPPER_OVERRIDES.get(name, name[4:]): cls
    for name, cls in _ENTITIES.items() if name.startswith("MISP") and name not in _NOT_FROM_JSON
}


def _text(annotation: Any) -> str:
    """An annotation as text (PyMISP's annotations are strings already)."""
    if annotation is inspect.Parameter.empty or annotation is inspect.Signature.empty:
        return ""
    if isinstance(annotation, str):
        return annotation
    return getattr(annotation, "__name__", repr(annotation))


def refusal_reason(name: str, cls: type = PyMISP) -> str | None:
    """Why ``name`` may not be served as a pass-through topic, or None when it may.

    Raises KeyError when ``cls`` has no such attribute at all."""
    if name.startswith("_"):
        return "private and dunder names are never served"
    try:
        member = inspect.getattr_static(cls, name)
    except AttributeError:
        raise KeyError(name) from None
    if name in DENIED:
        return DENIED[name]
    if isinstance(member, (staticmethod, classmethod)):
        return "it is a static helper that does not call MISP"
    if not isinstance(member, types.FunctionType):
        return "it is a property or attribute, not a method"
    signature = inspect.signature(member)
    for parameter in list(signature.parameters.values())[1:]:
        if _FILE_TYPES.search(_text(parameter.annotation)):
            return f"it reads or writes files on the service's host (parameter '{parameter.name}' is typed " \
                   f"{_text(parameter.annotation)})"
        if _FILE_NAMES.match(parameter.name):
            return f"it reads or writes files on the service's host (parameter '{parameter.name}')"
    returns = _text(signature.return_annotation)
    if _RAW_RETURNS.search(returns):
        return f"it returns raw bytes (returns {returns})"
    if cls is PyMISP:
        try:
            path_parameters(name)
        except Unclassified as exc:
            return str(exc)
    return None


def public_names(cls: type = PyMISP) -> list[str]:
    """Every public attribute name of ``cls`` (allowed or not)."""
    return sorted(name for name in dir(cls) if not name.startswith("_"))


def allowed_names(cls: type = PyMISP) -> list[str]:
    """The public names of ``cls`` that pass the rules."""
    return [name for name in public_names(cls) if refusal_reason(name, cls) is None]


#: The JSON scalar types: to_json returns these as they are.
_PLAIN = frozenset((str, int, float, bool, type(None)))


def to_json(value: Any) -> Any:
    """A PyMISP result as MISP's JSON: entities become their dicts, containers are mapped.

    With ``pythonify=False`` PyMISP answers plain JSON, so plain dicts, lists and scalars take a fast path
    (exact type checks, no call per scalar); anything else goes through :func:`_convert`."""
    kind = type(value)
    if kind is dict:
        return {key if type(key) is str else str(key): item if type(item) in _PLAIN else to_json(item)
                for key, item in value.items()}
    if kind is list:
        return [item if type(item) in _PLAIN else to_json(item) for item in value]
    if kind in _PLAIN:
        return value
    return _convert(value)


def _convert(value: Any) -> Any:
    """:func:`to_json` for what is not a plain dict, list or JSON scalar."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, AbstractMISP):
        return to_json(value.jsonable())
    if isinstance(value, abc.Mapping):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(item) for item in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return to_json(value.value)
    raise InternalError(f"PyMISP returned a {type(value).__name__}, which has no JSON form")


#: What PyMISP raises about MISP's answer or the transport, never about its arguments.
_ABOUT_MISP = (MISPServerError, PyMISPUnexpectedResponse, PyMISPEmptyResponse, json.JSONDecodeError,
               requests.RequestException)


def invalid_library_error(exc: Exception) -> bool:
    """True for PyMISP's own argument checks (as opposed to MISP or transport failures)."""
    if isinstance(exc, _ABOUT_MISP):
        return False
    return isinstance(exc, (PyMISPError, ValueError))


def call_misp(misp: MispConnection, api_name: str, fn: Callable[[PyMISP], Any]) -> Any:
    """Run ``fn`` through the shared client. PyMISP's own argument checks, and any failure of PyMISP's
    before it sent MISP a request (it could not use the arguments), become InvalidArguments; a failure
    after a request was sent is left to the handler (internal_error)."""
    sent: list[int] = []  # the thread's count as fn starts (building PyMISP first sends requests too)

    def run(pymisp: PyMISP) -> Any:
        sent.append(requests_sent())
        return fn(pymisp)

    try:
        return misp.call(run)
    except MispServiceError:
        raise
    except Exception as exc:
        if invalid_library_error(exc):
            raise InvalidArguments(f"{api_name}: {exc}") from exc
        if sent and requests_sent() == sent[0] and not isinstance(exc, _ABOUT_MISP):
            raise InvalidArguments(f"{api_name}: PyMISP could not use these arguments "
                                   f"({type(exc).__name__}: {exc}); check them against the docs") from exc
        raise


@dataclass(frozen=True)
class _Param:
    """What the build step learnt about one parameter."""

    classes: tuple[type[AbstractMISP], ...] = ()  # concrete entity classes named in the annotation
    generic: bool = False                          # AbstractMISP: any entity, picked by its wrapper
    takes_dict: bool = False                       # a plain dict is fine as it is
    takes_list: bool = False                       # list/Iterable: a list of entities is fine
    identifier: bool = False                       # a string for it goes into MISP's URL
    reference: bool = False                        # an entity or its id/UUID: PyMISP only uses the id
    id_only: bool = False                          # names an entity MISP finds by id or UUID only
    moment: bool = False                           # takes a time: a number there is epoch seconds
    scalar: str = ""                               # "bool", "int" or "str" when that is all it takes
    structures: frozenset[str] = frozenset()       # "object" and/or "list": the JSON structures it takes


def _top_level(text: str) -> str:
    """An annotation with every ``[...]`` removed: ``dict[str, Any] | int`` -> ``dict | int``."""
    while "[" in text:
        stripped = re.sub(r"\[[^\[\]]*\]", "", text)
        if stripped == text:
            break
        text = stripped
    return text


def _describe_param(parameter: inspect.Parameter) -> _Param:
    text = _text(parameter.annotation)
    top = _top_level(text)
    names = set(_ENTITY_NAMES.findall(text))
    classes = tuple(_ENTITIES[n] for n in sorted(names) if n in _ENTITIES)
    generic = "AbstractMISP" in names
    is_entity = bool(classes or generic)
    identifier = bool(is_entity or re.search(r"\bUUID\b", text) or parameter.name.endswith("_id"))
    takes_dict = bool(re.search(r"\bdict\b", top))
    takes_list = bool(re.search(r"\b(list|Iterable|Sequence)\b", top))
    return _Param(classes=classes, generic=generic, takes_dict=takes_dict, takes_list=takes_list,
                  identifier=identifier, reference=is_entity and bool(re.search(r"\b(int|str|UUID)\b", top)),
                  id_only=not generic and bool(names & ID_ONLY_ENTITIES),
                  moment=bool(re.search(r"\b(datetime|date)\b", top)),
                  scalar=_SCALARS.get(top.replace(" | None", ""), ""), structures=_structures(top, is_entity))


#: An annotation that takes one JSON scalar type only (``| None`` aside) -> that type.
_SCALARS = {"bool": "bool", "int": "int", "str": "str"}
#: Annotation names under which a JSON object or array may stand.
_OPEN = re.compile(r"\b(Any|SearchParameterTypes)\b")


def _structures(top: str, is_entity: bool) -> frozenset[str]:
    """The JSON structures (object, list) a parameter annotated ``top`` takes; all of them when it is
    not annotated or takes anything."""
    if not top or _OPEN.search(top):
        return frozenset(("object", "list"))
    taken = set()
    if is_entity or re.search(r"\b(dict|Mapping)\b", top):
        taken.add("object")
    if re.search(r"\b(list|Iterable|Sequence|tuple)\b", top):
        taken.add("list")
    return frozenset(taken)


def _check_type(api_name: str, key: str, value: Any, spec: _Param) -> Any:
    """``value`` if its JSON type is one the parameter takes (0 and 1 stand for false and true); else
    InvalidArguments naming the key and what it takes."""
    if value is None:
        return value
    structure = "object" if isinstance(value, dict) else "list" if isinstance(value, list) else None
    if structure is not None and structure not in spec.structures:
        raise InvalidArguments(f"{api_name}: '{key}' takes {_taken(spec)}, not a JSON {structure}")
    if spec.scalar == "bool" and not isinstance(value, bool):
        if type(value) is int and value in (0, 1):
            return bool(value)
        raise InvalidArguments(f"{api_name}: '{key}' takes true or false, not {value!r:.40}")
    if spec.scalar == "int" and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID):
        raise InvalidArguments(f"{api_name}: '{key}' takes a whole number from 0 to 2**63 - 1, not {value!r:.40}")
    if spec.moment:
        for number in (value if isinstance(value, list) else [value]):
            if isinstance(number, (int, float)) and not isinstance(number, bool) and not 0 <= number <= MAX_TIMESTAMP:
                raise InvalidArguments(f"{api_name}: '{key}' takes epoch seconds from 0 to {MAX_TIMESTAMP} (or a "
                                       f"date or duration string), not {number!r:.40}")
    if spec.scalar == "str" and not isinstance(value, str):
        raise InvalidArguments(f"{api_name}: '{key}' takes a string, not {value!r:.40}")
    return value


def _taken(spec: _Param) -> str:
    if spec.scalar:
        return {"bool": "true or false", "int": "a whole number", "str": "a string"}[spec.scalar]
    if "object" in spec.structures:
        return "a JSON object or a single value"
    if "list" in spec.structures:
        return "a list or a single value"
    return "a single value (a string, number or boolean)"


def _entity(api_name: str, key: str, value: dict[str, Any], spec: _Param) -> Any:
    """A JSON object -> the entity class its annotation (or its wrapper key) asks for; where the parameter
    also takes an id or UUID, an object that has one stands for it (PyMISP would use only that)."""
    wrapper = next(iter(value)) if len(value) == 1 else None
    cls = WRAPPERS.get(wrapper) if wrapper is not None and isinstance(value[wrapper], dict) else None
    if cls is not None:
        if spec.classes and not spec.generic and not issubclass(cls, spec.classes):
            raise InvalidArguments(f"{api_name}: '{key}' takes {_names(spec.classes)}, not a {wrapper}")
        body = dict(value[wrapper])
    else:
        body = dict(value)
        cls = spec.classes[0] if len(spec.classes) == 1 and not spec.generic else None
    if spec.reference:
        reference = entity_reference(body, id_first=is_id_first(cls))
        if reference is not None:
            return reference
    if cls is None:
        if spec.takes_dict or spec.generic:
            return value
        wrappers = ", ".join("{\"%s\": {...}}" % w for w, c in WRAPPERS.items() if c in spec.classes)
        raise InvalidArguments(f"{api_name}: '{key}' takes one of {_names(spec.classes)}: wrap it as {wrappers}")
    try:
        entity = cls(name=body.get("name", "")) if issubclass(cls, pymisp.MISPObject) else cls()
        entity.from_dict(**body)
    except Exception as exc:  # PyMISP's constructors raise many kinds on bad input
        raise InvalidArguments(f"{api_name}: '{key}' is not a valid {cls.__name__}: {exc}") from exc
    return entity


def _names(classes: tuple[type, ...]) -> str:
    return " or ".join(c.__name__ for c in classes)


def check_numbers(api_name: str, payload: Mapping[str, Any]) -> None:
    """InvalidArguments naming the place of the first number anywhere in ``payload`` that MISP cannot hold
    (beyond +-(2**63 - 1))."""
    stack: list[tuple[str, Any]] = [(key, value) for key, value in payload.items()]
    while stack:
        place, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((f"{place}.{key}", item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((f"{place}[{index}]", item) for index, item in enumerate(value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > MAX_ID:
            raise InvalidArguments(f"{api_name}: the number at '{place}' is out of range ({value!r:.30}): MISP "
                                   "takes numbers up to 2**63 - 1")


@dataclass(frozen=True)
class PassthroughHandler:
    """The topic handler for one allow-listed PyMISP method: bind, convert, call, JSON out."""

    name: str
    signature: inspect.Signature        # without ``self``
    params: Mapping[str, _Param] = field(default_factory=dict)
    forced: Mapping[str, Any] = field(default_factory=dict)
    path: PathParameters = PathParameters(frozenset())  # what the probe saw go into MISP's URL path

    @property
    def paging_advice(self) -> str | None:
        """How to ask for an answer too big in parts: by ``limit`` and ``page`` when the method takes them."""
        return PAGING if {"limit", "page"} <= set(self.signature.parameters) else None

    def accepted(self) -> str:
        """The accepted payload keys, required ones marked."""
        parts = []
        for parameter in self.signature.parameters.values():
            if parameter.name in self.forced:
                continue
            if parameter.kind is parameter.VAR_KEYWORD:
                parts.append("any other key (passed to MISP as it is)")
            elif parameter.default is parameter.empty:
                parts.append(f"{parameter.name} (required)")
            else:
                parts.append(parameter.name)
        return ", ".join(parts) or "none (send {})"

    def bind(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The payload as checked, converted keyword arguments (raises InvalidArguments)."""
        refused = sorted(set(payload) & set(FORCED))
        if refused:
            raise InvalidArguments(f"{self.name}: '{refused[0]}' is set by the service and cannot be sent. "
                                   f"Accepted arguments: {self.accepted()}")
        check_numbers(self.name, payload)
        try:
            bound = self.signature.bind(**payload)
        except TypeError as exc:
            raise InvalidArguments(f"{self.name}: {exc}. Accepted arguments: {self.accepted()}") from exc
        kwargs: dict[str, Any] = {}
        for key, value in bound.arguments.items():
            if self.signature.parameters[key].kind is inspect.Parameter.VAR_KEYWORD:
                if self.path.kwargs:
                    check_path_kwargs(self.name, value)
                kwargs.update(value)
                continue
            spec = self.params.get(key, _Param(structures=frozenset(("object", "list"))))
            value = _check_type(self.name, key, value, spec)
            if isinstance(value, dict) and (spec.classes or spec.generic):
                value = _entity(self.name, key, value, spec)
            elif isinstance(value, list) and spec.takes_list and spec.classes:
                if not all(isinstance(v, dict) for v in value):
                    raise InvalidArguments(f"{self.name}: '{key}' takes one or a list of JSON objects "
                                           f"({_names(spec.classes)}), and the list holds something else")
                value = [_entity(self.name, key, v, spec) for v in value]
            if key in self.path.names or (spec.identifier and isinstance(value, (str, AbstractMISP))):
                check_path_value(self.name, key, value, strict=spec.id_only)
            kwargs[key] = value
        kwargs.update(self.forced)
        return kwargs

    def __call__(self, misp: MispConnection, payload: dict[str, Any]) -> Any:
        kwargs = self.bind(payload)
        method = self.name  # fixed at build time, checked against the rules; never taken from a request
        return to_json(call_misp(misp, self.name, lambda client: getattr(client, method)(**kwargs)))


def build_handler(name: str, cls: type = PyMISP) -> PassthroughHandler:
    """The handler for PyMISP method ``name``; raises ValueError with the reason when the rules refuse it
    and KeyError when ``cls`` has no such name."""
    reason = refusal_reason(name, cls)
    if reason is not None:
        raise ValueError(reason)
    function = inspect.getattr_static(cls, name)
    full = inspect.signature(function)
    parameters = list(full.parameters.values())[1:]
    signature = full.replace(parameters=parameters)
    params = {p.name: _describe_param(p) for p in parameters if p.kind is not p.VAR_KEYWORD}
    forced = {key: value for key, value in FORCED.items() if key in signature.parameters}
    path = path_parameters(name) if cls is PyMISP else PathParameters(frozenset())
    return PassthroughHandler(name=name, signature=signature, params=params, forced=forced, path=path)
