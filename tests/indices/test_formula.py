"""The formula parser: whitelist only, never eval."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openeo_deepfeatures.errors import FormulaInvalid
from openeo_deepfeatures.indices.formula import load_formulas, parse_formula, symbols


def test_parse_tree():
    assert parse_formula("(N - R)/(N + R)") == (
        "div",
        ("sub", ("sym", "N"), ("sym", "R")),
        ("add", ("sym", "N"), ("sym", "R")),
    )
    assert parse_formula("-1.0 * x") == ("mul", ("num", -1.0), ("sym", "x"))
    assert parse_formula("-(a)") == ("neg", ("sym", "a"))
    assert parse_formula("+a ** 2") == ("pow", ("sym", "a"), ("num", 2.0))
    assert parse_formula("sqrt(abs(a))") == ("sqrt", ("abs", ("sym", "a")))
    assert parse_formula("log(a)") == ("ln", ("sym", "a"))
    assert symbols(parse_formula("g * (N - R) / (N + C1 * R)")) == {"g", "N", "R", "C1"}


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('rm -rf /')",
        "N.real",
        "N[0]",
        "lambda: 1",
        "N if R else B",
        "N < R",
        "open('x')",
        "exp(N, R)",
        "exp(x=N)",
        "'text'",
        "True + N",
        "1e400 * N",
        "N // R",
        "N % R",
        "[N, R]",
        "_private + 1",
        "",
        "N +",
    ],
)
def test_rejected(text):
    with pytest.raises(FormulaInvalid):
        parse_formula(text, "X")


def test_too_deep():
    with pytest.raises(FormulaInvalid, match="deeper"):
        parse_formula("(" * 80 + "N" + ")+1" * 80)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="NRB0123456789.+-*/()_ ,[]'\"ex:lambd%<=", max_size=40))
def test_arbitrary_text_gives_tree_or_formula_invalid(text):
    try:
        tree = parse_formula(text)
    except FormulaInvalid:
        return
    assert isinstance(tree, tuple)


def test_load_formulas(tmp_path):
    good = tmp_path / "f.json"
    good.write_text(json.dumps({"MY": "(B08 - B04) / (B08 + B04)"}))
    assert load_formulas(good) == {"MY": "(B08 - B04) / (B08 + B04)"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"EVIL": "__import__('os')"}))
    with pytest.raises(FormulaInvalid, match="EVIL"):
        load_formulas(bad)
    with pytest.raises(FormulaInvalid, match="JSON object"):
        bad.write_text("[1, 2]")
        load_formulas(bad)
    with pytest.raises(FormulaInvalid, match="cannot read"):
        load_formulas(tmp_path / "missing.json")
