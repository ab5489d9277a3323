"""The README's demo runs and shows the hack it claims to show."""

import jax.numpy as jnp

import purejax as pj
from experiments import credit_demo


def test_sum_form_prefers_filler_and_min_form_prefers_the_correct_answer():
    r, ends, mask = credit_demo.build_group()
    names = [name for name, _ in credit_demo.RESPONSES]
    best = {}
    for credit in ("sum", "min", "soft_min", "worst_step"):
        out = pj.pure_advantages(r, ends, mask, r.shape[0], dict(credit=credit, whiten=False))
        best[credit] = names[int(jnp.argmax(out.returns[:, 0]))]
    assert best["sum"] == "filler thinking x7"
    assert best["min"] == best["soft_min"] == best["worst_step"] == "correct, 4 steps"


def test_demo_writes_its_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["credit_demo", "--out", str(tmp_path)])
    credit_demo.main()
    assert (tmp_path / "credit_demo.png").stat().st_size > 10_000
    assert "Highest value per mode: sum: filler thinking x7" in capsys.readouterr().out
