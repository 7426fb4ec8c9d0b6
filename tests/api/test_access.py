"""api.access: every PyMISP method is classed read, write or admin, and admin methods need allowAdminApis."""
from __future__ import annotations

import inspect
import types

import pytest
from pymisp import PyMISP

from dxlmispservice.api import access, passthrough, topics
from dxlmispservice.errors import ConfigError


def _methods() -> set[str]:
    return {n for n in passthrough.public_names() if isinstance(inspect.getattr_static(PyMISP, n), types.FunctionType)}


def test_every_pymisp_method_is_classed_once() -> None:
    """The table classes each public PyMISP method exactly once, and names no method PyMISP lacks."""
    classed = access.READ | access.WRITE | access.ADMIN
    assert sorted(_methods() - classed) == [], "PyMISP has methods the access table does not class"
    assert sorted(classed - _methods()) == []
    assert not (access.READ & access.WRITE or access.READ & access.ADMIN or access.WRITE & access.ADMIN)
    print(f"access table: {len(access.READ)} read, {len(access.WRITE)} write, {len(access.ADMIN)} admin")


def test_a_name_missing_from_the_table_counts_as_admin() -> None:
    """An unknown name is admin."""
    assert access.access_of("a_method_from_a_future_pymisp") == "admin"


@pytest.mark.parametrize("name", ["add_user", "update_user", "get_new_authkey", "get_sync_config",
                                  "set_server_setting", "kill_all_workers", "update_misp", "server_push",
                                  "server_pull", "add_role", "add_organisation", "start_worker", "add_server"])
def test_admin_methods_are_refused_without_allow_admin(name: str) -> None:
    """Naming an admin method stops the start unless allowAdminApis is on."""
    with pytest.raises(ConfigError, match=f"'{name}' is (an admin method: it is served only with "
                                          r"\[General\] allowAdminApis=true|refused)"):
        topics.build_table([name])


def test_admin_methods_are_served_with_allow_admin() -> None:
    """With allow_admin the admin methods the rules allow are in the table, and admin_names lists them."""
    table = topics.build_table(["add_event", "get_sync_config", "search"], allow_admin=True)
    assert list(table) == ["add_event", "get_sync_config", "search"]
    assert topics.admin_names(table) == ["get_sync_config"]
