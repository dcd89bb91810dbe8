"""The forward-cost curve: interpolation, tree sizing, measurement and its disk cache."""

import json

import pytest

from decodekit.session import Session
from decodekit.drafting import cost_curve as cc
from decodekit.drafting.cost_curve import CostCurve, cost_curve, curve_key, measure
from tiny import tiny_model


def test_time_interpolates_and_extrapolates():
    curve = CostCurve((1, 2, 4), (1.0, 1.0, 2.0))
    assert curve.time(1) == 1.0
    assert curve.time(3) == pytest.approx(1.5)
    assert curve.time(6) == pytest.approx(3.0)  # the last slope, 0.5 per token
    assert curve.ratio(4) == 2.0


def test_best_size_maximises_expected_tokens_per_second():
    flat = CostCurve((1, 64), (1.0, 1.0))  # extra tokens are free: every useful node pays
    assert flat.best_size([0.9, 0.5, 0.1, 0.01]) == 4
    steep = CostCurve((1, 2), (1.0, 2.0))  # each token costs a whole forward: no node pays unless certain
    assert steep.best_size([0.9, 0.5]) == 0
    mid = CostCurve((1, 2, 3, 4), (1.0, 1.1, 1.2, 2.0))
    # rates: n=0 1/1, n=1 1.9/1.1, n=2 2.4/1.2 = 2.0, n=3 2.5/2.0
    assert mid.best_size([0.9, 0.5, 0.1]) == 2
    assert mid.best_size([]) == 0
    assert mid.best_size([0.9, 0.5], overhead=100.0) == 2  # a large fixed overhead favours more nodes


def test_batch_draft_size_pays_for_every_sequences_rows():
    flat = CostCurve((1, 128), (1.0, 1.0))  # rows are free: every sequence drafts all it may
    assert flat.batch_draft_size(8, 0.6, 5) == 5
    # int4-like: 8 rows cost 2.3 single-row forwards, then linear. Alone, a chain at 0.7 pays (n=3:
    # 2.533 / 1.9 > 1); in a batch of 8 every drafted node adds 8 rows, and no draft pays
    int4 = CostCurve((1, 2, 4, 8, 16, 32), (1.0, 1.3, 1.6, 2.3, 4.4, 8.6))
    assert int4.batch_draft_size(1, 0.7, 4) > 0
    assert int4.batch_draft_size(8, 0.7, 4) == 0
    # n=0: 1 / 1.6; n=1: 1.5 / 2.3 (better); n=2: 1.75 / 3.35 (worse)
    assert int4.batch_draft_size(4, 0.5, 4) == 1
    assert int4.batch_draft_size(4, 0.5, 0) == 0


def test_budgets_within_ratios():
    curve = CostCurve((1, 8, 16, 32), (1.0, 1.0, 1.2, 2.4))
    # 16 new tokens (15 nodes) cost 1.2; 17 cost 1.275
    assert curve.budgets_within([1.2, 1.5, 2.4]) == [15, 19, 31]
    assert curve.budgets_within([0.5]) == [1]


def test_from_json_validates():
    assert CostCurve.from_json({"sizes": [1, 2], "seconds": [0.1, 0.2]}).sizes == (1, 2)
    for bad in ({"sizes": [2, 4], "seconds": [0.1, 0.2]}, {"sizes": [1, 2], "seconds": [0.2, 0.1]},
                {"sizes": [1], "seconds": [0.0]}, {"sizes": [1, 2], "seconds": [0.1]}):
        with pytest.raises(ValueError):
            CostCurve.from_json(bad)


def test_measure_on_a_tiny_model_is_monotone_and_stops_early():
    model = tiny_model()
    curve = measure(model, sizes=(1, 2, 4, 8), repeats=1, context=16, max_ratio=1e9)
    assert curve.sizes == (1, 2, 4, 8)
    assert list(curve.seconds) == sorted(curve.seconds) and curve.seconds[0] > 0
    stopped = measure(model, sizes=(1, 2, 4, 8), repeats=1, context=16, max_ratio=0.0)
    assert stopped.sizes == (1, 2)  # the first size over the ratio is the last one measured


def test_cost_curve_is_cached_on_disk_per_key(tmp_path, monkeypatch):
    model = tiny_model()
    calls = []
    monkeypatch.setattr(cc, "measure", lambda m: calls.append(m) or CostCurve((1, 2), (0.5, 0.75)))
    monkeypatch.setattr(cc, "other_load", lambda: 0.1)
    first = cost_curve(model, Session(), tmp_path)
    path = tmp_path / "cost_curves" / f"{curve_key(model)}.json"
    assert json.loads(path.read_text())["seconds"] == [0.5, 0.75]
    session = Session()  # a new session: read from disk, not measured again
    assert cost_curve(model, session, tmp_path) == first and len(calls) == 1
    assert cost_curve(model, session, tmp_path) == first and len(calls) == 1  # then kept by the session
    path.write_text("{not json")  # an unreadable entry is measured again and rewritten
    assert cost_curve(model, Session(), tmp_path) == first and len(calls) == 2
    assert json.loads(path.read_text())["sizes"] == [1, 2]


def test_a_measurement_on_a_busy_machine_serves_only_this_process(tmp_path, monkeypatch, capsys):
    model = tiny_model()
    monkeypatch.setattr(cc, "measure", lambda m: CostCurve((1, 2), (0.5, 0.75)))
    monkeypatch.setattr(cc, "other_load", lambda: 0.9)
    session = Session()
    assert cost_curve(model, session, tmp_path).seconds == (0.5, 0.75)
    assert not (tmp_path / "cost_curves" / f"{curve_key(model)}.json").exists()
    assert "not cached" in capsys.readouterr().err
    assert cost_curve(model, session, tmp_path).seconds == (0.5, 0.75)  # kept by the session


def test_other_load_is_a_share_of_the_cores():
    assert 0.0 <= cc.other_load()


def test_key_depends_on_weights_config_and_threads(monkeypatch):
    small = tiny_model(layers=2)
    assert curve_key(small) == curve_key(tiny_model(layers=2))
    assert curve_key(small) != curve_key(tiny_model(layers=3))
    two_threads_or_more = curve_key(small)
    monkeypatch.setattr(cc.torch, "get_num_threads", lambda: 977)
    assert curve_key(small) != two_threads_or_more
