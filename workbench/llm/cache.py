"""An answer cache for the chat (design document 004, "Deployment": caching for common queries).

The key is the facts, the decision discussed, the responder and the *normalised* question (case, spacing and
trailing punctuation do not matter), plus what the answer may depend on beyond them: the facts responder's
topics carried from the previous question (a follow-up), the model responder's history of the conversation.
A changed fact therefore changes the key: a stale answer is never returned. The cache is bounded (least
recently used entries go first) and :meth:`AnswerCache.invalidate` drops every entry of given facts.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

_SPACE = re.compile(r"\s+")


def normalise_question(question: str) -> str:
    """Lower case, single spaces, no leading/trailing spaces or end punctuation."""
    return _SPACE.sub(" ", question).strip().lower().rstrip(" ?!.")


def facts_key(facts: Any) -> str:
    """A fingerprint of the facts (every field, at full precision)."""
    d = facts.to_dict() if hasattr(facts, "to_dict") else dict(facts)
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class AnswerCache:
    """A bounded LRU of chat answers with its hit statistics."""

    max_entries: int = 1024
    hits: int = 0
    misses: int = 0
    _store: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _by_facts: dict = field(default_factory=dict, repr=False)
    seconds_saved: float = 0.0

    def key(self, facts: Any, decision: str | None, responder: str, question: str, context: Any = None) -> str:
        payload = json.dumps([facts_key(facts), decision or "", responder, normalise_question(question), context],
                             default=str)
        return hashlib.sha1(payload.encode()).hexdigest()

    def get(self, key: str) -> Any | None:
        if key in self._store:
            self._store.move_to_end(key)
            self.hits += 1
            value, seconds = self._store[key]
            self.seconds_saved += seconds
            return value
        self.misses += 1
        return None

    def put(self, key: str, value: Any, facts: Any, seconds: float = 0.0) -> None:
        self._store[key] = (value, seconds)
        self._store.move_to_end(key)
        self._by_facts.setdefault(facts_key(facts), set()).add(key)
        while len(self._store) > self.max_entries:
            old, _ = self._store.popitem(last=False)
            for keys in self._by_facts.values():
                keys.discard(old)

    def invalidate(self, facts: Any) -> int:
        """Drop every answer given on these facts; returns how many."""
        keys = self._by_facts.pop(facts_key(facts), set())
        for k in keys:
            self._store.pop(k, None)
        return len(keys)

    def __len__(self) -> int:
        return len(self._store)

    @property
    def hit_rate(self) -> float:
        n = self.hits + self.misses
        return self.hits / n if n else float("nan")

    def stats(self) -> dict[str, float]:
        return {"entries": len(self._store), "hits": self.hits, "misses": self.misses, "hit_rate": self.hit_rate,
                "seconds_saved": self.seconds_saved}

