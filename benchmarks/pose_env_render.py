"""PoseToyEnv render rate: frames/s of the MuJoCo pose_env on this machine's CPU.

Each row runs `--frames` frames in one process and one env (one renderer):

* reset (new pose) + render: what a collector pays per episode within a task.
* reset_task + reset + render: a new camera and drift for every frame.
* step: scoring an action (the image is cached, nothing is rendered).
* msaa=4: the same as the first row with 4x multisampling (off by default).
* JPEG encode: `t2r.data.encode_image` of the 64x64 observation, which a
  collector pays on top of rendering to write T2R records.

Run: ``.venv/bin/python benchmarks/pose_env_render.py [--frames 2000] [--render_size 64]``
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from collections.abc import Callable

from t2r.research.pose_env.pose_env import PoseToyEnv  # sets MUJOCO_GL before mujoco loads


def _rate(fn: Callable[[], object], frames: int) -> float:
    for _ in range(min(50, frames)):
        fn()
    start = time.perf_counter()
    for _ in range(frames):
        fn()
    return frames / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--render_size", type=int, default=64)
    args = parser.parse_args()

    from t2r.data import encode_image

    env = PoseToyEnv(seed=0, render_size=args.render_size)
    action = env.action_space.sample()

    def new_task() -> object:
        env.reset_task()
        return env.reset()

    rows = [
        ("reset (new pose) + render", _rate(env.reset, args.frames)),
        ("reset_task + reset + render", _rate(new_task, args.frames)),
        ("step (no render)", _rate(lambda: env.step(action), args.frames)),
    ]
    env.close()

    # The same scene with 4x multisampling (the scene's msaa argument).
    import mujoco

    from t2r.research.pose_env.scene import build_scene_xml

    model = mujoco.MjModel.from_xml_string(build_scene_xml(args.render_size, msaa=4))
    data = mujoco.MjData(model)
    renderer = mujoco.Renderer(model, args.render_size, args.render_size)
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
    camera = mujoco.MjvCamera()
    camera.distance, camera.elevation, camera.azimuth = 3.0, -30.0, 40.0
    mujoco.mj_kinematics(model, data)

    def render_msaa() -> object:
        renderer.update_scene(data, camera=camera)
        return renderer.render()

    rows.append(("render, msaa=4", _rate(render_msaa, args.frames)))
    image = render_msaa()
    renderer.close()
    rows.append(("JPEG encode (q95)", _rate(lambda: encode_image(image), args.frames)))

    size = f"{args.render_size}x{args.render_size}"
    print(
        f"PoseToyEnv {size}, MUJOCO_GL={os.environ.get('MUJOCO_GL')}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{datetime.date.today().isoformat()}"
    )
    print(f"| {'operation':<30} | {'frames/s':>9} | {'ms/frame':>8} |")
    print(f"|{'-' * 32}|{'-' * 11}|{'-' * 10}|")
    for name, rate in rows:
        print(f"| {name:<30} | {rate:>9.0f} | {1000 / rate:>8.3f} |")


if __name__ == "__main__":
    main()
