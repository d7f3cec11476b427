"""Issue 22 (part): the chat's answer cache. A repeated question is answered from the cache with the same text;
a changed fact never returns a stale answer; follow-ups are keyed by what they follow; the cache is bounded."""

from __future__ import annotations

import dataclasses

from workbench.llm.cache import AnswerCache, normalise_question
from workbench.llm.chat import ChatSession
from workbench.llm.chat_eval import cache_study
from workbench.llm.data import synthetic_facts


def test_repeated_question_hits_and_a_changed_fact_misses():
    f = synthetic_facts(1, 0)[0]
    cache = AnswerCache(max_entries=8)
    a = ChatSession(f, cache=cache).ask("What is the RSI?")
    b = ChatSession(f, cache=cache).ask("  what is the   RSI ")
    assert "cached" in b.flags and "cached" not in a.flags and a.text == b.text and cache.hits == 1
    g = dataclasses.replace(f, rsi=f.rsi + 7.3)
    c = ChatSession(g, cache=cache).ask("What is the RSI?")
    assert "cached" not in c.flags and c.text != a.text and f"{g.rsi:.1f}" in c.text
    assert normalise_question("Why?  ") == "why"


def test_follow_ups_are_keyed_by_their_context_and_the_cache_is_bounded():
    f = synthetic_facts(1, 1)[0]
    cache = AnswerCache(max_entries=3)
    s1 = ChatSession(f, cache=cache)
    s1.ask("What is the RSI?")
    r1 = s1.ask("And is it high?")
    s2 = ChatSession(f, cache=cache)
    s2.ask("How volatile is it?")
    r2 = s2.ask("And is it high?")
    assert "cached" not in r2.flags and r1.text != r2.text  # the same words after another question
    n = len(cache)
    assert n == 3  # four answers, bounded at three
    assert cache.invalidate(f) == n and len(cache) == 0


def test_cache_study_on_the_chat_protocol():
    facts = synthetic_facts(3, 2)
    table = cache_study(facts, [None] * 3, lambda f, d, c: ChatSession(f, decision=d, cache=c))
    assert table["hit_rate"].iloc[0] == 0.0 and table["hit_rate"].iloc[1] == 1.0 and table["same_answers"].all()


def test_the_model_responders_context_is_the_normalised_conversation():
    f = synthetic_facts(1, 4)[0]
    contexts = []
    for q in ("What is the RSI?", "WHAT IS THE  RSI"):
        s = ChatSession(f)
        s.ask(q)
        answers = [m["content"] for m in s.history if m["role"] == "assistant"]
        contexts.append(list(zip(s.asked, answers)))
    assert contexts[0] == contexts[1] and contexts[0][0][0] == "what is the rsi"
