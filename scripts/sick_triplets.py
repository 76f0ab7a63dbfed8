"""Derive (premise, entailment, contradiction) triplets from SICK's training split: a small offline stand-in for
SimCSE's NLI file (``nli_for_simcse.csv``), written in its layout (``sent0,sent1,hard_neg``).

For every pair judged ENTAILMENT (A entails B), each sentence C judged CONTRADICTION with A or with B (in either
order; contradiction is symmetric) gives the triplet (A, B, C). C contradicts A in both cases: if A entails B and
C contradicts B, A and C cannot both hold. SICK_train.txt gives 600 triplets (432 distinct premises).

SICK-R's test split (``SICK_test_annotated.txt``, one of the 7 evaluation tasks) is a different split of the same
corpus: its sentences come from the same source descriptions, so SICK-R scores after training on these triplets
are not a held-out measure of transfer.

    python scripts/sick_triplets.py --senteval_dir ../shared/data/senteval --output outputs/data/sick_triplets.csv
"""

from __future__ import annotations

import argparse
import csv
import os
from collections import defaultdict
from collections.abc import Iterable

FIELDS = ("sent0", "sent1", "hard_neg")


def read_sick(path: str) -> list[dict[str, str]]:
    """The rows of a SICK split (tab-separated, with a header naming ``entailment_judgment``)."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or "entailment_judgment" not in rows[0]:
        raise SystemExit(f"error: {path} has no entailment_judgment column; pass SICK_train.txt")
    return rows


def sick_triplets(rows: Iterable[dict[str, str]]) -> list[tuple[str, str, str]]:
    """Every (A, B, C) with A entailing B and C contradicting A or B, in file order, without repeats."""
    rows = list(rows)
    contradictions: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row["entailment_judgment"] == "CONTRADICTION":
            contradictions[row["sentence_A"]].append(row["sentence_B"])
            contradictions[row["sentence_B"]].append(row["sentence_A"])
    triplets: dict[tuple[str, str, str], None] = {}
    for row in rows:
        if row["entailment_judgment"] != "ENTAILMENT":
            continue
        premise, entailed = row["sentence_A"], row["sentence_B"]
        for negative in contradictions[premise] + contradictions[entailed]:
            if negative not in (premise, entailed):
                triplets[(premise, entailed, negative)] = None
    return list(triplets)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--senteval_dir", required=True, help="SentEval-layout directory holding SICK/SICK_train.txt")
    parser.add_argument("--output", required=True, help="CSV to write (sent0,sent1,hard_neg); not in the repository")
    args = parser.parse_args(argv)
    triplets = sick_triplets(read_sick(os.path.join(args.senteval_dir, "SICK", "SICK_train.txt")))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        writer.writerows(triplets)
    print(f"{len(triplets)} triplets -> {args.output}")


if __name__ == "__main__":
    main()
