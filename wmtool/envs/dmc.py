"""dm_control suite adapter: `dmc:<domain>-<task>`, `--obs state|pixels|both`.

Rendering is headless. MUJOCO_GL defaults to egl (Mesa renders on the CPU); osmesa needs
Debian's libosmesa6. Rendering at 64x64 with dm_control's defaults is slow (~45 fps here)
because it draws into a large multisampled buffer with shadows, so the offscreen buffer is
shrunk to the render size with no multisampling and no shadows (~300-400 fps). The camera is
built once and reused: `physics.render` builds a new one (and its scene) every call, which
cost about half of each frame here.
"""
from __future__ import annotations

import difflib
import os
from typing import Any

import numpy as np

from wmtool import spaces
from wmtool.envs.base import Env, rescale_action, transition
from wmtool.errors import UsageError, WmtoolError

# Cameras that frame the body well; the rest use camera 0 (as in the Dreamer papers).
DEFAULT_CAMERA = {"quadruped": 2}
RENDER_HINT = ("set MUJOCO_GL=egl (Mesa's libEGL) or MUJOCO_GL=osmesa "
               "(apt-get install libosmesa6) before running")


def _import_suite():
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    try:
        from dm_control import suite
    except Exception as exc:  # bad MUJOCO_GL values and missing GL libraries land here
        backend = os.environ.get("MUJOCO_GL")
        raise WmtoolError(f"dm_control cannot start with MUJOCO_GL={backend}: "
                          f"{type(exc).__name__}: {exc}".splitlines()[0], RENDER_HINT) from exc
    return suite


def all_tasks() -> list[str]:
    return [f"{d}-{t}" for d, t in _import_suite().ALL_TASKS]


class DMCEnv(Env):
    def __init__(self, task: str, obs: str = "state", size=(64, 64), seed: int | None = None,
                 camera: int = -1):
        if obs not in ("state", "pixels", "both"):
            raise WmtoolError(f"--obs {obs}: unknown observation mode", "use state, pixels or both")
        suite = _import_suite()
        domain, _, name = task.partition("-")
        if (domain, name) not in suite.ALL_TASKS:
            close = difflib.get_close_matches(task, all_tasks(), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join('dmc:' + c for c in close)}?" if close else \
                "run `wmtool envs` to list dmc tasks"
            raise UsageError(f"unknown dm_control task '{task}'", hint)
        self._env = suite.load(domain, name, task_kwargs={"random": seed})
        self.env_id = f"dmc:{task}"
        self._mode = obs
        self._size = tuple(int(s) for s in size)
        self._camera = DEFAULT_CAMERA.get(domain, 0) if camera < 0 else camera
        self._vector_keys = list(self._env.observation_spec())
        self.obs_space = {}
        if obs in ("state", "both"):
            dim = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
            self.obs_space["vector"] = spaces.vector(dim)
        if obs in ("pixels", "both"):
            self.obs_space["image"] = spaces.image(*self._size)
            self._configure_renderer()
        spec = self._env.action_spec()
        self._low, self._high = spec.minimum.astype(np.float64), spec.maximum.astype(np.float64)
        self.act_space = spaces.continuous(int(np.prod(spec.shape)))

    def _configure_renderer(self) -> None:
        model = self._env.physics.model
        height, width = self._size
        model.vis.global_.offwidth = max(width, 1)
        model.vis.global_.offheight = max(height, 1)
        model.vis.quality.offsamples = 0
        model.light_castshadow[:] = 0
        try:
            from dm_control.mujoco import Camera

            self._camera_obj = Camera(self._env.physics, height, width, self._camera)
            self._render()
        except Exception as exc:  # the GL backends raise many unrelated types
            backend = os.environ.get("MUJOCO_GL")
            raise WmtoolError(f"cannot render dm_control headless with MUJOCO_GL={backend}: "
                              f"{type(exc).__name__}: {exc}".splitlines()[0], RENDER_HINT) from exc

    def _render(self) -> np.ndarray:
        # render() returns a view of the camera's own buffer, overwritten by the next call
        return self._camera_obj.render().copy()

    def _observe(self, timestep) -> dict[str, np.ndarray]:
        out = {}
        if "vector" in self.obs_space:
            out["vector"] = np.concatenate([np.asarray(timestep.observation[k], np.float32)
                                            .reshape(-1) for k in self._vector_keys])
        if "image" in self.obs_space:
            out["image"] = self._render()
        return out

    def reset(self, seed: int | None = None) -> dict[str, Any]:
        if seed is not None:
            self._env.task.random.seed(seed)
        return transition(self._observe(self._env.reset()), first=True)

    def step(self, action) -> dict[str, Any]:
        timestep = self._env.step(rescale_action(action, self._low, self._high))
        last = timestep.last()
        # dm_control ends every suite episode by its time limit with discount 1: a
        # truncation. Only a discount of 0 is a true terminal.
        terminal = bool(last and timestep.discount == 0)
        return transition(self._observe(timestep), float(timestep.reward or 0.0), False,
                          bool(last), terminal)

    def close(self) -> None:
        self._env.close()
