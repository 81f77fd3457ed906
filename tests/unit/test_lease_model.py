"""A lease made again with another payload keeps everything else."""

from __future__ import annotations

import dataclasses

from corral.domain.models import Lease


def test_with_payload_keeps_every_other_field() -> None:
    # one distinct value per field, so a field left out or swapped shows
    values = {
        f.name: (
            True
            if f.type in ("bool", bool)
            else f"{f.name}-value"
            if f.type in ("str", str)
            else {"kind": "task"}
            if f.name == "payload"
            else i + 0.5
            if "float" in str(f.type)
            else i + 1
        )
        for i, f in enumerate(dataclasses.fields(Lease))
    }
    lease = Lease(**values)
    payload = {"kind": "task", "module": "m"}
    assert lease.with_payload(payload) == dataclasses.replace(lease, payload=payload)
    assert lease.with_payload(payload).payload is payload
