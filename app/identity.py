"""Who this browser is (engine/visitors.py): a random token kept in its localStorage (`gr.BrowserState`), so
the visitor stays the same across reloads; a Hugging Face account when the Space turns on OAuth (a login
button, only when OAUTH_CLIENT_ID is set); the admin field, where an admin pastes LAB_ADMIN_TOKEN.

The server keeps the resolved visitor in a `gr.State` (server-side, per page session): events act as that
visitor, and a client cannot name another one. Only the token's hash ever reaches the database."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import gradio as gr

from engine.visitors import ANONYMOUS, Visitor, new_token, valid_token

STORAGE_KEY = "triangle-lab-visitor"
# BrowserState encrypts what it stores with this, but the page hands it to every browser: the token's secrecy is
# the browser's own localStorage. Fixed, so a restarted lab still reads the tokens browsers kept.
SECRET = "triangle-lab-visitor-token"


@dataclass
class Identity:
    token: gr.BrowserState
    visitor: gr.State
    line: gr.Markdown
    wire: Callable[[], None]


def build(lab) -> Identity:
    """The identity line under the header (on a shared lab), the login button and the admin field."""
    token = gr.BrowserState(None, storage_key=STORAGE_KEY, secret=SECRET)
    visitor = gr.State(ANONYMOUS)
    admin = None
    with gr.Row(visible=lab.settings.multi_user, equal_height=True):
        line = gr.Markdown(elem_id="visitor-line")
        if os.environ.get("OAUTH_CLIENT_ID"):    # the Space turned on OAuth (hf_oauth: true)
            gr.LoginButton(scale=0, min_width=220)
        if lab.settings.admin_token:
            admin = gr.Textbox(label="Admin token", type="password", scale=0, min_width=220, elem_id="admin-token",
                               placeholder="LAB_ADMIN_TOKEN, to act on any run")

    def wire() -> None:
        if admin is None:
            return

        def as_admin(kept, credential, profile: gr.OAuthProfile | None):
            who = lab.visitor(kept, credential, profile.username if profile else None)
            note = "" if who.admin or not credential else " <span style='color:#d62728'>That is not the admin token.</span>"
            return who, identity_text(lab, who) + note
        admin.submit(as_admin, [token, admin], [visitor, line], api_visibility="private")
        admin.blur(as_admin, [token, admin], [visitor, line], api_visibility="private")
    return Identity(token, visitor, line, wire)


def arrive(lab, kept, profile) -> tuple[str, Visitor]:
    """A page load: the browser's kept token (a fresh one for a new browser) and the visitor it stands for
    (the signed-in account instead, under OAuth)."""
    token = kept if valid_token(kept) else new_token()
    return token, lab.visitor(token, None, profile.username if profile else None)


def identity_text(lab, who: Visitor) -> str:
    """One line: who you are here and what that lets you do."""
    if not lab.settings.multi_user:
        return ""
    me = f"**@{who.name}** (Hugging Face)" if who.name else f"visitor **{(who.id or 'unknown')[2:8]}** (this browser)"
    rights = ("**admin**: you may cancel and delete any run" if who.admin else
              f"only you (or an admin) can cancel or delete your runs; up to "
              f"{lab.settings.max_queued_per_visitor} of them may wait in the queue at once")
    return f"You are {me} · {rights} · History → *mine* lists them."
