"""The graders of the OpenAI Evals dialect that need no model, as pure functions: templates with
``{{item.x}}`` / ``{{sample.output_text}}`` references, ``string_check`` and ``text_similarity``.

A template names a value of the item being graded (``item.<path>``, dots into objects, digits into
lists) or of the sample the model produced for it (``sample.output_text``, ``sample.output_json``
and its paths). A reference to nothing renders as the empty string, as OpenAI's does; objects render
as JSON."""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import re
from collections import Counter
from typing import Any

from ragtune_eval.dataset import not_json_constant

TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][\w.\-]*)\s*\}\}")
NAMESPACES = ("item", "sample")
STRING_CHECK_OPERATIONS = ("eq", "ne", "like", "ilike")
# the text_similarity metrics this server computes (not cosine, nor meteor)
SIMILARITY_METRICS = (
    "fuzzy_match",
    "bleu",
    "gleu",
    "rouge_1",
    "rouge_2",
    "rouge_3",
    "rouge_4",
    "rouge_5",
    "rouge_l",
)
_TOKEN = re.compile(r"\w+", re.UNICODE)


class TemplateError(ValueError):
    pass


def references(template: str) -> list[str]:
    """The variables a template names (``item.label``, ``sample.output_text``)."""
    return [m.group(1) for m in TEMPLATE.finditer(template)]


def check_template(template: str, sample_allowed: bool) -> None:
    """A template's references must be in a namespace it can see: ``item``, and ``sample`` for a
    grader (not for the messages sent to the model, which are rendered before any sample exists)."""
    for name in references(template):
        namespace = name.split(".", 1)[0]
        if namespace not in NAMESPACES or (namespace == "sample" and not sample_allowed):
            allowed = "item.* or sample.*" if sample_allowed else "item.*"
            raise TemplateError(f"{{{{{name}}}}} is not a variable here (use {allowed})")


def lookup(context: dict[str, Any], name: str) -> Any:
    value: Any = context
    for part in name.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def render(template: str, context: dict[str, Any]) -> str:
    return TEMPLATE.sub(lambda m: as_text(lookup(context, m.group(1))), template)


def sample_namespace(output_text: str) -> dict[str, Any]:
    """What ``{{sample.*}}`` sees: the text, and its JSON when it parses (a fenced block too)."""
    sample: dict[str, Any] = {"output_text": output_text}
    text = output_text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
    with contextlib.suppress(ValueError, RecursionError):  # NaN/Infinity are not JSON: no output_json
        sample["output_json"] = json.loads(fenced.group(1) if fenced else text, parse_constant=not_json_constant)
    return sample


def string_check(operation: str, value: str, reference: str) -> float:
    """1.0 or 0.0: ``eq``/``ne`` compare exactly; ``like`` is "contains", ``ilike`` ignoring case."""
    if operation == "eq":
        return float(value == reference)
    if operation == "ne":
        return float(value != reference)
    if operation == "like":
        return float(reference in value)
    if operation == "ilike":
        return float(reference.casefold() in value.casefold())
    raise ValueError(f"unknown string_check operation {operation!r}")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _ngrams(words: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def rouge_n(candidate: str, reference: str, n: int) -> float:
    """ROUGE-N F1 over word n-grams."""
    cand, ref = _ngrams(tokens(candidate), n), _ngrams(tokens(reference), n)
    overlap = sum((cand & ref).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(cand.values()), overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1: the longest common subsequence of words."""
    a, b = tokens(candidate), tokens(reference)
    if not a or not b:
        return 0.0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    lcs = previous[-1]
    if not lcs:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def bleu(candidate: str, reference: str, max_n: int = 4) -> float:
    """Sentence BLEU (up to 4-grams, add-one smoothing above unigrams, brevity penalty)."""
    cand, ref = tokens(candidate), tokens(reference)
    if not cand or not ref:
        return 0.0
    logs = 0.0
    for n in range(1, max_n + 1):
        grams, ref_grams = _ngrams(cand, n), _ngrams(ref, n)
        total = max(sum(grams.values()), 0)
        matched = sum((grams & ref_grams).values())
        if n == 1 and matched == 0:
            return 0.0
        smooth = 0 if n == 1 else 1
        logs += math.log((matched + smooth) / (total + smooth)) if total + smooth else math.log(1e-9)
    penalty = 1.0 if len(cand) > len(ref) else math.exp(1 - len(ref) / len(cand))
    return penalty * math.exp(logs / max_n)


def gleu(candidate: str, reference: str, max_n: int = 4) -> float:
    """Google-BLEU: the smaller of n-gram precision and recall, n-grams of 1 to 4 pooled."""
    cand, ref = tokens(candidate), tokens(reference)
    cand_grams: Counter[tuple[str, ...]] = Counter()
    ref_grams: Counter[tuple[str, ...]] = Counter()
    for n in range(1, max_n + 1):
        cand_grams += _ngrams(cand, n)
        ref_grams += _ngrams(ref, n)
    if not cand_grams or not ref_grams:
        return 0.0
    matched = sum((cand_grams & ref_grams).values())
    return min(matched / sum(cand_grams.values()), matched / sum(ref_grams.values()))


def fuzzy_match(candidate: str, reference: str) -> float:
    """Similarity of the two strings as a ratio of matching characters (difflib), 0 to 1."""
    if not candidate and not reference:
        return 1.0
    return difflib.SequenceMatcher(None, candidate, reference, autojunk=False).ratio()


def similarity(metric: str, candidate: str, reference: str) -> float:
    """One of :data:`SIMILARITY_METRICS`, from 0 to 1."""
    if metric == "fuzzy_match":
        return fuzzy_match(candidate, reference)
    if metric == "bleu":
        return bleu(candidate, reference)
    if metric == "gleu":
        return gleu(candidate, reference)
    if metric == "rouge_l":
        return rouge_l(candidate, reference)
    if metric.startswith("rouge_") and metric[6:].isdigit():
        return rouge_n(candidate, reference, int(metric[6:]))
    raise ValueError(f"unknown text similarity metric {metric!r}")


def grade_item(criteria: list[dict[str, Any]], item: dict[str, Any], sample: dict[str, Any]) -> list[dict[str, Any]]:
    """The results of every grader (``string_check``, ``text_similarity`` but ``cosine``) on one
    item and its sample namespace: ``{name, type, score, passed}`` each."""
    context = {"item": item, "sample": sample}
    results = []
    for criterion in criteria:
        value, reference = render(criterion["input"], context), render(criterion["reference"], context)
        if criterion["type"] == "string_check":
            score = string_check(criterion["operation"], value, reference)
            passed = score == 1.0
        elif criterion["type"] == "text_similarity":
            score = similarity(criterion["evaluation_metric"], value, reference)
            passed = score >= float(criterion["pass_threshold"])
        else:
            raise ValueError(f"grader type {criterion['type']!r} is not run here")
        results.append({"name": criterion["name"], "type": criterion["type"], "score": score, "passed": passed})
    return results
