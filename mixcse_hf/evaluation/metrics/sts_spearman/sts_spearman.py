"""STS Spearman: the Spearman rank correlation x 100 between predicted similarities and gold scores.

An ``evaluate`` metric module shipped with mixcse_hf and loaded by path (``evaluate.load`` of this folder), so it
works offline, unlike ``evaluate.load("spearmanr")``, which fetches its script from the Hub.
"""

import datasets
import evaluate
from scipy.stats import spearmanr

_DESCRIPTION = "Spearman rank correlation x 100 between predicted similarities and gold STS scores (SentEval)."
_INPUTS = """
Args:
    predictions: predicted similarities (e.g. cosines of sentence embeddings), one per pair.
    references: gold similarity scores, one per pair.
Returns:
    spearman: Spearman's rho x 100 (NaN when either side is constant).
"""
_CITATION = """@inproceedings{conneau2018senteval,
  title={SentEval: An Evaluation Toolkit for Universal Sentence Representations},
  author={Conneau, Alexis and Kiela, Douwe},
  booktitle={LREC},
  year={2018}
}"""


class StsSpearman(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions: list[float], references: list[float]) -> dict[str, float]:
        return {"spearman": float(spearmanr(references, predictions).statistic * 100)}
