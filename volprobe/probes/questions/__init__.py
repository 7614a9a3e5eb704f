"""Spatial question sets from anatomy relation graphs (``probe questions``).

* :func:`answer_from_graph` — the option a relation graph implies for a spatial item (gold answers,
  counterfactual golds and the ``oracle`` model all use it);
* :func:`load_cases`, :func:`generate_questions`, :class:`QuestionSettings` — build a question set;
* :func:`write_question_set` — items (JSON Lines) plus a manifest;
* :func:`leakage_check` — how well a question-text-only classifier answers, per category.
"""

from volprobe.probes.questions.relation import answer_from_graph, relation_outcome
from volprobe.probes.questions.cases import QuestionCase, case_from_graph, load_cases
from volprobe.probes.questions.families import CATEGORIES, FAMILIES, FORMATS
from volprobe.probes.questions.generate import (GENERATOR_VERSION, QuestionSet, QuestionSettings,
                                                generate_questions)
from volprobe.probes.questions.io import write_question_set
from volprobe.probes.questions.leakage import LeakageResult, leakage_check

__all__ = ["answer_from_graph", "relation_outcome", "QuestionCase", "case_from_graph", "load_cases", "CATEGORIES",
           "FAMILIES", "FORMATS", "GENERATOR_VERSION", "QuestionSet", "QuestionSettings", "generate_questions",
           "write_question_set", "LeakageResult", "leakage_check"]
