"""A writer for the crash-loop test: opens an index and writes until it is killed.

    python -m tests.crash_worker FOLDER MODEL KIND ROUND STATE.json

It adds new items, replaces and deletes items the parent knows are stored (STATE.json: their
ids and versions), and saves (which rebuilds aside when due). Before each operation it prints
``begin OP ...`` and after it ``ack OP ...``, flushed, so the parent knows what was acknowledged
and what was in flight when the kill came. Texts are a pure function of (id, version).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

WORDS = [f"w{n}" for n in range(600)]


def text_of(item_id: str, version: int) -> str:
    """The text of an item at a version: 10 words drawn from a seed made of both."""
    rng = random.Random(f"{item_id}/{version}")
    return " ".join(rng.choice(WORDS) for _ in range(10))


def say(*words: object) -> None:
    print(*words, flush=True)


def main() -> None:
    from retrieval.retriever import Item, Retriever

    folder, model, kind, round_, state_path = sys.argv[1:6]
    round_ = int(round_)
    state = json.loads(Path(state_path).read_text())
    present: dict[str, int] = state["present"]
    target = state["target_items"]
    rng = random.Random(round_)
    if (Path(folder) / "manifest.json").exists():
        retriever = Retriever.open(folder, model)
    else:
        retriever = Retriever.create(folder, model, kind)
    say("ready", len(retriever))
    ids = list(present)
    for op_number in range(10_000):
        choice = rng.random()
        # Known ids, not len(retriever): items a killed add left behind stay in the index unknown to
        # the parent, and counting them would let deletes drain what the parent can check.
        if len(ids) < target and choice < 0.5 or not ids:
            new = [f"r{round_}-{op_number}-{i}" for i in range(rng.randint(500, 3000))]
            say("begin add", json.dumps(new))
            retriever.upsert([Item(i, text_of(i, 0)) for i in new], batch_size=256)
            say("ack add", json.dumps(new))
            ids += new
        elif choice < 0.65:
            picked = rng.sample(ids, min(len(ids), rng.randint(100, 400)))
            version = round_ * 10_000 + op_number + 1
            say("begin replace", version, json.dumps(picked))
            retriever.upsert([Item(i, text_of(i, version)) for i in picked], batch_size=256)
            say("ack replace", version, json.dumps(picked))
        elif choice < 0.8:
            picked = rng.sample(ids, min(len(ids), rng.randint(100, 400)))
            say("begin delete", json.dumps(picked))
            retriever.delete(picked)
            say("ack delete", json.dumps(picked))
            gone = set(picked)
            ids = [i for i in ids if i not in gone]
        else:
            rebuild = retriever.store._rebuild_due()
            say("begin save", "rebuild" if rebuild else "snapshot")
            retriever.save()
            say("ack save", retriever.store.built_kind)


if __name__ == "__main__":
    main()
