"""The MJCF scene of the pose toy task: a table with an orientation cue and a duck.

World frame: z up, the table top is the plane z = 0 and spans
``|x| <= TABLE_HALF_X``, ``|y| <= TABLE_HALF_Y``. The camera looks at the origin.

* Table: a 1.8 x 1.2 wooden top on four legs, standing on a grey floor.
* Orientation cue: a red band along the +x edge and a blue band along the +y
  edge of the top. The bare table is symmetric under a half turn, so with a
  camera yaw uniform over the full circle the images at yaw and yaw + 180 deg
  of an object at (x, y) and (-x, -y) would be identical and the position
  could not be recovered from pixels. The bands make every yaw look different.
* Duck: a yellow body, a head and an orange beak on its front (+x in the duck's
  frame), a mocap body so that moving it needs no physics step. Its origin,
  the centre of the body on the table top, is the position the task asks for.
* Rendering: one light straight down (the scene stays symmetric without the
  cue), no shadows, no reflections, no specular highlights; the offscreen
  buffer is the size of the observation.
"""

from __future__ import annotations

TABLE_HALF_X = 0.9
TABLE_HALF_Y = 0.6
TABLE_HEIGHT = 0.65
CUE_WIDTH = 0.1

_TABLE_RGBA = "0.78 0.62 0.44 1"
_CUE_X_RGBA = "0.85 0.08 0.08 1"
_CUE_Y_RGBA = "0.1 0.25 0.9 1"


def build_scene_xml(
    render_size: int = 64, fovy: float = 35.0, orientation_cue: bool = True, msaa: int = 0
) -> str:
    """The scene as an MJCF string.

    Args:
      render_size: side of the square offscreen buffer (= the observation size).
      fovy: vertical field of view of the free camera, degrees.
      orientation_cue: add the red (+x) and blue (+y) edge bands. Without them
        the scene is symmetric under a half turn (used by the tests).
      msaa: offscreen multisampling samples (0: off). Anti-aliasing makes
        sub-pixel moves of the duck change the image smoothly, but 4 samples
        make software rendering about 4x slower.
    """
    hx, hy, height = TABLE_HALF_X, TABLE_HALF_Y, TABLE_HEIGHT
    leg = 0.04
    legs = "\n".join(
        f'      <geom type="box" size="{leg} {leg} {height / 2 - 0.025:.4f}" '
        f'pos="{sx * (hx - 0.1):.3f} {sy * (hy - 0.1):.3f} {-(height + 0.05) / 2:.4f}" '
        f'material="wood"/>'
        for sx in (-1, 1)
        for sy in (-1, 1)
    )
    cue = ""
    if orientation_cue:
        # The bands stand 3 mm proud of the top and its outer faces, so that no
        # face coincides with the table's (no z-fighting).
        w, e = CUE_WIDTH / 2, 0.003
        half_z, z = 0.025 + e / 2, -0.025 + e / 2
        cue = (
            f'      <geom name="cue_x" type="box" size="{w + e / 2} {hy + e} {half_z}" '
            f'pos="{hx - w + e / 2} 0 {z}" material="cue_x"/>\n'
            f'      <geom name="cue_y" type="box" size="{hx - w + e / 2} {w + e / 2} {half_z}" '
            f'pos="{-w - e / 2} {hy - w + e / 2} {z}" material="cue_y"/>'
        )
    return f"""<mujoco model="pose_toy">
  <compiler angle="radian"/>
  <statistic center="0 0 0" extent="2"/>
  <visual>
    <global offwidth="{render_size}" offheight="{render_size}" fovy="{fovy}"/>
    <quality shadowsize="0" offsamples="{msaa}" numslices="12" numstacks="8"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.4 0.4 0.4" specular="0 0 0"/>
    <map znear="0.05" zfar="40"/>
    <rgba haze="0.6 0.65 0.7 1"/>
  </visual>
  <asset>
    <material name="floor" rgba="0.45 0.48 0.52 1" specular="0" reflectance="0"/>
    <material name="wood" rgba="{_TABLE_RGBA}" specular="0" reflectance="0"/>
    <material name="cue_x" rgba="{_CUE_X_RGBA}" specular="0" reflectance="0"/>
    <material name="cue_y" rgba="{_CUE_Y_RGBA}" specular="0" reflectance="0"/>
    <material name="duck" rgba="1 0.85 0.1 1" specular="0" reflectance="0"/>
    <material name="beak" rgba="1 0.4 0 1" specular="0" reflectance="0"/>
    <material name="eye" rgba="0.05 0.05 0.05 1" specular="0" reflectance="0"/>
  </asset>
  <worldbody>
    <light name="top" directional="true" pos="0 0 5" dir="0 0 -1" castshadow="false"
           diffuse="0.7 0.7 0.7" specular="0 0 0"/>
    <geom name="floor" type="plane" size="60 60 10" pos="0 0 {-height}" material="floor"/>
    <body name="table">
      <geom name="table_top" type="box" size="{hx} {hy} 0.025" pos="0 0 -0.025" material="wood"/>
{cue}
{legs}
    </body>
    <body name="duck" mocap="true" pos="0 0 0">
      <geom name="duck_body" type="ellipsoid" size="0.09 0.06 0.045" pos="0 0 0.045"
            material="duck" contype="0" conaffinity="0"/>
      <geom name="duck_tail" type="ellipsoid" size="0.035 0.03 0.02" pos="-0.085 0 0.07"
            euler="0 -0.5 0" material="duck" contype="0" conaffinity="0"/>
      <geom name="duck_head" type="sphere" size="0.042" pos="0.07 0 0.11"
            material="duck" contype="0" conaffinity="0"/>
      <geom name="duck_beak" type="ellipsoid" size="0.04 0.022 0.012" pos="0.12 0 0.1"
            material="beak" contype="0" conaffinity="0"/>
      <geom name="duck_eye_l" type="sphere" size="0.009" pos="0.1 0.025 0.125"
            material="eye" contype="0" conaffinity="0"/>
      <geom name="duck_eye_r" type="sphere" size="0.009" pos="0.1 -0.025 0.125"
            material="eye" contype="0" conaffinity="0"/>
    </body>
  </worldbody>
</mujoco>
"""
