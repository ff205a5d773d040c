"""Maze layouts, cells and the WAD text: pure Python, no vizdoom needed."""

from __future__ import annotations

import numpy as np
import pytest

from rl2bench.errors import UserError
from rl2bench.registry import get_family
from rl2bench.tasks.maze import layout as L
from rl2bench.tasks.maze.engine import ENTER_STRIDES, GEOMETRY, downscale, shortest_actions
from rl2bench.tasks.maze.wad import textmap, write_wad


def corridor(n: int = 3) -> dict[str, np.ndarray]:
    """A 1-row corridor inside an n x n grid: start (0, 0) facing east, target (0, n-1)."""
    lay = {"open_e": np.zeros((1, n, n), bool), "open_n": np.zeros((1, n, n), bool),
           "start": np.array([[0, 0]]), "heading": np.array([0]), "target": np.array([[0, n - 1]])}
    lay["open_e"][0, 0, : n - 1] = True
    return lay


@pytest.mark.parametrize("size", [5, 9])
def test_mazes_are_perfect_and_connected(size):
    lay = L.generate(size, np.random.default_rng(1), 50)
    dist = L.distances(lay, lay["start"])
    assert (dist >= 0).all()  # every cell reachable
    edges = lay["open_e"].sum(axis=(1, 2)) + lay["open_n"].sum(axis=(1, 2))
    assert (edges == size * size - 1).all()  # connected with n-1 edges: a spanning tree
    assert not lay["open_e"][:, :, -1].any() and not lay["open_n"][:, -1, :].any()  # no exit from the grid
    assert (lay["start"] != lay["target"]).any(axis=1).all()


@pytest.mark.heavy
def test_generation_reproducible_from_seed():
    a = get_family("maze").sample_instances(get_family("maze").parse_cell("small"), 7, "eval", 20)
    b = get_family("maze").sample_instances(get_family("maze").parse_cell("small-e2"), 7, "eval", 20)
    c = get_family("maze").sample_instances(get_family("maze").parse_cell("small"), 8, "eval", 20)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])  # episodes do not change the mazes
    assert not all(np.array_equal(a[k], c[k]) for k in a)


@pytest.mark.heavy
def test_train_and_test_configurations_disjoint():
    train = L.training_set(0, "small", 5)
    assert len(train["target"]) == L.TRAIN_POOL
    banned = set(L.config_keys(train))
    for phase in ("eval", "tune"):
        held = L.held_out_set(0, phase, "small", 5, 500)
        assert len(held["target"]) == 500
        assert not banned & set(L.config_keys(held))


def test_collisions_with_training_are_rejected(monkeypatch):
    """Force a collision: if the eval stream produced the training pool itself, none would survive the
    rejection, so the first held-out configurations must differ from the pool's."""
    train = L.training_set(0, "g3", 3, 50)
    real = L.generate
    calls = []

    def fake(size, rng, count):
        calls.append(count)
        if count == 10 and calls.count(10) == 1:  # the eval stream's first draw: training configurations
            return L.take(train, slice(0, count))
        return real(size, rng, count)

    monkeypatch.setattr(L, "generate", fake)
    held = L.held_out_set(0, "eval", "g3", 3, 10, pool=50)
    assert calls[:3] == [50, 10, 10]  # pool, a fully rejected draw, a fresh draw of all 10 (3x3: more may collide)
    assert len(held["target"]) == 10
    assert not set(L.config_keys(held)) & set(L.config_keys(train))


def test_bfs_on_hand_made_maze():
    lay = corridor(3)
    assert L.distances(lay, lay["start"])[0, 0].tolist() == [0, 1, 2]
    assert L.distances(lay, lay["start"])[0, 1, 0] == -1  # walled off
    assert L.shortest_path(lay, 0) == [0, 0]
    assert L.quarter_turns(0, [0, 0]) == 0
    assert L.quarter_turns(2, [0, 1, 0, 3]) == 2 + 1 + 1 + 1
    # Two cells east from the centre: 4 strides, then ENTER_STRIDES into the target.
    assert shortest_actions(2, 0) == 4 + ENTER_STRIDES == 7


def test_cells_parse_and_name():
    fam = get_family("maze")
    assert fam.parse_cell("small").size == 5 and fam.spec(fam.parse_cell("small")).horizon == 250
    large = fam.parse_cell("large")
    assert (large.size, large.episodes, fam.spec(large).horizon) == (9, 5, 1000)
    assert fam.spec(large).obs_shape == (3, 30, 40)
    assert fam.parse_cell("small-e2").name == "small-e2"
    assert fam.parse_cell("g7-e3-t300").name == "g7-e3-t300"
    assert fam.parse_cell("g5").name == "small"
    coarse = fam.parse_cell("small-e2-turn90")
    assert (coarse.turn, coarse.name) == (90.0, "small-e2-turn90") and fam.parse_cell("small-turn22.5").name == "small"
    assert fam.parse_cell("large-turn45").turn == 45.0 and fam.parse_cell("large").turn == 22.5
    for bad in ("huge", "small-x2", "g1", "small-e2-e3", "small-e0", "small-turn30", "small-turn90-turn45"):
        with pytest.raises(UserError):
            fam.parse_cell(bad)


def test_textmap_geometry():
    lay = L.take(corridor(3), 0)
    text = textmap(lay, GEOMETRY)
    x, y = GEOMETRY.centre(0, 0)
    assert f"x = {float(x)!r}; y = {float(y)!r}; angle = 0; type = 1;" in text
    assert text.count("twosided = true") == 1  # the target cell opens to the corridor on one side only
    assert 'texturefloor = "RL2RED"' in text
    row, col, inside = GEOMETRY.cell_of(*GEOMETRY.centre(np.array([2]), np.array([1])))
    assert (row[0], col[0], inside[0]) == (2, 1, True)
    _, _, inside = GEOMETRY.cell_of(np.array([GEOMETRY.wall + GEOMETRY.cell + 1.0]), np.array([y]))
    assert not inside[0]  # in the passage between two cells


def test_wad_directory(tmp_path):
    lay = L.generate(5, np.random.default_rng(0), 3)
    names = write_wad(str(tmp_path / "m.wad"), lay, GEOMETRY)
    data = (tmp_path / "m.wad").read_bytes()
    assert data[:4] == b"PWAD" and names == ["MAP01", "MAP02", "MAP03"]
    n, offset = np.frombuffer(data[4:12], dtype="<i4")
    lumps = [data[offset + 16 * i + 8: offset + 16 * i + 16].rstrip(b"\0").decode() for i in range(n)]
    assert lumps[:3] == ["MAP01", "TEXTMAP", "ENDMAP"] and lumps[-3:] == ["F_START", "RL2RED", "F_END"]


def test_downscale_is_a_4x4_box_average():
    screen = np.zeros((3, 120, 160), dtype=np.uint8)
    screen[0, :4, :4] = 255  # one full red box
    screen[1, 4:8, 0:4] = [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [255, 255, 255, 100]]  # (3*255+100)/16
    screen[2, 116:, 156:] = 7
    out = downscale(screen)
    assert out.shape == (3, 30, 40) and out.dtype == np.uint8
    assert out[0, 0, 0] == 255 and out[0].sum() == 255
    assert out[1, 1, 0] == (3 * 255 + 100) // 16 and out[1].sum() == out[1, 1, 0]
    assert out[2, 29, 39] == 7 and out[2].sum() == 7
