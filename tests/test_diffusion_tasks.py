"""The ParallelBench-style tasks: generation is seeded and every scorer is exact."""

import random

import pytest

from decodekit.diffusion.tasks import GEN_LENGTH, PROMPT_LENGTH, TASKS, Instance, Vocab, make_instance, make_suite, score
from decodekit.errors import UserError


def test_references_score_one_and_fit_the_canvas():
    rng = random.Random(0)
    vocab = Vocab()
    for _ in range(50):
        for task in TASKS:
            inst = make_instance(task, rng)
            assert score(inst, inst.reference) == 1.0, inst
            assert len(vocab.encode(inst.prompt)) <= PROMPT_LENGTH
            assert len(vocab.encode(inst.reference)) < GEN_LENGTH


def test_suite_is_seeded():
    a, b, c = make_suite(3, 2), make_suite(3, 2), make_suite(4, 2)
    assert a == b and a != c and len(a) == 2 * len(TASKS)
    with pytest.raises(UserError):
        make_suite(0, 0)


def test_list_scorers_are_exact():
    inst = Instance("sort", "sort kim ann =>", "ann kim", (("kim", "ann"), ("ann", "kim")))
    assert score(inst, "ann kim") == 1.0
    assert score(inst, "kim ann") == 0.0 and score(inst, "ann") == 0.0 and score(inst, "ann kim kim") == 0.0
    shuffle = Instance("shuffle", "", "", (("a", "b", "c"), ("b", "a", "c")))
    assert score(shuffle, "c a b") == 1.0
    assert score(shuffle, "a b c") == 0.0  # the given order is not a shuffle
    assert score(shuffle, "a a b") == 0.0


def test_latin_square_validity():
    inst = Instance("latin", "latin A B C D =>", "", (("A", "B", "C", "D"),))
    good = "A B C D | B C D A | C D A B | D A B C"
    assert score(inst, good) == 1.0
    assert score(inst, "A B C D | B C D A | C D A B | D A C B") == 0.0  # column clash
    assert score(inst, "A B C D | B C D A | C D A B") == 0.0
    assert score(inst, "A B C E | B C D A | C D A B | D A B C") == 0.0


def test_sentence_agreement():
    inst = Instance("sentence", "sentence dog red =>", "", (0, "red"))
    assert score(inst, "a red dog runs .") == 1.0
    assert score(inst, "two red dogs sleep .") == 1.0
    assert score(inst, "two red dogs sleeps .") == 0.0
    assert score(inst, "a red dogs run .") == 0.0
    assert score(inst, "the big dog runs .") == 0.0
    assert score(inst, "the red fox runs .") == 0.0


def test_vocab_round_trip_and_unknown_word():
    vocab = Vocab()
    assert vocab.decode(vocab.encode("copy ann bob =>")) == "copy ann bob =>"
    assert vocab.decode([vocab.id("ann"), vocab.eos_id, vocab.id("bob")]) == "ann"
    with pytest.raises(UserError):
        vocab.encode("copy zed")


def test_a_task_breaks_only_when_it_loses_more_than_one_instance_in_twenty():
    from decodekit.diffusion.report import breaking_tasks

    def methods(at_four):
        return {"mdm": {"tasks": {"remove": {"score": 1.0}, "shuffle": {"score": 1.0}}},
                "low_confidence steps=6": {"tasks": {"remove": {"score": at_four["remove"]},
                                                     "shuffle": {"score": at_four["shuffle"]}}}}

    rows = breaking_tasks({"methods": methods({"remove": 0.95, "shuffle": 0.9})})
    assert [(r["task"], r["breaks"]) for r in rows] == [("remove", False), ("shuffle", True)]


def test_training_draws_the_free_answer_tasks_twice_as_often():
    from decodekit.diffusion.train import task_weights

    weights = dict(zip(TASKS, task_weights()))
    assert weights["shuffle"] == weights["latin"] == 2 * weights["copy"] == 2 * weights["sentence"]
