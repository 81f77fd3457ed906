"""The hub's versions: monotonic per topic, bounded in number, and never a missed wake-up."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from corral import events
from corral.events import Hub


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "FORGET_ABOVE", 50)


def test_versions_of_topics_nobody_waits_on_are_forgotten(small: None) -> None:
    hub = Hub()
    for i in range(1000):
        hub.notify(events.QUEUE, events.run_topic(i), events.run_end_topic(i))
    assert len(hub._versions) <= 51
    assert hub.version(events.QUEUE) == 1000  # the fixed topics are kept, counting on


def test_a_version_read_before_forgetting_never_waits_for_a_notice_already_given(
    small: None,
) -> None:
    hub = Hub()
    topic = events.run_end_topic(1)
    hub.notify(topic)
    seen = hub.version(topic)
    for i in range(100, 200):  # the topic is forgotten under it
        hub.notify(events.run_topic(i))
    assert topic not in hub._versions
    assert hub.version(topic) > seen  # so a wait on `seen` returns at once
    assert hub.wait(topic, seen, 5.0)
    # and after that, a notice still moves it on
    now = hub.version(topic)
    hub.notify(topic)
    assert hub.version(topic) > now


def test_a_topic_someone_waits_on_is_kept_and_its_waiter_woken(small: None) -> None:
    hub = Hub()
    topic = events.attempt_topic(7)
    seen = hub.version(topic)
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(hub.wait(topic, seen, 10.0)))
    waiter.start()
    deadline = time.monotonic() + 5
    while topic not in hub._waiters and time.monotonic() < deadline:
        time.sleep(0.01)
    for i in range(200):
        hub.notify(events.run_topic(i))
    assert woke == []  # forgetting others did not wake it
    hub.notify(topic)
    waiter.join(5)
    assert woke == [True]


def test_an_async_waiter_is_kept_too(small: None) -> None:
    hub = Hub()
    topic = events.run_end_topic(3)

    async def main() -> bool:
        seen = hub.version(topic)
        waiting = asyncio.ensure_future(hub.wait_async(topic, seen, 10.0))
        await asyncio.sleep(0.05)
        for i in range(200):
            hub.notify(events.run_topic(i))
        assert not waiting.done()
        hub.notify(topic)
        return await asyncio.wait_for(waiting, 5.0)

    assert asyncio.run(main())


def test_told_since_says_whether_a_new_topic_was_told(small: None) -> None:
    hub = Hub()
    mark = hub.mark()
    topic = events.run_end_topic(42)
    assert not hub.told_since(topic, mark)
    hub.notify(topic)
    assert hub.told_since(topic, mark)
    # a forgetting in between counts as told: the caller looks again rather than miss it
    other = events.run_end_topic(43)
    mark = hub.mark()
    for i in range(200):
        hub.notify(events.run_topic(i))
    assert hub.told_since(other, mark)


def test_a_topic_is_watched_while_someone_waits_on_it() -> None:
    hub = Hub()
    topic = events.run_end_topic(5)
    assert not hub.watched(topic)

    started = threading.Event()

    def wait() -> None:
        started.set()
        hub.wait(topic, hub.version(topic), 5.0)

    waiter = threading.Thread(target=wait)
    waiter.start()
    started.wait(5)
    time.sleep(0.05)
    assert hub.watched(topic)  # a thread waits on it
    hub.notify(topic)
    waiter.join(5)
    assert not hub.watched(topic)

    async def main() -> bool:
        waiting = asyncio.ensure_future(hub.wait_async(topic, hub.version(topic), 5.0))
        await asyncio.sleep(0.05)
        seen = hub.watched(topic)  # a coroutine waits on it
        hub.notify(topic)
        await waiting
        return seen

    assert asyncio.run(main())
    assert not hub.watched(topic)
