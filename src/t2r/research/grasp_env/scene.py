"""The MJCF scene of the grasping task: a bin, object slots and a parallel gripper.

World frame: z up, the bin's floor is the plane z = 0 and its inside spans
``|x|, |y| <= BIN_HALF``; walls ``BIN_WALL_HEIGHT`` high surround it.

* Objects: ``num_objects`` free bodies ``object_<i>``. Each holds three geoms, a
  box, a cylinder and a capsule (``object_<i>_box`` ...); every episode the env
  enables one of them (size, colour, mass and inertia set in place, see
  `t2r.research.grasp_env.grasp_env`) and hides the other two in geom group
  `HIDDEN_GROUP` with collisions off. One compiled model and one renderer serve
  every episode: nothing is recompiled. A capsule lies on its side (its axis is
  the body's x axis).
* Gripper: a palm body ``palm`` with four joints (slide x, slide y, slide z,
  hinge yaw) driven by position actuators with bounded forces, and two fingers
  (``finger_left``, ``finger_right``) on slide joints along the palm's y axis,
  each with a force-limited position actuator: a grasp holds only by the
  fingers' squeeze and friction. The palm and fingers are gravity compensated
  (as a robot arm's controller would), so the servos only move them.
* Camera ``shoulder``: fixed behind and above the bin, looking down at it at
  about 50 degrees, over the robot's shoulder as in QT-Opt; it sees the gripper
  and the whole bin.
* Rendering: one light, no shadows, reflections or specular highlights; the
  offscreen buffer is the size of the observation.
"""

from __future__ import annotations

import numpy as np

BIN_HALF = 0.15
BIN_WALL_HEIGHT = 0.06
BIN_WALL_THICKNESS = 0.01

# Palm and fingers (metres, palm frame). The fingers' inner faces sit at
# y = +-q where q is the finger joint's position in [0, FINGER_OPEN].
FINGER_OPEN = 0.05
FINGER_PAD_HALF = (0.012, 0.006, 0.03)  # x, y (thickness), z (height)
FINGER_DROP = 0.045  # pad centre below the palm origin
# Finger bottom below the palm origin: the env reports heights of this point.
FINGER_BOTTOM = FINGER_DROP + FINGER_PAD_HALF[2]
PALM_HALF = (0.02, 0.07, 0.012)

# The palm's joint limits: the finger bottom stays 4 mm above the floor at the
# lowest, and the palm stays over the bin.
PALM_XY_LIMIT = 0.14
PALM_Z_MIN = FINGER_BOTTOM + 0.004
PALM_Z_MAX = 0.40

# The over-the-shoulder camera: behind the bin (-x), a little to the side,
# looking at the bin's centre.
CAMERA_POS = (-0.38, -0.14, 0.46)
CAMERA_TARGET = (0.0, 0.0, 0.02)
CAMERA_FOVY = 40.0

SHAPES = ("box", "cylinder", "capsule")
HIDDEN_GROUP = 3

TIMESTEP = 0.004

_GRIPPER_RGBA = "0.25 0.27 0.3 1"
_PAD_RGBA = "0.12 0.12 0.12 1"
_BIN_RGBA = "0.55 0.5 0.42 1"
_FLOOR_RGBA = "0.35 0.37 0.4 1"


def _vec(values: tuple[float, ...]) -> str:
    return " ".join(f"{v:.5f}" for v in values)


def _camera_xyaxes() -> str:
    """MuJoCo's camera frame (x right, y up, looking along -z) aimed at CAMERA_TARGET."""
    forward = np.subtract(CAMERA_TARGET, CAMERA_POS)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, (0.0, 0.0, 1.0))
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return _vec((*right, *up))


def _object_slot(index: int) -> str:
    # Placeholder sizes, the largest of any object set; the env writes the real
    # ones every episode. The capsule geom is turned so that its axis is the
    # body's x axis (it lies on its side).
    name = f"object_{index}"
    hidden = f'group="{HIDDEN_GROUP}" contype="0" conaffinity="0"'
    friction = 'friction="1 0.005 0.0001"'
    return (
        f'    <body name="{name}" pos="{0.05 * index:.3f} 0 0.1">\n'
        f'      <freejoint name="{name}_joint"/>\n'
        f'      <geom name="{name}_box" type="box" size="0.045 0.045 0.035" {hidden} {friction}/>\n'
        f'      <geom name="{name}_cylinder" type="cylinder" size="0.04 0.035" {hidden} '
        f"{friction}/>\n"
        f'      <geom name="{name}_capsule" type="capsule" size="0.025 0.04" '
        f'quat="0.70710678 0 0.70710678 0" {hidden} {friction}/>\n'
        f"    </body>"
    )


def build_scene_xml(num_objects: int = 3, image_size: int = 64) -> str:
    """The scene as an MJCF string with `num_objects` object slots.

    Args:
      num_objects: object slots (bodies ``object_0`` ...).
      image_size: side of the square offscreen buffer (= the observation size).
    """
    h, w, t = BIN_HALF, BIN_WALL_HEIGHT / 2, BIN_WALL_THICKNESS / 2
    walls = "\n".join(
        f'    <geom name="wall_{name}" type="box" size="{sx} {sy} {w}" pos="{px} {py} {w}" '
        f'material="bin"/>'
        for name, sx, sy, px, py in (
            ("px", t, h + 2 * t, h + t, 0.0),
            ("nx", t, h + 2 * t, -h - t, 0.0),
            ("py", h, t, 0.0, h + t),
            ("ny", h, t, 0.0, -h - t),
        )
    )
    slots = "\n".join(_object_slot(i) for i in range(num_objects))
    px, py, pz = PALM_HALF
    fx, fy, fz = FINGER_PAD_HALF
    pad = (
        f'type="box" size="{fx} {fy} {fz}" pos="0 0 {-FINGER_DROP}" rgba="{_PAD_RGBA}" '
        'friction="1.5 0.02 0.001" condim="4" solimp="0.95 0.99 0.001" solref="0.004 1"'
    )
    return f"""<mujoco model="grasp_bin">
  <compiler angle="radian" autolimits="true"/>
  <!-- integrator="implicit", not "implicitfast": the latter leaves the gyroscopic
       term explicit, and a thin capsule knocked spinning (about 100 rad/s, so
       omega * timestep = 0.4) spun up about 8 % per step to 1e5 rad/s and diverged
       (BADQACC) under full-speed moves down into objects. docs/grasp_env.md. -->
  <option timestep="{TIMESTEP}" integrator="implicit" impratio="10" cone="elliptic">
    <!-- The object slots' geoms change size at reset: no compiled bounding-volume
         tree (a few geoms per body need none). -->
    <flag midphase="disable"/>
  </option>
  <statistic center="0 0 0.1" extent="0.6"/>
  <visual>
    <global offwidth="{image_size}" offheight="{image_size}"/>
    <quality shadowsize="0" offsamples="0" numslices="16" numstacks="8"/>
    <headlight ambient="0.5 0.5 0.5" diffuse="0.35 0.35 0.35" specular="0 0 0"/>
    <map znear="0.02" zfar="10"/>
  </visual>
  <asset>
    <material name="bin" rgba="{_BIN_RGBA}" specular="0" reflectance="0"/>
    <material name="floor" rgba="{_FLOOR_RGBA}" specular="0" reflectance="0"/>
  </asset>
  <default>
    <geom solref="0.005 1"/>
  </default>
  <worldbody>
    <light name="top" directional="true" pos="0 0 2" dir="0.2 0.3 -1" castshadow="false"
           diffuse="0.5 0.5 0.5" specular="0 0 0"/>
    <camera name="shoulder" pos="{_vec(CAMERA_POS)}" xyaxes="{_camera_xyaxes()}"
            fovy="{CAMERA_FOVY}"/>
    <geom name="floor" type="plane" size="2 2 0.1" material="floor" friction="0.8 0.005 0.0001"/>
{walls}
{slots}
    <body name="palm" pos="0 0 0" gravcomp="1">
      <joint name="palm_x" type="slide" axis="1 0 0" range="{-PALM_XY_LIMIT} {PALM_XY_LIMIT}"
             damping="5"/>
      <joint name="palm_y" type="slide" axis="0 1 0" range="{-PALM_XY_LIMIT} {PALM_XY_LIMIT}"
             damping="5"/>
      <joint name="palm_z" type="slide" axis="0 0 1" range="{PALM_Z_MIN} {PALM_Z_MAX}"
             damping="5"/>
      <joint name="palm_yaw" type="hinge" axis="0 0 1" range="-3.1416 3.1416" damping="0.05"/>
      <geom name="palm" type="box" size="{px} {py} {pz}" rgba="{_GRIPPER_RGBA}" mass="0.5"/>
      <geom name="wrist" type="cylinder" size="0.015 0.1" pos="0 0 0.11" rgba="{_GRIPPER_RGBA}"
            mass="0.1" contype="0" conaffinity="0"/>
      <body name="finger_left" pos="0 {fy} 0" gravcomp="1">
        <joint name="finger_left" type="slide" axis="0 1 0" range="0 {FINGER_OPEN}" damping="2"/>
        <geom name="finger_left" {pad} mass="0.05"/>
      </body>
      <body name="finger_right" pos="0 {-fy} 0" gravcomp="1">
        <joint name="finger_right" type="slide" axis="0 -1 0" range="0 {FINGER_OPEN}"
               damping="2"/>
        <geom name="finger_right" {pad} mass="0.05"/>
      </body>
    </body>
  </worldbody>
  <contact>
    <exclude body1="finger_left" body2="finger_right"/>
  </contact>
  <actuator>
    <position name="palm_x" joint="palm_x" kp="10000" kv="250" forcerange="-100 100"/>
    <position name="palm_y" joint="palm_y" kp="10000" kv="250" forcerange="-100 100"/>
    <position name="palm_z" joint="palm_z" kp="10000" kv="250" forcerange="-100 100"/>
    <position name="palm_yaw" joint="palm_yaw" kp="50" kv="1" forcerange="-5 5"/>
    <position name="finger_left" joint="finger_left" kp="300" kv="10" forcerange="-12 12"/>
    <position name="finger_right" joint="finger_right" kp="300" kv="10" forcerange="-12 12"/>
  </actuator>
</mujoco>
"""
