"""The MJCF scene of the language-conditioned reach task.

World frame: z up, the table top is the plane z = 0. The workspace, where blocks
and the end effector move, is ``|x|, |y| <= WORKSPACE_HALF``. A fixed camera looks
straight down at it, so a table position maps linearly to a pixel (image rows
run along -y, columns along +x).

* Table: a light grey top, larger than the workspace, so the whole image is table.
* Blocks: one cube per colour (red, green, blue by default), mocap bodies (placing
  them needs no physics step).
* End effector: a white disc with a dark centre, a mocap body moved by Cartesian
  deltas.
* Rendering: one light straight down, no shadows, reflections or specular
  highlights; the offscreen buffer is the size of the observation.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

WORKSPACE_HALF = 0.25
BLOCK_HALF = 0.035
EFFECTOR_RADIUS = 0.025
CAMERA_HEIGHT = 0.8

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.1, 0.1),
    "green": (0.1, 0.7, 0.15),
    "blue": (0.1, 0.25, 0.9),
    "yellow": (0.95, 0.85, 0.1),
}


def sample_apart(
    rng: np.random.Generator, count: int, min_separation: float, owner: str
) -> np.ndarray:
    """(count, 2) x-y positions, uniform where a block fits in the workspace
    (``|x|, |y| <= WORKSPACE_HALF - BLOCK_HALF``), every pair at least `min_separation`
    apart: the first of up to 1000 draws of all `count` at once that is.

    Raises:
      RuntimeError: naming `owner`, when no draw was spread enough.
    """
    limit = WORKSPACE_HALF - BLOCK_HALF
    for _ in range(1000):
        points = rng.uniform(-limit, limit, size=(count, 2))
        gaps = np.linalg.norm(points[:, None] - points[None], axis=-1)
        if gaps[np.triu_indices(count, 1)].min() >= min_separation:
            return points
    raise RuntimeError(
        f"{owner}: could not place {count} objects {min_separation} apart in 1000 draws."
    )


def build_scene_xml(
    colours: Mapping[str, tuple[float, float, float]], render_size: int = 64, fovy: float = 40.0
) -> str:
    """The scene as an MJCF string: one block body ``block_<colour>`` per colour and
    the effector body ``effector``, all mocap.

    Args:
      colours: colour name -> RGB in [0, 1], one block each.
      render_size: side of the square offscreen buffer (= the observation size).
      fovy: the camera's vertical field of view in degrees (40 at height 0.8 sees
        |x|, |y| <= 0.29, the workspace and a margin).
    """
    blocks = "\n".join(
        f'    <body name="block_{name}" mocap="true" pos="0 0 {BLOCK_HALF}">\n'
        f'      <geom type="box" size="{BLOCK_HALF} {BLOCK_HALF} {BLOCK_HALF}" '
        f'rgba="{r} {g} {b} 1" contype="0" conaffinity="0"/>\n'
        f"    </body>"
        for name, (r, g, b) in colours.items()
    )
    return f"""<mujoco model="lang_reach">
  <compiler angle="radian"/>
  <statistic center="0 0 0" extent="1"/>
  <visual>
    <global offwidth="{render_size}" offheight="{render_size}"/>
    <quality shadowsize="0" offsamples="0"/>
    <map znear="0.05" zfar="20"/>
    <headlight ambient="0.5 0.5 0.5" diffuse="0.4 0.4 0.4" specular="0 0 0"/>
  </visual>
  <worldbody>
    <light name="top" directional="true" pos="0 0 3" dir="0 0 -1" castshadow="false"
           diffuse="0.5 0.5 0.5" specular="0 0 0"/>
    <camera name="top" pos="0 0 {CAMERA_HEIGHT}" xyaxes="1 0 0 0 1 0" fovy="{fovy}"/>
    <geom name="table" type="box" size="0.6 0.6 0.02" pos="0 0 -0.02"
          rgba="0.4 0.38 0.36 1" contype="0" conaffinity="0"/>
{blocks}
    <body name="effector" mocap="true" pos="0 0 0.08">
      <geom type="cylinder" size="{EFFECTOR_RADIUS} 0.01" rgba="1 1 1 1"
            contype="0" conaffinity="0"/>
      <geom type="cylinder" size="{EFFECTOR_RADIUS / 2.5:.4f} 0.011" rgba="0.1 0.1 0.1 1"
            contype="0" conaffinity="0"/>
    </body>
  </worldbody>
</mujoco>
"""
