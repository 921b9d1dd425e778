"""Every refusal of the service core has one answer: status, problem code, metric label."""

from __future__ import annotations

import typing

from service import errors
from service.problems import REFUSALS, ProblemCode


def test_every_refusal_has_an_answer_with_a_known_code():
    refusals = {
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.Refusal)
    } - {errors.Refusal}
    assert set(REFUSALS) == refusals
    codes = set(typing.get_args(ProblemCode))
    for refusal, answer in REFUSALS.items():
        assert answer.code in codes, refusal
        assert 400 <= answer.status < 600


def test_answers_that_invite_a_retry_say_when():
    retried = {cls for cls, answer in REFUSALS.items() if answer.retry_after_s}
    assert retried == {
        errors.QueueFull,
        errors.ShuttingDown,
        errors.QueueUnavailable,
        errors.InferenceUnavailable,
    }
    # TooManyJobs says when in each refusal (the store knows how full it is).
