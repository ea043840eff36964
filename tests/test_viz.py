"""Notebook helpers: tables, PCA, the item-space plot, escaped HTML."""

import numpy as np

from conftest import need_extra
from semrec import viz
from semrec.ranking import Recommendation, Results


def test_pca_2d_recovers_the_main_axes():
    rng = np.random.default_rng(0)
    points = np.c_[rng.normal(0, 10, 200), rng.normal(0, 1, 200), np.zeros(200)]
    projected, extra = viz.pca_2d(points, np.array([10.0, 0, 0]))
    assert projected.shape == (200, 2) and extra.shape == (1, 2)
    assert abs(np.corrcoef(projected[:, 0], points[:, 0])[0, 1]) > 0.99


def test_results_html_escapes_item_text():
    results = Results([Recommendation("1", 0.5, "<script>alert(1)</script>", "A & B", ["<b>"], "like <i>")])
    html = results._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html and "A &amp; B" in html


def test_side_by_side_pads_the_shorter_table():
    import pandas as pd

    table = viz.side_by_side(pd.DataFrame({"a": [1, 2, 3]}), pd.DataFrame({"b": [1]}))
    assert table.shape == (3, 2) and table[("recommended", "b")].isna().sum() == 2


def test_plot_item_space_marks_user_history_and_recommendations(open_rec, catalog):
    matplotlib = need_extra("notebooks", "matplotlib")[0]
    matplotlib.use("Agg")
    rec = open_rec("edge")
    rec.index_items(catalog)
    for item_id in ("el-001", "el-008"):
        rec.record("u", item_id)
    fig = viz.plot_item_space(rec, "u", k=5)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert {"history", "top 5", "user u", "Electronics", "Garden"} <= set(labels)
    history = viz.history_frame(rec, "u")
    assert history.item_id.tolist() == ["el-008", "el-001"]
