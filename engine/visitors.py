"""Who may do what to a run, when one lab serves a class (LAB_MULTI_USER; engine/settings.py).

A visitor is known by a random token its browser keeps (the page's `gr.BrowserState`; a script passes its
own as `visitor_token`) or, on a Space with OAuth, by its Hugging Face account. Runs record their owner as a
`visitor` id: "v:" + SHA-256 of the token (the token itself is never stored, so the database cannot be used to
act as anyone), or "hf:" + the account name. Rows from before owners existed have none.

Everyone may open, compare and export any run. Cancelling and deleting belong to the run's owner and to an
admin (LAB_ADMIN_TOKEN); the CLI is the machine's operator and always may. In single-user mode (a local
`make run`) anyone may, as before owners existed.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from engine.errors import LabInputError

TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_\-]{16,128}")


@dataclass(frozen=True)
class Visitor:
    """One caller: `id` is what runs record as their owner (None: nobody known); `admin` may act on any run."""
    id: str | None = None
    admin: bool = False
    name: str = ""          # the Hugging Face account's name, when signed in

    def owns(self, run: dict) -> bool:
        return self.id is not None and run.get("visitor") == self.id


OPERATOR = Visitor(id=None, admin=True, name="operator")   # the CLI: the machine's operator
ANONYMOUS = Visitor()


def new_token() -> str:
    """A fresh visitor token (192 random bits), kept by the browser, never by the lab."""
    return secrets.token_urlsafe(24)


def valid_token(token: object) -> bool:
    return isinstance(token, str) and TOKEN_PATTERN.fullmatch(token) is not None


def token_id(token: str) -> str:
    """The owner id a token stands for: its SHA-256, so a stored id cannot be turned back into the token."""
    return "v:" + hashlib.sha256(token.encode()).hexdigest()[:32]


def is_admin(admin_token: str, credential: object) -> bool:
    """Whether `credential` is the lab's admin token (compared in constant time; no token set: nobody is)."""
    return bool(admin_token) and isinstance(credential, str) and hmac.compare_digest(
        credential.strip().encode(), admin_token.encode())


def visitor(admin_token: str, token: object = None, credential: object = None, account: str | None = None,
            ) -> Visitor:
    """The caller from what it presents: a Hugging Face account wins over a browser token; a token that is not
    one (wrong shape) makes no identity. `credential` may be the admin token."""
    admin = is_admin(admin_token, credential)
    if account:
        return Visitor(id=f"hf:{account}", admin=admin, name=account)
    return Visitor(id=token_id(token) if valid_token(token) else None, admin=admin)


def api_visitor(admin_token: str, token: object, credential: object) -> Visitor:
    """A script's identity (`visitor_token`, `admin_token` arguments): a token given must be a valid one."""
    if token not in (None, "") and not valid_token(token):
        raise LabInputError("visitor_token: must be 16–128 letters, digits, '-' or '_' (e.g. Python's "
                            "secrets.token_urlsafe()); keep it to act on your runs later")
    if credential not in (None, "") and not is_admin(admin_token, credential):
        raise LabInputError("admin_token: not this lab's admin token")
    return visitor(admin_token, token or None, credential)


EXAMPLE = "example"   # the owner of the gallery's example runs (engine/gallery.py)


def may_manage(multi_user: bool, who: Visitor, run: dict) -> bool:
    """Cancel or delete `run`: anyone in single-user mode; else its owner or an admin. The gallery's example
    runs only an admin (or the CLI)."""
    if run.get("visitor") == EXAMPLE:
        return who.admin
    return not multi_user or who.admin or who.owns(run)


def check_manage(multi_user: bool, who: Visitor, run: dict, action: str) -> None:
    if not may_manage(multi_user, who, run):
        whose = ("is an example of the gallery" if run.get("visitor") == EXAMPLE else
                 "has no owner (it is older than owners)" if not run.get("visitor") else "belongs to another visitor")
        raise LabInputError(f"run {run['run_id']} {whose}: only its owner or an admin (LAB_ADMIN_TOKEN) can "
                            f"{action} it")


def owner_label(run: dict, who: Visitor) -> str:
    """The History's owner column: you, a Hugging Face account, another visitor, or nobody (older runs)."""
    owner = run.get("visitor")
    if not owner:
        return "—"
    if owner == EXAMPLE:
        return "example"
    if who.owns(run):
        return "you"
    return "@" + owner[3:] if owner.startswith("hf:") else "a visitor"
