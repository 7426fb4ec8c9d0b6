"""Which parameters of a PyMISP method end up in MISP's URL path, found by calling it, not by reading it.

PyMISP builds URLs with f-strings and ``urljoin``, which resolves ``..``: a string argument placed in the
path can walk to another route (``start_worker {"worker_type": "../../events/delete/1"}`` deleted an
event). :func:`path_parameters` calls the method on an offline PyMISP whose session records each request
and answers ``{}``, with a distinct marker string for every parameter (and one ``key:value`` pair for
``**kwargs``), and reports the parameters whose marker shows up in a request's path. A method whose call
sends no request cannot be classified: :class:`Unclassified`, and the topic table refuses it.

The offline PyMISP is built once, on first use; nothing here touches the network.
"""
from __future__ import annotations

import functools
import inspect
import json
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit

import pymisp
import requests
from pymisp import PyMISP
from requests.adapters import BaseAdapter

from dxlmispservice.compat.pymisp import SessionHook

PROBE_URL = "http://path-probe.invalid/"
_MARK = "zqprobe"
_KWARG = "zqprobekw"


class Unclassified(Exception):
    """The probe could not tell which parameters go into the path (the call sent no request)."""


@dataclass(frozen=True)
class PathParameters:
    """The parameters of one method that land in MISP's URL path; ``kwargs``: its ``**kwargs`` do too."""

    names: frozenset[str]
    kwargs: bool = False


class _Recorder(BaseAdapter):
    """A requests adapter that records each request and answers what PyMISP needs to build, else ``{}``."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        getattr(self.local, "urls", []).append(request.url or "")
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps(_build_answer(request.url or "")).encode()
        response.headers["Content-Type"] = "application/json"
        response.encoding = "utf-8"
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        """Nothing to close."""


def _build_answer(url: str) -> Any:
    path = urlsplit(url).path
    if path.endswith(("getPyMISPVersion.json", "getVersion")):
        return {"version": pymisp.__version__}
    if "/users/view/me" in path:
        return {"User": {"id": "1", "email": "probe@invalid", "org_id": "1", "role_id": "1"},
                "Role": {"id": "1", "name": "probe"}, "UserSetting": []}
    if path.endswith("describeTypes.json"):
        text = resources.files("pymisp").joinpath("data", "describeTypes.json").read_text(encoding="utf-8")
        return json.loads(text)
    return {}


class _ProbePyMISP(SessionHook, PyMISP):
    """PyMISP on the recording adapter."""


@functools.lru_cache(maxsize=1)
def _client() -> tuple[PyMISP, _Recorder]:
    recorder = _Recorder()

    def setup(session: requests.Session) -> None:
        session.mount("http://", recorder)
        session.trust_env = False

    client = _ProbePyMISP.__new__(_ProbePyMISP)
    client._session_setup = setup
    PyMISP.__init__(client, PROBE_URL, "0" * 40, ssl=False)
    return client, recorder


def _paths(method: str, kwargs: dict[str, Any]) -> list[str]:
    """The URL paths (unquoted) of the requests one call sends; an exception after a request is fine."""
    client, recorder = _client()
    recorder.local.urls = []
    try:
        getattr(client, method)(**kwargs)
    except Exception:  # noqa: BLE001 - the markers are not valid input; what was sent is what counts
        pass
    return [unquote(urlsplit(url).path) for url in recorder.local.urls]


def _entity(parameter: inspect.Parameter, marker: str) -> Any:
    """For a parameter annotated with a MISP entity class: an instance whose id, uuid and name are the
    marker (PyMISP methods that set fields on the entity need one); else the marker itself."""
    annotation = parameter.annotation if isinstance(parameter.annotation, str) else ""
    for name in annotation.replace("|", " ").replace(",", " ").replace("[", " ").replace("]", " ").split():
        cls = getattr(pymisp, name, None)
        if inspect.isclass(cls) and issubclass(cls, pymisp.AbstractMISP) and cls is not pymisp.AbstractMISP:
            try:
                entity = cls(name=marker) if issubclass(cls, pymisp.MISPObject) else cls()
                entity.update({"id": marker, "uuid": marker, "name": marker})  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - a class that cannot be built this way keeps the marker
                continue
            return entity
    return marker


@functools.lru_cache(maxsize=None)
def path_parameters(method: str) -> PathParameters:
    """The parameters of PyMISP method ``method`` whose value goes into a request path; Unclassified when
    neither a call with every parameter given nor one with the required ones only sends a request."""
    signature = inspect.signature(getattr(PyMISP, method))
    parameters = [p for p in list(signature.parameters.values())[1:] if p.name != "pythonify"]
    markers = {p.name: f"{_MARK}{i}x" for i, p in enumerate(parameters)
               if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in parameters)
    required = {p.name for p in parameters if p.default is p.empty and p.name in markers}
    entities = {p.name: _entity(p, markers[p.name]) for p in parameters if p.name in markers}
    attempts = ((set(markers), markers), (required, markers), (set(markers), {**markers, **entities}),
                (required, {**markers, **entities}))
    for chosen, values in attempts:
        for with_kwargs in ((True, False) if takes_kwargs else (False,)):
            kwargs: dict[str, Any] = {name: values[name] for name in chosen}
            if with_kwargs:
                kwargs[_KWARG] = _KWARG + "v"
            paths = _paths(method, kwargs)
            if paths:
                joined = "\n".join(paths)
                return PathParameters(frozenset(name for name in chosen if markers[name] in joined),
                                      kwargs=with_kwargs and _KWARG in joined)
    raise Unclassified(f"the probe could not see where PyMISP.{method} puts its arguments (no request sent)")
