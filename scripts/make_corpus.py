"""Write a reproducible synthetic corpus of short questions with planted near-duplicate groups.

    python scripts/make_corpus.py --n 1000000 bench-out/corpus-1m.parquet

The text is made here, at run time, from the shared QQP training sample (never committed): a
word-level Markov chain (order 2) fitted on its questions writes new questions with QQP's
vocabulary and topics, so their embeddings spread like real ones. Planted groups, of known
membership:

* ``qqp``: the sample's labelled duplicates themselves (connected components of its duplicate
  pairs) and its other questions, as real paraphrases;
* ``rewrite``: 1-4 rewrites of a generated question (kind ``original``), each two edits of the
  kinds QQP duplicates show: a one-word substitution learned from QQP duplicate pairs that differ
  by one word, an opening phrase swapped ("How do I" / "How can I" / ...), a dropped filler word,
  a typo, lower case, the question mark dropped;
* ``near-miss``: a question that is *not* a duplicate although it is close: one word replaced as
  QQP's labelled *non*-duplicates that differ by one word do (else another content word), in no
  planted group (``near_miss_of`` names the group it is close to).

Columns: ``id, text, planted`` (group number, empty for none), ``kind, near_miss_of``. Questions
of the BiMPM dev split are left out of the fit, so ``bench_groups.py`` can use it untouched.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import itertools
import random
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retrieval.progress import Progress  # noqa: E402
from retrieval.tables import TableWriter  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
OPENINGS = [("How do I", "How can I", "How should I", "What is the best way to"),
            ("What is", "What's", "What exactly is"), ("What are some", "What are the", "Which are the"),
            ("Why do", "Why does it seem that", "How come"), ("Is it possible to", "Can I", "Is there a way to")]
STOP = {"what", "which", "when", "where", "does", "have", "that", "this", "with", "from", "your", "some", "best",
        "there", "their", "they", "would", "should", "could", "about", "into", "between", "good", "more", "most"}
FILLERS = {"the", "a", "really", "actually", "very", "just", "some", "any", "good"}


def read_qqp(path: Path, held_out: set[str]) -> list[tuple[str, str, int]]:
    """(question1, question2, is_duplicate) of a GLUE-layout QQP file; malformed rows and pairs
    touching a held-out question are skipped."""
    pairs = []
    with open(path, newline="", encoding="utf-8") as f:
        for fields in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(fields) != 6 or fields[5] not in ("0", "1") or not fields[3].strip() or not fields[4].strip():
                continue
            a, b = fields[3].strip(), fields[4].strip()
            if key(a) not in held_out and key(b) not in held_out:
                pairs.append((a, b, int(fields[5])))
    return pairs


def read_held_out(path: Path) -> set[str]:
    """Questions of the BiMPM dev split (label, q1, q2, id), as ``key``s."""
    if not path.exists():
        return set()
    out = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3:
                out.update((key(detok(parts[1])), key(detok(parts[2]))))
    return out


def detok(text: str) -> str:
    """BiMPM's tokenised text, roughly untokenised (for matching against GLUE's)."""
    return re.sub(r" ([?.,!'])", r"\1", text)


def key(text: str) -> str:
    """A question's identity for uniqueness: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def topic(text: str) -> str:
    """Its content words (4 letters or more), sorted: a generated question that repeats another's is
    a near-copy (a Markov chain reproduces its sources), which would be an unplanted duplicate."""
    return " ".join(sorted({w for w in key(text).split() if len(w) >= 4 and w not in STOP}))


def untemplated(questions: list[str], most: int = 2) -> list[str]:
    """At most ``most`` questions a five-word opening: QQP holds templated series ("What is a
    suitable inpatient drug and alcohol rehab center in <county>?") that a Markov chain would
    multiply into thousands of unplanted near-duplicates."""
    seen: Counter = Counter()
    kept = []
    for q in questions:
        opening = " ".join(key(q).split()[:5])
        seen[opening] += 1
        if seen[opening] <= most:
            kept.append(q)
    return kept


class Markov:
    """A word-level Markov chain of order 2 over questions."""

    def __init__(self, texts: list[str]) -> None:
        counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
        for text in texts:
            words = ["<s>", "<s>"] + text.split() + ["</s>"]
            for a, b, c in zip(words, words[1:], words[2:]):
                counts[(a, b)][c] += 1
        self.table = {}
        for state, counter in counts.items():
            words, weights = zip(*sorted(counter.items()))
            self.table[state] = (words, list(itertools.accumulate(weights)))

    def sentence(self, rng: random.Random, low: int = 4, high: int = 28) -> str | None:
        """One generated question, or None when it came out too short or too long."""
        state, words = ("<s>", "<s>"), []
        while len(words) <= high:
            options, cum = self.table[state]
            word = options[bisect.bisect_right(cum, rng.random() * cum[-1])]
            if word == "</s>":
                break
            words.append(word)
            state = (state[1], word)
        return " ".join(words) if low <= len(words) <= high else None


def one_word_swaps(pairs: list[tuple[str, str, int]], label: int, least: int) -> dict[str, list[str]]:
    """Words that replace each other in labelled pairs that differ by exactly one word."""
    seen: Counter = Counter()
    for a, b, lab in pairs:
        wa, wb = a.split(), b.split()
        if lab != label or len(wa) != len(wb):
            continue
        diff = [(x, y) for x, y in zip(wa, wb) if x != y]
        if len(diff) == 1 and key(diff[0][0]) and key(diff[0][1]) and key(diff[0][0]) != key(diff[0][1]):
            seen[diff[0]] += 1
            seen[diff[0][::-1]] += 1
    swaps: dict[str, list[str]] = defaultdict(list)
    for (x, y), n in sorted(seen.items()):
        if n >= least:
            swaps[x].append(y)
    return swaps


class Rewriter:
    """Edits that keep a question's meaning (``rewrite``) or change it a little (``near_miss``)."""

    def __init__(self, synonyms: dict[str, list[str]], contrasts: dict[str, list[str]], vocabulary: list[str]) -> None:
        self.synonyms, self.contrasts, self.vocabulary = synonyms, contrasts, vocabulary

    def rewrite(self, text: str, rng: random.Random) -> str:
        """Two meaning-keeping edits."""
        edits = [self._synonym, self._opening, self._drop_filler, self._typo, self._lower, self._mark]
        for edit in rng.sample(edits, 2):
            text = edit(text, rng) or text
        return text

    def near_miss(self, text: str, rng: random.Random) -> str:
        """One content word changed."""
        words = text.split()
        spots = [i for i, w in enumerate(words) if w in self.contrasts]
        if spots:
            i = rng.choice(spots)
            words[i] = rng.choice(self.contrasts[words[i]])
        else:
            content = [i for i, w in enumerate(words) if len(key(w)) >= 5]
            i = rng.choice(content) if content else len(words) - 1
            tail = "?" if words[i].endswith("?") else ""
            words[i] = rng.choice(self.vocabulary) + tail
        return " ".join(words)

    def _synonym(self, text: str, rng: random.Random) -> str | None:
        words = text.split()
        spots = [i for i, w in enumerate(words) if w in self.synonyms]
        if not spots:
            return None
        i = rng.choice(spots)
        words[i] = rng.choice(self.synonyms[words[i]])
        return " ".join(words)

    def _opening(self, text: str, rng: random.Random) -> str | None:
        for family in OPENINGS:
            for opening in family:
                if text.startswith(opening + " "):
                    return rng.choice([o for o in family if o != opening]) + text[len(opening):]
        return None

    def _drop_filler(self, text: str, rng: random.Random) -> str | None:
        words = text.split()
        spots = [i for i, w in enumerate(words) if w.lower() in FILLERS]
        return " ".join(words[:i] + words[i + 1:]) if spots and (i := rng.choice(spots)) is not None else None

    def _typo(self, text: str, rng: random.Random) -> str | None:
        words = text.split()
        spots = [i for i, w in enumerate(words) if len(w) >= 6 and w.isalpha()]
        if not spots:
            return None
        i = rng.choice(spots)
        j = rng.randrange(1, len(words[i]) - 2)
        w = words[i]
        words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
        return " ".join(words)

    def _lower(self, text: str, rng: random.Random) -> str:
        return text.lower()

    def _mark(self, text: str, rng: random.Random) -> str:
        return text.rstrip("?").rstrip() if text.endswith("?") else text + "?"


def qqp_rows(pairs: list[tuple[str, str, int]]) -> list[dict]:
    """Every distinct question of the sample; labelled duplicates planted as groups."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    texts: dict[str, str] = {}
    for a, b, label in pairs:
        for t in (a, b):
            texts.setdefault(key(t), t)
            find(key(t))
        if label:
            parent[find(key(a))] = find(key(b))
    members: dict[str, list[str]] = defaultdict(list)
    for k in texts:
        members[find(k)].append(k)
    rows = []
    for group in members.values():
        for k in group:
            rows.append({"text": texts[k], "kind": "qqp", "group": group[0] if len(group) > 1 else None})
    return rows


def generate(n: int, seed: int, data: Path) -> list[dict]:
    """The corpus's rows, in corpus order."""
    pairs = read_qqp(data / "qqp-glue-train-sample" / "new_dev.tsv", read_held_out(data / "qqp-bimpm" / "dev.tsv"))
    rng = random.Random(seed)
    questions = sorted({t for a, b, _ in pairs for t in (a, b)})
    chain = Markov(untemplated(questions))
    vocabulary = sorted({key(w) for t in questions for w in t.split() if len(key(w)) >= 5 and key(w).isalpha()})
    rewriter = Rewriter(one_word_swaps(pairs, 1, 1), one_word_swaps(pairs, 0, 1), vocabulary)
    real = qqp_rows(pairs)
    rng.shuffle(real)
    rows = real[: min(len(real), n // 10)]
    used = {key(r["text"]) for r in rows}
    topics = {topic(t) for t in questions}  # no copy of a source question, nor of one another
    planted = 0
    with Progress(n, "writing questions", "question") as bar:
        bar.update(len(rows))
        while len(rows) < n:
            text = chain.sentence(rng)
            if text is None or key(text) in used or len(topic(text).split()) < 2 or topic(text) in topics:
                continue
            used.add(key(text))
            topics.add(topic(text))
            if rng.random() >= 0.12:  # a question in no group
                rows.append({"text": text, "kind": "original", "group": None})
                bar.update(1)
                continue
            planted += 1
            group = [{"text": text, "kind": "original", "group": f"s{planted}"}]
            for _ in range(min(4, 1 + int(rng.expovariate(1.0)))):
                other = rewriter.rewrite(text, rng)
                if key(other) not in used or other != text and key(other) == key(text):
                    used.add(key(other))
                    group.append({"text": other, "kind": "rewrite", "group": f"s{planted}"})
            if len(group) == 1:
                group[0]["group"] = None
            elif rng.random() < 0.3:
                close = rewriter.near_miss(text, rng)
                if key(close) not in used:
                    used.add(key(close))
                    group.append({"text": close, "kind": "near-miss", "group": None, "near": f"s{planted}"})
            rows += group[: n - len(rows)]
            bar.update(min(len(group), n))
    sizes = Counter(r["group"] for r in rows if r["group"])
    for row in rows:  # a group cut by sampling or by n keeps its label only with two members left
        if sizes[row["group"]] < 2:
            row["group"] = None
        if sizes[row.get("near")] < 2:
            row.pop("near", None)
    rng.shuffle(rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="OUT.parquet, .csv, .tsv or .jsonl")
    parser.add_argument("--n", type=int, default=1_000_000, help="questions to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed, the same corpus")
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder (QQP is read from it)")
    args = parser.parse_args()
    if not (args.data / "qqp-glue-train-sample" / "new_dev.tsv").exists():
        sys.exit(f"make_corpus: {args.data}/qqp-glue-train-sample/new_dev.tsv is missing (the fit needs QQP)")
    rows = generate(args.n, args.seed, args.data)
    numbers: dict[str, int] = {}
    columns = ["id", "text", "planted", "kind", "near_miss_of"]
    types = {"planted": int, "near_miss_of": int}
    with TableWriter(args.out, columns, types) as table:
        for n, row in enumerate(rows):
            group = numbers.setdefault(row["group"], len(numbers) + 1) if row["group"] else None
            near = numbers.setdefault(row["near"], len(numbers) + 1) if row.get("near") else None
            table.write({"id": f"q{n}", "text": row["text"], "planted": group, "kind": row["kind"],
                         "near_miss_of": near})
    print(f"make_corpus: {len(rows):,} questions, {len(numbers):,} planted groups, written to {args.out}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
