"""Object rows and grants, on SQLite and PostgreSQL."""

from __future__ import annotations

from corral.store import Store

A = "a" * 64
B = "b" * 64


def test_an_object_is_recorded_once_and_granted_per_project(store: Store) -> None:
    default = store.projects.ensure_default()
    web = store.projects.create("web", command=True, task=True, code=False)
    first = store.objects.record(A, 10, default.id)
    assert (first.sha256, first.size) == (A, 10)
    again = store.objects.record(A, 10, default.id)
    assert again == first  # the same row, not a second one
    store.objects.record(A, 10, web.id)
    assert store.objects.count() == (1, 2)
    assert store.objects.grants(A) == sorted([default.id, web.id])


def test_reading_needs_a_grant_to_one_of_the_projects(store: Store) -> None:
    default = store.projects.ensure_default()
    web = store.projects.create("web", command=True, task=True, code=False)
    store.objects.record(A, 3, web.id)
    assert store.objects.readable(A, [web.id]) is not None
    assert store.objects.readable(A, [default.id, web.id]) is not None
    assert store.objects.readable(A, [default.id]) is None
    assert store.objects.readable(A, []) is None
    assert store.objects.readable(A, None) is not None  # admin: every project
    assert store.objects.readable(B, None) is None
    assert store.objects.get(A) is not None and store.objects.get(B) is None


def test_big_sizes_fit(store: Store) -> None:
    default = store.projects.ensure_default()
    size = 6 * 1024**4  # past 32 bits, past 4 GiB
    assert store.objects.record(A, size, default.id).size == size
    assert store.objects.get(A) is not None
    assert store.objects.get(A).size == size  # type: ignore[union-attr]
