"""Box bounds, CSV boxes, integers, linear constraints, projection; Result save/load."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import inverset as iv

torch.set_num_threads(1)


def test_box_checks_and_shape():
    with pytest.raises(iv.InversetError, match=r"lo > hi \(2 > 1\) at feature 0; swap"):
        iv.Box(2, 1)
    with pytest.raises(iv.InversetError, match="do not fit the input shape"):
        iv.Box([0, 0, 0], [1, 1, 1], shape=(2,))
    b = iv.Box([0, 1], [1, 3])
    assert b.shape == (2,)
    with pytest.raises(
        iv.InversetError, match=r"box has 2 bounds but the model input has shape \(5,\)"
    ):
        b.with_shape((5,))
    assert iv.Box(0, 1).with_shape((1, 8, 8)).lower.shape == (1, 8, 8)


def test_from_csv_data_and_lohi(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("a,b,c\n1,5,-1\n3,2,0\n2,4,7\n")
    b = iv.Box.from_csv(data)
    assert b.names == ["a", "b", "c"]
    np.testing.assert_array_equal(b.lower, [1, 2, -1])
    np.testing.assert_array_equal(b.upper, [3, 5, 7])
    lohi = tmp_path / "lohi.csv"
    lohi.write_text("bound,x,y\nlo,0,-2\nhi,1,2\n")
    b = iv.Box.from_csv(lohi)
    assert b.names == ["x", "y"]
    np.testing.assert_array_equal(b.upper, [1, 2])
    bare = tmp_path / "bare.csv"  # lo/hi rows without a header line
    bare.write_text("lo,0,-2\nhi,1,2\n")
    b = iv.Box.from_csv(bare)
    assert b.names is None
    np.testing.assert_array_equal(b.lower, [0, -2])
    np.testing.assert_array_equal(b.upper, [1, 2])
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2\n3,oops\n")
    with pytest.raises(iv.InversetError, match="every cell must be a number"):
        iv.Box.from_csv(bad)
    gaps = tmp_path / "gaps.csv"  # Excel's BOM, a missing value: the rest of the column counts
    gaps.write_text("\ufeffage,bmi\n30,nan\n50,22\n,31\n", encoding="utf-8")
    b = iv.Box.from_csv(gaps)
    assert b.names == ["age", "bmi"]
    np.testing.assert_array_equal(b.lower, [30, 22])
    np.testing.assert_array_equal(b.upper, [50, 31])
    empty = tmp_path / "empty_col.csv"
    empty.write_text("age,bmi\n30,nan\n50,nan\n")
    with pytest.raises(iv.InversetError, match=r"column 1 \(bmi\) has no value"):
        iv.Box.from_csv(empty)
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("lo,0,0\nhi,1,1\n5,5,5\n")
    with pytest.raises(iv.InversetError, match="lo/hi rows and 1 other rows"):
        iv.Box.from_csv(mixed)
    with pytest.raises(iv.InversetError, match="row 1 holds nan or inf"):
        iv.Box(0, 1, shape=(2,), A=[[1, 1], [np.nan, 1]], b=[1, 1])


def test_projection_box_polytope_integers():
    b = iv.Box(0, 1, shape=(2,), A=[[1.0, 1.0]], b=[1.0], integer=[1])
    x = torch.tensor([[2.0, 2.0], [0.2, 0.3], [0.9, 0.6]])
    p = b.project(x)
    assert (p >= -1e-9).all() and (p <= 1 + 1e-9).all()
    assert (p.sum(1) <= 1 + 1e-6).all()
    # Dykstra converges to the true projection: (0.9, 0.6) -> (0.65, 0.35)
    assert torch.allclose(p[2], torch.tensor([0.65, 0.35]), atol=1e-4)
    assert torch.allclose(p[1], x[1])
    r = b.project(x, round_integers=True)
    assert torch.equal(r[:, 1], r[:, 1].round())
    assert b.contains(torch.tensor([[0.5, 0.0]])).all()
    assert not b.contains(torch.tensor([[0.5, 0.5]])).any()  # integer feature 1 not whole
    assert not b.contains(torch.tensor([[1.0, 1.0]])).any()  # violates the sum


def test_integer_mask_indices_and_bad_values():
    mask = np.array([True, False, True, False])  # scipy's integrality= style
    assert iv.Box(-3, 3, shape=(4,), integer=mask).integer == (0, 2)
    assert iv.Box(-3, 3, shape=(4,), integer=[True, False, False, True]).integer == (0, 3)
    assert iv.Box(0, 1, shape=(4,), integer=[3, 1, 3]).integer == (1, 3)
    assert iv.Box(0, 1, shape=(4,), integer=2).integer == (2,)
    assert iv.Box(0, 1, shape=(4,), integer=np.array([1, 2])).integer == (1, 2)
    assert iv.Box(0, 1, shape=(4,), integer={3, 0}).integer == (0, 3)
    assert iv.Box(0, 1, shape=(4,), integer=np.array([2.0, 0.0])).integer == (0, 2)
    with pytest.raises(iv.InversetError, match="whole numbers"):
        iv.Box(0, 1, shape=(4,), integer=[2.7])
    with pytest.raises(iv.InversetError, match="integer mask has 2 entries but the input has 4"):
        iv.Box(0, 1, shape=(4,), integer=np.array([True, False]))
    with pytest.raises(iv.InversetError, match="integer feature -1 is negative"):
        iv.Box(0, 1, shape=(4,), integer=[-1])


def test_box_arguments_of_the_wrong_kind_are_named():
    with pytest.raises(iv.InversetError, match="box bound lo must be a number"):
        iv.Box("a", "b", shape=(4,))
    with pytest.raises(iv.InversetError, match="box shape must be a whole number"):
        iv.Box(0, 1, shape=4.0)
    with pytest.raises(iv.InversetError, match="box shape must hold whole numbers >= 1"):
        iv.Box(0, 1, shape=(2, 0))
    assert iv.Box(0, 1, shape=np.int64(4)).shape == (4,)


def thin_polytope(n: int = 12) -> iv.Box:
    """[0, 1]^n with x_i <= x_{i+1} - 0.05 and sum x <= 3.35: a sliver (the chain alone needs
    a sum of 3.3), where alternating projections converge slowly."""
    A, b = np.zeros((n, n)), np.full(n, -0.05)
    for i in range(n - 1):
        A[i, i], A[i, i + 1] = 1.0, -1.0
    A[-1], b[-1] = 1.0, 3.35
    return iv.Box(0, 1, shape=(n,), A=A, b=b)


def test_projection_onto_a_thin_polytope_ends_inside():
    """Every projected point lies in the domain (50 sweeps of Dykstra had left them up to
    0.012 outside, so the gradient search found no start inside: not_found)."""
    box = thin_polytope()
    x = box.project(torch.rand(64, 12, generator=torch.Generator().manual_seed(0)))
    assert box.contains(x).all(), float(box.violation(x).max())
    assert box.contains(box.sample(32, torch.Generator().manual_seed(1))).all()
    net = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    torch.manual_seed(5)
    r = iv.maximize(net, "out:0", box, solver="gradient", seed=0, max_evals=3000)
    exact = iv.maximize(net, "out:0", box, solver="exact", time_limit=30)
    assert r.status != "not_found", r.message
    assert box.contains(torch.as_tensor(r.xs, dtype=torch.float64), tol=1e-6).all()
    assert exact.status == "optimal" and r.value >= exact.value - 1e-3 * (1 + abs(exact.value))
    assert r.value <= exact.bound + 1e-5


def test_constraints_need_both_a_and_b_as_numbers():
    with pytest.raises(iv.InversetError, match="need both A and b; b was given without A"):
        iv.Box(0, 1, shape=(3,), b=[-5.0])
    with pytest.raises(iv.InversetError, match="need both A and b; A was given without b"):
        iv.Box(0, 1, shape=(3,), A=[[1.0, 0, 0]])
    with pytest.raises(iv.InversetError, match="A and b must be numbers"):
        iv.Box(0, 1, shape=(2,), A=[["a", 1.0]], b=[1.0])


@pytest.mark.parametrize("solver", ["gradient", "evolution", "cmaes", "annealing", "exact"])
def test_float32_points_stay_in_a_box_float32_cannot_hold(solver):
    """1000.3 and 0.3 are not float32 numbers: the points a float32 model sees are rounded
    inwards (they were 1000.2999878 and 0.30000001, outside the box)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    box = iv.Box([1000.3, 0.1], [1000.4, 0.3])
    for solve in (iv.maximize, iv.minimize):
        r = solve(net, "out:0", box, solver=solver, seed=0, max_evals=300, time_limit=10)
        xs = np.asarray(r.xs, dtype=np.float64)
        assert r.x.dtype == np.float32  # what the model saw, in its dtype
        assert ((xs >= [1000.3, 0.1]) & (xs <= [1000.4, 0.3])).all(), xs[:3]


@pytest.mark.parametrize("solver", ["gradient", "evolution", "cmaes", "annealing", "exact"])
def test_float32_points_keep_linear_constraints_near_3000(solver):
    """Inputs near 3000, where float32's spacing is 2.4e-4, and an active row of A x <= b:
    the float64 optimum rounded to float32 broke it by up to 2.5e-4 (exact; the gradient
    search's points by 1.2e-4). The points a float32 model sees keep every row."""
    rng = np.random.default_rng(2)
    A = rng.normal(size=(2, 3))
    b = A @ (3000 + rng.uniform(-0.5, 0.5, 3)) + 0.1234567
    box = iv.Box(2999, 3001, shape=(3,), A=A, b=b)
    for seed in (2, 3):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        r = iv.maximize(net, "out:0", box, solver=solver, seed=0, max_evals=300, time_limit=10)
        xs = np.asarray(r.xs, dtype=np.float64)
        assert r.x.dtype == np.float32
        assert (xs @ A.T - b <= 1e-9 * (1 + np.abs(b))).all(), (seed, (xs @ A.T - b).max())


def test_hold_moves_a_float32_point_off_a_thin_slab_by_one_unit():
    """Two rows 1e-3 apart at 1e4, where float32's spacing is 9.8e-4: the float32 copy of a
    point breaks both rows; the first fix walked it 0.036 toward the domain's inner point (the
    exact optimum lost 40x its gap). A float neighbour one unit away keeps every row."""
    A = np.array(
        [
            [-0.159, 0.541, 0.215, 0.355],
            [-0.654, -0.13, 0.784, 1.493],
            [-1.259, 1.514, 1.346, 0.781],
            [0.159, -0.541, -0.215, -0.355],
        ]
    )
    b = np.array([9520.123569510153, 14930.268179562083, 23820.075875702125, -9520.122569510153])
    box = iv.Box(9999.0, 10001.0, shape=(4,), A=A, b=b)
    x = torch.tensor([[9999.3056640625, 10000.1484375, 9999.0, 10000.4140625]])
    assert (A @ x[0].double().numpy() - b).max() > 4e-4
    h = box.hold(x)
    assert h.dtype == torch.float32
    assert (A @ h[0].double().numpy() - b <= 1e-9 * (1 + np.abs(b))).all()
    assert float((h - x).abs().max()) <= 9.8e-4


def test_hold_takes_an_empty_batch():
    box = iv.Box(0, 1, shape=(4,), A=[[1.0, 1.0, 0, 0]], b=[1.0])
    assert box.hold(torch.zeros(0, 4)).shape == (0, 4)


def test_rounding_keeps_linear_constraints():
    """Rounding (1.6, 0.9) to (2, 1) would break x0 + x1 <= 2.5: one feature rounds the other
    way instead."""
    b = iv.Box(0, 3, shape=(2,), A=[[1.0, 1.0]], b=[2.5], integer=[0, 1])
    x = torch.tensor([[1.6, 0.9], [1.4, 1.4], [0.2, 0.3]], dtype=torch.float64)
    r = b.project(x, round_integers=True)
    assert b.contains(r).all()
    assert torch.equal(r[2], torch.tensor([0.0, 0.0], dtype=torch.float64))
    assert (r[0] - x[0]).abs().max() < 1  # a neighbouring whole point, not anywhere


def test_sample_inside_and_seeded():
    b = iv.Box([-1, 0, 5], [1, 0.1, 6])
    s1 = b.sample(500, torch.Generator().manual_seed(3))
    s2 = b.sample(500, torch.Generator().manual_seed(3))
    assert torch.equal(s1, s2)
    assert b.contains(s1).all()
    assert float(s1[:, 0].min()) < -0.9 and float(s1[:, 0].max()) > 0.9


def test_result_roundtrip(tmp_path):
    r = iv.Result(
        x=np.arange(4.0).reshape(1, 2, 2),
        value=1.5,
        status="optimal",
        bound=1.5,
        gap=0.0,
        xs=np.zeros((3, 1, 2, 2)),
        values=np.array([1.5, 1.0, 0.5]),
        nfev=10,
        solver="exact",
        history={"step": [0, 1], "best": [1.0, 1.5]},
        timings={"total": 0.1},
        query={"target": "out:0", "bound_inf": math.inf},
        arrays={"images": np.ones((2, 3))},
    )
    r.save(tmp_path / "r")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["result.json", "result.npz"]
    q = iv.Result.load(tmp_path / "r")
    np.testing.assert_array_equal(q.x, r.x)
    np.testing.assert_array_equal(q.values, r.values)
    np.testing.assert_array_equal(q.arrays["images"], np.ones((2, 3)))
    assert (q.value, q.status, q.bound, q.gap, q.nfev, q.solver) == (
        1.5,
        "optimal",
        1.5,
        0.0,
        10,
        "exact",
    )
    assert q.history == r.history and q.query["bound_inf"] == math.inf
    with pytest.raises(iv.InversetError, match=r"holds no result\.json"):
        iv.Result.load(tmp_path)
    with pytest.raises(ValueError, match="unknown status"):
        iv.Result(x=None, value=None, status="great")


def test_a_box_file_that_is_not_text_is_a_clear_error(tmp_path):
    png = tmp_path / "photo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(iv.InversetError, match=r"box file .*photo.png is not a text CSV"):
        iv.Box.from_csv(png)


def test_a_box_too_large_for_memory_names_its_size():
    with pytest.raises(iv.InversetError, match=r"input shape \(99999999, 99999999\) has "):
        iv.Box(0, 1, shape=(99999999, 99999999))
    with pytest.raises(iv.InversetError, match="9,999,999,800,000,001 features, too many"):
        iv.Box(shape=(99999999, 99999999))


def test_aligned_moves_bounds_integers_and_constraint_columns_by_name():
    """A box whose names are in another order than the model's is reordered to the model's."""
    b = iv.Box([0, 10, 20], [1, 11, 21], names=["c", "a", "b"], integer=[0], A=[[1, 2, 3]], b=[99])
    a = b.aligned(["a", "b", "c"])
    np.testing.assert_array_equal(a.lower, [10, 20, 0])
    np.testing.assert_array_equal(a.upper, [11, 21, 1])
    assert a.integer == (2,) and a.names == ["a", "b", "c"]
    np.testing.assert_array_equal(a.A, [[2, 3, 1]])
    assert b.aligned(None) is b and iv.Box(0, 1).aligned(["a"]).names is None
    with pytest.raises(iv.InversetError, match=r"names 'x', which the model does not have; its "):
        iv.Box([0, 0], [1, 1], names=["a", "x"]).aligned(["a", "b"])
    with pytest.raises(iv.InversetError, match=r"names feature 'a' twice"):
        iv.Box([0, 0], [1, 1], names=["a", "a"]).aligned(["a", "b"])
    with pytest.raises(iv.InversetError, match=r"names 2 features but bounds 3"):
        iv.Box([0, 0, 0], [1, 1, 1], names=["a", "b"]).aligned(["a", "b", "c"])


def test_from_data_takes_a_dataframes_column_names():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"b": [1.0, 3.0], "a": [5.0, -1.0]})
    box = iv.Box.from_data(df)
    assert box.names == ["b", "a"]
    np.testing.assert_array_equal(box.aligned(["a", "b"]).lower, [-1, 1])
    assert iv.Box.from_data(df, names=["p", "q"]).names == ["p", "q"]


def test_box_file_header_of_another_width_is_named(tmp_path):
    f = tmp_path / "wide.csv"
    f.write_text("a,b,c\n1,2\n3,4\n")
    with pytest.raises(iv.InversetError, match="header names 3 columns but the rows hold 2"):
        iv.Box.from_csv(f)


@pytest.mark.parametrize(
    "text, names, message",
    [
        ("1,1,1,1\n1,1\n", None, r"row 2 has 2 values but row 1 has 4; rows are a_1"),
        ("1,1,x,1\n", None, r"row 1, column 3 holds 'x', not a number"),
        ("1;1;1;1\n", None, r"row 1 holds '1;1;1;1'; separate the values by commas"),
        ("a,b,c,b0\n1,1,1,1\n", None, r"has a header, but the features have no names"),
        ("a,z,b\n1,1,1\n", ["a", "b", "c"], r"names 'z', not among the features a, b, c"),
        ("a,b,b0\n1,1,1\n1,1\n", ["a", "b"], r"row 3 has 2 values but the header has 3"),
    ],
)
def test_constraints_file_errors_name_the_row_or_column(tmp_path, text, names, message):
    f = tmp_path / "A.csv"
    f.write_text(text)
    with pytest.raises(iv.InversetError, match=message) as exc:
        iv.domain.read_constraints(f, names)
    assert "usecols" not in str(exc.value) and "\n" not in str(exc.value)


def test_constraints_file_header_is_matched_to_the_feature_names(tmp_path):
    f = tmp_path / "A.csv"
    f.write_text("# x_c + 2 x_a <= 3\nc,a,b\n1,2,3\n")
    A, b = iv.domain.read_constraints(f, ["a", "b", "c"])
    np.testing.assert_array_equal(A, [[2, 0, 1]])
    np.testing.assert_array_equal(b, [3])
    f.write_text("1,2,3,4\n")
    A, b = iv.domain.read_constraints(f, ["a", "b", "c"])  # no header: columns in order
    np.testing.assert_array_equal(A, [[1, 2, 3]])


def test_a_directory_given_for_a_file_is_said_to_be_one(tmp_path):
    """--box-file, --constraints, --labels and weights naming a directory: "is a directory,
    not a file" (they said "does not exist"); a missing file still does not exist."""
    from inverset.domain import read_constraints
    from inverset.loaders import load_model
    from inverset.target import read_labels

    d = tmp_path / "adir"
    d.mkdir()
    calls = {
        "box file": lambda p: iv.Box.from_csv(p),
        "constraints file": lambda p: read_constraints(p, ["a", "b"]),
        "labels file": lambda p: read_labels(str(p)),
        "weights file": lambda p: load_model("inverset.zoo:DigitsCNN", weights=p),
        "model file": lambda p: load_model(p),
    }
    for kind, call in calls.items():
        with pytest.raises(iv.InversetError, match=rf"^{kind} {d} is a directory, not a file"):
            call(d)
        with pytest.raises(iv.InversetError, match=rf"^{kind} {d}x does not exist"):
            call(tmp_path / "adirx")
