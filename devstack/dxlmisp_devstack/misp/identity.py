"""Who is who on the dev MISP server: one organisation, two users, their roles, and the versions it reports.

* ``ORGNAME`` (id 1) owns and creates everything.
* ``admin@admin.test`` (id 1, role ``admin``) holds the admin API key: it may read and write.
* ``readonly@admin.test`` (id 2, role ``Read Only``) holds the read-only key: it may read; a write fails
  MISP's ACL check (405, ``You do not have permission to use this functionality.``).

The MISP version it reports follows the installed PyMISP (the one pinned in requirements.txt), so that
``pymisp_recommended_version`` always names that version and PyMISP logs no upgrade warning.
"""
from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any

ORG_ID = 1
ORG_NAME = "ORGNAME"
ORG_UUID = "5ac3c55a-41a4-4294-adf3-00f8ac110003"
ORG: dict[str, str] = {"id": str(ORG_ID), "name": ORG_NAME, "uuid": ORG_UUID}

PYMISP_VERSION = importlib.metadata.version("pymisp")
MISP_VERSION = ".".join(PYMISP_VERSION.split(".")[:3])

_PERMS = ("perm_add", "perm_modify", "perm_modify_org", "perm_publish", "perm_delegate", "perm_sync",
          "perm_admin", "perm_audit", "perm_auth", "perm_site_admin", "perm_regexp_access", "perm_tagger",
          "perm_template", "perm_sharing_group", "perm_tag_editor", "perm_sighting", "perm_object_template",
          "perm_publish_zmq", "perm_publish_kafka", "perm_decaying", "perm_galaxy_editor",
          "perm_warninglist", "perm_view_feed_correlations", "perm_analyst_data", "perm_skip_otp",
          "perm_server_sign", "perm_sync_internal", "perm_sync_authoritative")


@dataclass(frozen=True)
class User:
    """A user of the dev server; ``can_write`` is what the route table's write flag checks."""

    id: int
    email: str
    role_id: int
    role_name: str
    can_write: bool

    def role(self) -> dict[str, Any]:
        """The ``Role`` object of ``users/view/me``."""
        role: dict[str, Any] = {"id": str(self.role_id), "name": self.role_name}
        for perm in _PERMS:
            role[perm] = self.can_write or perm == "perm_auth"
        role.update({"default_role": False, "memory_limit": "", "max_execution_time": "",
                     "restricted_to_site_admin": False, "enforce_rate_limit": False, "rate_limit_count": "0",
                     "permission": "3" if self.can_write else "0", "permission_description": ""})
        return role

    def view(self) -> dict[str, Any]:
        """``users/view/me``: User, Role, UserSetting and Organisation. The API key is never echoed."""
        user = {
            "id": str(self.id), "org_id": str(ORG_ID), "server_id": "0", "email": self.email, "autoalert": False,
            "invited_by": "0", "gpgkey": None, "certif_public": "", "nids_sid": "4000000", "termsaccepted": True,
            "newsread": "0", "role_id": str(self.role_id), "change_pw": False, "contactalert": False,
            "disabled": False, "expiration": None, "current_login": "0", "last_login": "0",
            "force_logout": False, "date_created": "0", "date_modified": "0", "sub": None,
            "external_auth_required": False, "external_auth_key": "", "last_api_access": "0",
            "notification_daily": False, "notification_weekly": False, "notification_monthly": False,
            "totp": None, "hotp_counter": None, "last_pw_change": "0",
        }
        return {"User": user, "Role": self.role(), "UserSetting": [], "Organisation": dict(ORG, local=True)}


ADMIN = User(id=1, email="admin@admin.test", role_id=1, role_name="admin", can_write=True)
READONLY = User(id=2, email="readonly@admin.test", role_id=6, role_name="Read Only", can_write=False)


def server_version(user: User) -> dict[str, Any]:
    """``servers/getVersion``: the version, the recommended PyMISP, and the caller's sync/sighting rights."""
    return {"version": MISP_VERSION, "pymisp_recommended_version": PYMISP_VERSION,
            "perm_sync": user.can_write, "perm_sighting": user.can_write, "perm_galaxy_editor": user.can_write,
            "request_encoding": [], "filter_sightings": True}
