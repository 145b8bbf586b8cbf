"""Play a policy exported by `wmtool export` in gymnasium, with no wmtool installed.

Needs only torch (for .pt TorchScript files) or onnxruntime (for .onnx files), plus gymnasium.
Works for gymnasium envs with vector observations, which wmtool feeds to the policy as one
flat float32 `vector` (see the file's metadata for the exact spec):

    python examples/run_exported.py exports/cartpole.pt CartPole-v1 --episodes 3
    python examples/run_exported.py exports/cartpole.onnx CartPole-v1 --episodes 3
"""
from __future__ import annotations

import argparse
import json

import gymnasium as gym
import numpy as np


def load_policy(path: str):
    """Returns (metadata, step) where step(list of arrays) -> list of arrays."""
    if path.endswith(".onnx"):
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        meta = json.loads(session.get_modelmeta().custom_metadata_map["wmtool.json"])
        return meta, lambda inputs: session.run(None, dict(zip(meta["inputs"], inputs)))
    import torch

    files = {"wmtool.json": ""}
    module = torch.jit.load(path, _extra_files=files)
    meta = json.loads(files["wmtool.json"])

    def step(inputs):
        with torch.no_grad():
            return [out.numpy() for out in module(*map(torch.from_numpy, inputs))]

    return meta, step


class Agent:
    """Keeps the policy's recurrent carry between steps."""

    def __init__(self, path: str):
        self.meta, self.step = load_policy(path)
        self.reset()

    def reset(self) -> None:
        self.carry = [np.zeros((1, *shape), np.float32)
                      for shape in self.meta["carry_shapes"].values()]
        self.first = np.ones(1, bool)

    def act(self, vector: np.ndarray):
        obs = np.asarray(vector, np.float32).reshape(1, -1)
        action, *self.carry = self.step([obs, *self.carry, self.first])
        self.first = np.zeros(1, bool)
        return action[0]


def to_env_action(action, space):
    if isinstance(space, gym.spaces.Discrete):
        return int(action)
    low, high = space.low, space.high  # exported continuous actions lie in [-1, 1]
    return low + (np.asarray(action) + 1.0) / 2.0 * (high - low)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("policy", help="a .pt (TorchScript) or .onnx file from wmtool export")
    parser.add_argument("env", help="gymnasium id, e.g. CartPole-v1")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    agent = Agent(args.policy)
    env = gym.make(args.env)
    for episode in range(args.episodes):
        obs, _ = env.reset(seed=args.seed + episode)
        agent.reset()
        total, done = 0.0, False
        repeat = agent.meta.get("action_repeat", 1)  # as the policy was trained to act
        while not done:
            action = to_env_action(agent.act(obs), env.action_space)
            for _ in range(repeat):
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = terminated or truncated
                if done:
                    break
        print(json.dumps({"episode": episode, "return": total}))


if __name__ == "__main__":
    main()
