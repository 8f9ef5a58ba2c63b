"""The RAG-concept experiment: does putting the retrieved concept in the input make answers correct?

The same ML-tutor questions train two adapters, one on `(제공된 정보) {concept} (사용자 질문) {question}`
and one on the bare question, both in the output_message format. An answer is correct when it contains
every key fact of its question (compared without spaces, punctuation or case); a question's accuracy is
its correct answers over the answers drawn, and the overall accuracy is the mean over questions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ohlora_assets.core.base_models import ModelSpec
from ohlora_assets.core.formats import RAG_INPUT, TASK_FORMATS
from ohlora_assets.core.generation import SamplingSettings, train_and_generate
from ohlora_assets.core.progress import Progress
from ohlora_assets.core.quality import normalize
from ohlora_assets.core.recipes import LoraHyperParams
from ohlora_assets.core.file_rules import split_key_facts
from ohlora_assets.core.render import figure_png, markdown_cell, subplots

if TYPE_CHECKING:  # lora imports torch, which definitions must not load
    from ohlora_assets.core.lora import LoraTrainResult

TASK = "output_message"
VARIANTS = {"with_concept": True, "without_concept": False}

_KOREAN_IN_PARENS = re.compile(r"\(([^()]*[가-힣][^()]*)\)")
_PARENS = re.compile(r"\([^()]*\)")
# Words that name an aspect of a term rather than the term: "F1 Score 개념" is about "F1 Score".
_ASPECT_SUFFIX = re.compile(r"\s+(?:개념|수식|장점|특징|계산법|작성 방법|차이|사용|metric)$")


def question_input(question: str, concept: str, with_concept: bool) -> str:
    return RAG_INPUT.format(concept=concept, question=question) if with_concept else question


def derive_key_facts(concept: str) -> list[str]:
    """Key facts for a row without any: the concept's Korean term in parentheses, e.g. `코사인 유사도`
    from `cosine similarity (코사인 유사도) : ...`; failing that, the term(s) before the colon."""
    head = concept.split(":", 1)[0]
    korean = _KOREAN_IN_PARENS.search(head)
    if korean:
        return [korean.group(1).strip()]
    head = _ASPECT_SUFFIX.sub("", _PARENS.sub("", head).strip())
    terms = [t.strip() for t in re.split(r"\s+(?:와|과)\s+|,\s*", head)]
    return [t for t in terms if t]


def key_facts_of(row: pd.Series) -> tuple[list[str], bool]:
    """(key facts, whether they were derived) of one question row."""
    written = split_key_facts(str(row.get("key_facts", "")))
    return (written, False) if written else (derive_key_facts(row["rag_retrieved_data"]), True)


def is_correct(answer: str, facts: list[str]) -> bool:
    """Every fact's words are in the answer; a fact with no words (say, an emoji) is in no answer, not in every one."""
    text = normalize(answer)
    return bool(facts) and all((words := normalize(fact)) and words in text for fact in facts)


def experiment_data(qa: pd.DataFrame, with_concept: bool) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[str]]:
    """(train pairs, labelled valid pairs, valid prompts) in the output_message format."""
    fmt = TASK_FORMATS[TASK]

    def prompt(row) -> str:
        return fmt.prompt({"input_data": question_input(row.user_question, row.rag_retrieved_data, with_concept)})

    train = qa[qa["data_type"] == "train"]
    valid = qa[qa["data_type"] == "valid"]
    train_pairs = [(prompt(r), fmt.completion(r.output_message)) for r in train.itertuples()]
    valid_pairs = [(prompt(r), fmt.completion(r.output_message)) for r in valid.itertuples() if r.output_message]
    return train_pairs, valid_pairs, [prompt(r) for r in valid.itertuples()]


@dataclass
class RagConceptSettings:
    hp: LoraHyperParams  # the seed's: rank 64, alpha 16, dropout 0.05, lr 3e-4, batch 2, 20 epochs)
    answers_per_question: int = 4
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    max_train_rows: int | None = None
    max_questions: int | None = None


@dataclass
class RagConceptResult:
    per_question: pd.DataFrame  # one row per valid question
    answers: pd.DataFrame  # one row per answer: variant, question index, answer, correct, ...
    accuracy: dict[str, float]  # variant -> mean per-question accuracy
    training: dict[str, LoraTrainResult]
    derived_key_facts: int  # questions whose key facts came from the concept, not the file


def grade(valid: pd.DataFrame, answers: dict[str, list[list[str]]]) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(per-question table, per-answer table, derived count) for `answers[variant][question] = [answer, ...]`."""
    facts = [key_facts_of(row) for _, row in valid.iterrows()]
    per_question = pd.DataFrame(
        {
            "question": valid["user_question"].to_numpy(),
            "key_facts": ["; ".join(f) for f, _ in facts],
            "key_facts_derived": [derived for _, derived in facts],
        }
    )
    rows = []
    for variant, by_question in answers.items():
        correct = [[is_correct(a, facts[q][0]) for a in given] for q, given in enumerate(by_question)]
        per_question[f"{variant}_correct"] = [sum(c) for c in correct]
        per_question[f"{variant}_answers"] = [len(c) for c in correct]
        per_question[f"{variant}_accuracy"] = [sum(c) / len(c) if c else 0.0 for c in correct]
        per_question[f"{variant}_sample"] = [given[0] if given else "" for given in by_question]
        rows += [
            {"variant": variant, "question_index": q, "answer_index": i, "answer": a, "correct": ok}
            for q, given in enumerate(by_question)
            for i, (a, ok) in enumerate(zip(given, correct[q]))
        ]
    return per_question, pd.DataFrame(rows), sum(derived for _, derived in facts)


def run_rag_concept_experiment(
    source: ModelSpec, qa: pd.DataFrame, settings: RagConceptSettings, output_dir: Path, progress: Progress | None = None
) -> RagConceptResult:
    """Train and sample both variants on the same rows, seed and hyper-parameters, then grade."""
    if settings.max_train_rows is not None:
        qa = pd.concat([qa[qa["data_type"] == "train"].head(settings.max_train_rows), qa[qa["data_type"] != "train"]])
    if settings.max_questions is not None:
        qa = pd.concat([qa[qa["data_type"] != "valid"], qa[qa["data_type"] == "valid"].head(settings.max_questions)])
    valid = qa[qa["data_type"] == "valid"]
    answers: dict[str, list[list[str]]] = {}
    training = {}
    for variant, with_concept in VARIANTS.items():
        train_pairs, valid_pairs, prompts = experiment_data(qa, with_concept)
        trained, run = train_and_generate(
            source, train_pairs, valid_pairs, settings.hp, Path(output_dir) / variant, prompts, TASK,
            settings.answers_per_question, settings.sampling, progress,
        )
        training[variant] = trained
        n = settings.answers_per_question
        answers[variant] = [[a.answer for a in run.answers[q * n : (q + 1) * n]] for q in range(len(prompts))]
    per_question, per_answer, derived = grade(valid, answers)
    accuracy = {variant: float(per_question[f"{variant}_accuracy"].mean()) for variant in VARIANTS}
    return RagConceptResult(per_question, per_answer, accuracy, training, derived)


def per_question_markdown(per_question: pd.DataFrame) -> str:
    """The seed report's table: each question, its key facts, and correct answers with and without the concept."""
    lines = [
        "| # | question | key facts | with concept | without concept | sample with | sample without |",
        "| ---: | --- | --- | ---: | ---: | --- | --- |",
    ]
    for i, row in per_question.iterrows():
        facts = row["key_facts"] + (" *(derived)*" if row["key_facts_derived"] else "")
        cells = [
            str(i + 1), row["question"], facts,
            f"{row['with_concept_correct']}/{row['with_concept_answers']}",
            f"{row['without_concept_correct']}/{row['without_concept_answers']}",
            row["with_concept_sample"][:80], row["without_concept_sample"][:80],
        ]
        lines.append("| " + " | ".join(markdown_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def accuracy_plot(per_question: pd.DataFrame) -> bytes:
    """PNG: per-question accuracy with and without the concept, and the two overall means."""
    import numpy as np

    positions = np.arange(len(per_question))
    figure, (bars, overall) = subplots(1, 2, figsize=(11, 3.6), dpi=100, gridspec_kw={"width_ratios": [4, 1]})
    for offset, variant in ((-0.2, "with_concept"), (0.2, "without_concept")):
        bars.bar(positions + offset, per_question[f"{variant}_accuracy"], 0.4, label=variant.replace("_", " "))
    bars.set_xticks(positions, [str(i + 1) for i in positions], fontsize=7)
    bars.set_xlabel("question #")
    bars.set_ylabel("correct answers / drawn")
    bars.set_ylim(0, 1.05)
    bars.legend(fontsize=8)
    means = [per_question[f"{v}_accuracy"].mean() for v in VARIANTS]
    overall.bar(["with", "without"], means, color=["C0", "C1"])
    overall.set_ylim(0, 1.05)
    overall.set_title("overall")
    return figure_png(figure)
