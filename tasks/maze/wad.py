"""Write maze layouts as UDMF maps into one WAD, in pure Python (``struct``); the engine builds the
nodes at load time, so no external node builder is needed.

Each maze is a grid of (2N+1) x (2N+1) blocks alternating wall (``wall`` map units thick) and cell
(``cell`` units wide): odd blocks are cells, the blocks between two cells are open where the layout has
a passage. Walls are one-sided linedefs on every edge between an open and a solid block. The target
cell is a sector of its own with a solid red floor and ceiling (a custom flat) and red walls.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import SupportsFloat

import numpy as np
import numpy.typing as npt

from .layout import open_dirs, take

RED_FLAT = "RL2RED"
RED_INDEX = 176  # pure red in the Doom palette
WALL_TEXTURE = "STONE2"
TARGET_WALL_TEXTURE = "REDWALL"


@dataclass(frozen=True)
class Geometry:
    """Map units of the block grid; ``pitch`` is the distance between neighbouring cell centres."""

    cell: float
    wall: float
    height: float = 128.0

    @property
    def pitch(self) -> float:
        return self.cell + self.wall

    def centre(self, row: npt.ArrayLike, col: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Map (x, y) of cell centres (arrays, or 0-d arrays for one cell)."""
        offset = self.wall + self.cell / 2
        return offset + np.asarray(col) * self.pitch, offset + np.asarray(row) * self.pitch

    def cell_of(self, x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, col, inside): the cell whose open square contains (x, y), and whether it does (a point
        in a passage between two cells is in neither)."""
        fx = (np.asarray(x) - self.wall) / self.pitch
        fy = (np.asarray(y) - self.wall) / self.pitch
        col, row = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
        inside = ((fx - col) * self.pitch < self.cell) & ((fy - row) * self.pitch < self.cell)
        return row, col, inside


def _fmt(v: SupportsFloat) -> str:
    return repr(float(v))


def textmap(layout: dict[str, np.ndarray], geometry: Geometry) -> str:
    """The UDMF TEXTMAP of one layout (arrays without the instance axis)."""
    one = {k: v[None] for k, v in layout.items()}
    dirs = open_dirs(one)[0]
    size = dirs.shape[0]
    nb = 2 * size + 1
    open_block = np.zeros((nb, nb), dtype=bool)  # [y block, x block]
    open_block[1::2, 1::2] = True
    open_block[1::2, 2:-1:2] = dirs[:, :-1, 0]
    open_block[2:-1:2, 1::2] = dirs[:-1, :, 1]
    edges = np.concatenate([[0.0], np.cumsum([geometry.wall if j % 2 == 0 else geometry.cell for j in range(nb)])])
    tr, tc = (int(v) for v in layout["target"])
    target_block = (2 * tr + 1, 2 * tc + 1)

    vertices: dict[tuple[float, float], int] = {}

    def vertex(x: float, y: float) -> int:
        return vertices.setdefault((x, y), len(vertices))

    lines, sides = [], []
    for by in range(nb):
        for bx in range(nb):
            if not open_block[by, bx]:
                continue
            sector = 1 if (by, bx) == target_block else 0
            x0, x1, y0, y1 = edges[bx], edges[bx + 1], edges[by], edges[by + 1]
            # Clockwise, so the block's interior is on each line's right (front) side.
            for (ax, ay), (cx, cy), (ny, nx) in (
                ((x0, y0), (x0, y1), (by, bx - 1)),
                ((x0, y1), (x1, y1), (by + 1, bx)),
                ((x1, y1), (x1, y0), (by, bx + 1)),
                ((x1, y0), (x0, y0), (by - 1, bx)),
            ):
                neighbour_open = 0 <= ny < nb and 0 <= nx < nb and open_block[ny, nx]
                if not neighbour_open:
                    texture = TARGET_WALL_TEXTURE if sector == 1 else WALL_TEXTURE
                    sides.append(f'sidedef {{ sector = {sector}; texturemiddle = "{texture}"; }}')
                    lines.append(f"linedef {{ v1 = {vertex(ax, ay)}; v2 = {vertex(cx, cy)}; "
                                 f"sidefront = {len(sides) - 1}; blocking = true; }}")
                elif sector == 1:  # the target's open sides: two-sided lines into the corridor
                    sides.append("sidedef { sector = 1; }")
                    sides.append("sidedef { sector = 0; }")
                    lines.append(f"linedef {{ v1 = {vertex(ax, ay)}; v2 = {vertex(cx, cy)}; "
                                 f"sidefront = {len(sides) - 2}; sideback = {len(sides) - 1}; twosided = true; }}")

    sx, sy = geometry.centre(layout["start"][0], layout["start"][1])
    h = geometry.height
    out = ['namespace = "zdoom";',
           f"thing {{ x = {_fmt(sx)}; y = {_fmt(sy)}; angle = {90 * int(layout['heading'])}; type = 1; "
           "skill1 = true; skill2 = true; skill3 = true; skill4 = true; skill5 = true; "
           "single = true; coop = true; dm = true; }"]
    out += [f"vertex {{ x = {_fmt(x)}; y = {_fmt(y)}; }}" for (x, y) in vertices]
    out += lines + sides
    out.append(f'sector {{ heightfloor = 0; heightceiling = {int(h)}; texturefloor = "FLOOR0_1"; '
               'textureceiling = "CEIL1_1"; lightlevel = 224; }')
    out.append(f'sector {{ heightfloor = 0; heightceiling = {int(h)}; texturefloor = "{RED_FLAT}"; '
               f'textureceiling = "{RED_FLAT}"; lightlevel = 224; }}')
    return "\n".join(out) + "\n"


def map_name(k: int) -> str:
    """Lump name of the k-th map in a WAD (MAP01..MAP99, then M0100...)."""
    return f"MAP{k + 1:02d}" if k < 99 else f"M{k + 1:04d}"


def write_wad(path: str, layouts: dict[str, np.ndarray], geometry: Geometry) -> list[str]:
    """One PWAD holding every layout of the batch as its own map, plus the red flat; returns map names."""
    count = len(layouts["target"])
    names = [map_name(k) for k in range(count)]
    lumps: list[tuple[str, bytes]] = []
    for k, name in enumerate(names):
        one = take(layouts, k)
        lumps += [(name, b""), ("TEXTMAP", textmap(one, geometry).encode()), ("ENDMAP", b"")]
    lumps += [("F_START", b""), (RED_FLAT, bytes([RED_INDEX]) * 4096), ("F_END", b"")]
    offset = 12
    directory = b""
    data = b""
    for name, payload in lumps:
        directory += struct.pack("<ii8s", offset + len(data), len(payload), name.encode())
        data += payload
    with open(path, "wb") as fh:
        fh.write(struct.pack("<4sii", b"PWAD", len(lumps), offset + len(data)))
        fh.write(data)
        fh.write(directory)
    return names
