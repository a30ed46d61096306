"""The DAG compiler and the block kernel, against direct numpy evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openeo_deepfeatures.udf import spectral_indices as si_udf
from openeo_deepfeatures.udf.spectral_indices import run_program

from openeo_deepfeatures.indices.dag import Dag, compile_program
from openeo_deepfeatures.indices.formula import parse_formula
from openeo_deepfeatures.indices.resolve import compile_indices

LABELS = ["B04", "B08", "B03"]
SYMS = {"R": "B04", "N": "B08", "G": "B03"}
#: Both evaluators of a program (numba is a dependency: neither is skipped).
ENGINES = ["numpy", "numba"]


def numpy_eval(expr, env):
    kind = expr[0]
    if kind == "num":
        return np.float64(expr[1])
    if kind == "sym":
        return env[expr[1]]
    args = [numpy_eval(c, env) for c in expr[1:]]
    funcs = {
        "add": np.add,
        "sub": np.subtract,
        "mul": np.multiply,
        "div": np.divide,
        "pow": np.power,
        "neg": np.negative,
        "exp": np.exp,
        "sqrt": np.sqrt,
        "abs": np.abs,
        "ln": np.log,
        "log10": np.log10,
    }
    return funcs[kind](*args)


def compile_formulas(formulas: dict[str, str]):
    dag = Dag()
    env = {s: dag.band(label) for s, label in SYMS.items()}
    roots = [(name, dag.build(parse_formula(text, name), env)) for name, text in formulas.items()]
    return compile_program(dag, roots), roots, dag


def test_shared_subexpressions_and_folding():
    program, _, dag = compile_formulas(
        {
            "A": "(N - R) / (N + R)",
            "B": "(N - R) / (R + N) * 2",
            "C": "(1 + 0.5) * (N - R)",
            "D": "R + N",
        }
    )
    ops = [i[0] for i in program.instructions]
    assert ops.count("sub") == 1  # N - R once
    assert ops.count("add") == 1  # N + R == R + N once
    assert ops.count("div") == 1  # A is reused inside B
    assert ("const", 1.5) in dag.nodes  # folded
    assert program.outputs == ("A", "B", "C", "D")


def test_root_read_by_other_index_is_copied_from_register():
    program, _, _ = compile_formulas({"NDVI": "(N - R) / (N + R)", "X": "(N - R) / (N + R) + 1"})
    kinds = [(i[0], i[1][0]) for i in program.instructions]
    assert ("div", "r") in kinds and ("copy", "o") in kinds


@pytest.mark.parametrize("engine", ENGINES)
def test_identical_indices_and_band_passthrough(engine):
    program, _, _ = compile_formulas({"A": "N * R", "B": "R * N", "C": "N", "K": "2 * 3"})
    x = np.array([[[0.5, 0.25], [2.0, 4.0], [1.0, 1.0]]], dtype=np.float32)
    out = run_program(program.to_dict(), reorder(program, x), engine=engine)
    np.testing.assert_allclose(out[0], [[1.0, 1.0], [1.0, 1.0], [2.0, 4.0], [6.0, 6.0]])


def reorder(program, x_labels_r_n_g):
    """x given as (n, [B04, B08, B03], pix) -> the program's input order."""
    order = [LABELS.index(label) for label in program.inputs]
    return np.ascontiguousarray(x_labels_r_n_g[:, order])


exprs = st.recursive(
    st.one_of(
        st.sampled_from(["N", "R", "G"]),
        st.floats(-3, 3, allow_nan=False).map(lambda v: f"({v!r})"),
    ),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(inner, st.sampled_from(["2", "0.5", "3", "1.5"])).map(
            lambda t: f"({t[0]} ** {t[1]})"
        ),
        st.tuples(st.sampled_from(["exp", "sqrt", "abs", "-"]), inner).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
    ),
    max_leaves=12,
)


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=150, deadline=None)
@given(
    st.lists(exprs, min_size=1, max_size=6), st.sampled_from([1, 3, 7, 64]), st.sampled_from([1, 2])
)
def test_program_equals_direct_numpy(engine, formulas, block, threads):
    named = {f"I{i}": f for i, f in enumerate(formulas)}
    program, _, _ = compile_formulas(named)
    rng = np.random.default_rng(len(formulas))
    x = rng.uniform(-1, 1, size=(2, 3, 50)).astype(np.float32)
    x[0, 0, :3] = np.nan
    x[1, 1, 4] = 0.0
    got = run_program(
        program.to_dict(), reorder(program, x), block=block, threads=threads, engine=engine
    )
    env = {s: x[:, LABELS.index(label)].astype(np.float64) for s, label in SYMS.items()}
    with np.errstate(all="ignore"):
        for j, (name, text) in enumerate(named.items()):
            expected = np.broadcast_to(numpy_eval(parse_formula(text, name), env), (2, 50)).copy()
            expected[~np.isfinite(expected)] = np.nan
            expected32 = expected.astype(np.float32)
            expected32[~np.isfinite(expected32)] = np.nan  # float32 overflow is NaN too
            np.testing.assert_allclose(
                got[:, j], expected32, rtol=2e-5, atol=1e-6, equal_nan=True, err_msg=text
            )


@pytest.mark.parametrize("engine", ENGINES)
def test_float32_precision_option_and_errors(engine):
    program = compile_indices(["NDVI"], ["B04", "B08"]).to_dict()
    x = np.array([[[0.1, 0.2], [0.5, 0.6]]], dtype=np.float32)
    a = run_program(program, x, precision="float32", engine=engine)
    b = run_program(program, x, engine=engine)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(ValueError, match="precision"):
        run_program(program, x, precision="float16", engine=engine)
    with pytest.raises(ValueError, match="expected x"):
        run_program(program, x[:, :1], engine=engine)
    with pytest.raises(ValueError, match="unknown instruction"):
        run_program({**program, "instructions": [["eval", ["o", 0], ["x", 0]]]}, x, engine=engine)
    with pytest.raises(ValueError, match="engine"):
        run_program(program, x, engine="fortran")


def test_numba_engine_without_numba(monkeypatch):
    monkeypatch.setattr(si_udf, "numba_available", lambda: False)
    program = compile_indices(["NDVI"], ["B04", "B08"]).to_dict()
    x = np.array([[[0.1, 0.2], [0.5, 0.6]]], dtype=np.float32)
    with pytest.raises(ImportError, match="needs numba"):
        run_program(program, x, engine="numba")
    np.testing.assert_array_equal(
        run_program(program, x, engine="auto"), run_program(program, x, engine="numpy")
    )


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_engines_agree_on_every_index_and_edge_values(engine, precision):
    """Every catalogue index, both engines, with NaN, zeros, negative and huge inputs."""
    bands = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
    program = compile_indices(None, bands).to_dict()
    rng = np.random.default_rng(7)
    x = rng.uniform(0.005, 0.8, size=(3, len(program["inputs"]), 700)).astype(np.float32)
    x[0, :, :5] = 0.0
    x[1, 2, :9] = np.nan
    x[2, :, :4] = -0.3
    x[2, 3, 10:14] = 3e38
    x64 = x.astype(np.float64)
    ref = run_program(program, x64, engine="numpy", precision=precision, block=333)
    got = run_program(program, x, engine=engine, precision=precision, threads=2, block=100)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    rtol = 1e-5 if precision == "float64" else 2e-3
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=1e-6, equal_nan=True)


def test_program_is_json_data():
    import json

    program = compile_indices(["NDVI", "kNDVI"], ["B04", "B08"]).to_dict()
    assert json.loads(json.dumps(program)) == program
