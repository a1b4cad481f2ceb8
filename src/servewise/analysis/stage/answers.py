"""The answers file: what no probe and no stored run can see (does anyone depend on it, is there an SLA).

Its own module because it is the one input a person types: it is parsed strictly (a typo is an error,
not a silent "unknown") and the template to fill in is generated from the same questions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import yaml

from servewise.errors import UsageError

Answer = Literal["yes", "no", "unknown"]

# Keys of the answers file; values yes | no | unknown.
ANSWER_QUESTIONS: Mapping[str, str] = {
    "users_depend": "Do users or internal operations depend on the system?",
    "sla": "Is there an SLA or an internal latency/availability commitment?",
    "on_call": "Is someone on call for it?",
    "rollback_exercised": "Has a rollback to the previous deployment actually been done (or rehearsed)?",
    "deploy_routine": "Is deployment a repeatable routine (script, CI), not manual steps?",
    "workload_stable": "Has the workload (model, prompt and output lengths) stopped changing a lot?",
    "traffic_growing": "Is traffic growing, so that capacity is a recurring question?",
    "cost_tracked": "Is cost per serving outcome (e.g. $ per 1M tokens) tracked?",
}


class AnswersError(UsageError):
    """The answers file is not a mapping of known questions to yes/no/unknown."""


def parse_answers(text: str) -> dict[str, Answer]:
    """YAML text → answers; a question missing from the file is 'unknown'. Typos are errors, not silence."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise AnswersError(f"answers file is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise AnswersError("answers file must be a mapping, e.g. `users_depend: yes`")
    answers: dict[str, Answer] = dict.fromkeys(ANSWER_QUESTIONS, "unknown")
    for key, value in data.items():
        if key not in ANSWER_QUESTIONS:
            known = ", ".join(ANSWER_QUESTIONS)
            raise AnswersError(f"unknown question {key!r} in answers file (known: {known})")
        # YAML 1.1 reads yes/no as booleans and a bare `unknown` or empty value as a string / None.
        normal = (
            {True: "yes", False: "no", None: "unknown"}.get(value, value)
            if not isinstance(value, str)
            else value
        )
        normal = str(normal).strip().lower()
        if normal not in ("yes", "no", "unknown"):
            raise AnswersError(f"{key}: {value!r} is not yes, no or unknown")
        answers[key] = normal  # type: ignore[assignment]
    return answers


def answers_template() -> str:
    """An answers file to fill in, one commented question per line."""
    return "".join(f"# {question}\n{key}: unknown\n" for key, question in ANSWER_QUESTIONS.items())


def answered(answers: Mapping[str, str], key: str) -> str:
    """The answer to one question; a question the file leaves out (or no file) is 'unknown'."""
    return answers.get(key, "unknown")
