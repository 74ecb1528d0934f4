"""Signed-in operators: a random session cookie -> the API key and the clients that carry it.

The key lives only here, in the app's memory (never in a page, a script, a log or argv); the
browser holds an opaque random token (HttpOnly, SameSite=Strict). A session also keeps the
operator's last uploaded query photos (so a facet click or a page turn repeats a photo search)
and the service's recent refusals (the Status page's "recent errors")."""
from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from clients.search import SearchClient

COOKIE = "console_session"
MAX_SESSIONS = 64
MAX_PHOTOS = 8  # query photos kept per session
MAX_ERRORS = 20


@dataclass
class Session:
    """One operator: their key's clients, the shop they work on, their photos and errors."""

    client: SearchClient
    shop: str | None
    key_id: str
    photos: OrderedDict = field(default_factory=OrderedDict)  # ref -> (bytes, content type)
    errors: deque = field(default_factory=lambda: deque(maxlen=MAX_ERRORS))  # (time, page, message)

    def keep_photo(self, data: bytes, content_type: str) -> str:
        ref = secrets.token_urlsafe(12)
        self.photos[ref] = (data, content_type)
        while len(self.photos) > MAX_PHOTOS:
            self.photos.popitem(last=False)
        return ref

    def note_error(self, page: str, message: str) -> None:
        self.errors.appendleft((time.strftime("%H:%M:%S"), page, message))


def key_label(key: str) -> str:
    """What a page may show of a key: its id (psk_<id>_...), never the secret ("admin key" for the
    server's bootstrap key, which has no id)."""
    parts = key.split("_")
    return f"key {parts[1]}" if key.startswith("psk_") and len(parts) > 2 else "admin key"


class SessionStore:
    """The signed-in sessions (bounded: the oldest is signed out first)."""

    def __init__(self, url: str, timeout_s: float = 10.0):
        self.url, self.timeout_s = url, timeout_s
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def client(self, key: str) -> SearchClient:
        """A client carrying this key only (never the admin key file or environment)."""
        return SearchClient(self.url, timeout_s=self.timeout_s, key=key, key_file=None)

    def open(self, client: SearchClient, shop: str | None, key: str) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[token] = Session(client, shop, key_label(key))
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)[1].client.close()
        return token

    def get(self, token: str | None) -> Session | None:
        with self._lock:
            return self._sessions.get(token) if token else None

    def close(self, token: str | None) -> None:
        with self._lock:
            session = self._sessions.pop(token, None) if token else None
        if session is not None:
            session.client.close()

    def close_all(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), OrderedDict()
        for session in sessions:
            session.client.close()
