"""CMA-ES (the `cma` package) over a flat parameter vector, checkpointable as plain tensors.

A checkpoint must load with torch's weights_only=True, so the strategy is not pickled: its
search state (mean, step size, covariance, evolution paths, counters) is copied into tensors
after every generation and a fresh `cma.CMAEvolutionStrategy` is rebuilt from them on resume.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class CMAES(nn.Module):
    def __init__(self, size: int, popsize: int, sigma: float, seed: int = 0):
        super().__init__()
        self.size, self.popsize, self.sigma0, self.seed = size, popsize, sigma, seed
        self.register_buffer("generation", torch.zeros((), dtype=torch.long))
        self.register_buffer("evaluations", torch.zeros((), dtype=torch.long))
        self.register_buffer("mean", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("sigma", torch.zeros((), dtype=torch.float64))
        self.register_buffer("cov", torch.zeros(size, size, dtype=torch.float64))
        self.register_buffer("path_c", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("path_sigma", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("best_x", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("best_f", torch.full((), float("inf"), dtype=torch.float64))
        self._es = None
        self._es_generation = -1

    def _options(self) -> dict:
        # cma seeds numpy's global RNG with `seed`; our checkpoints restore that RNG
        return {"popsize": self.popsize, "seed": self.seed + 1, "verbose": -9,
                "CMA_diagonal": False, "tolfun": 0, "tolx": 0, "tolstagnation": 10**9}

    def strategy(self, x0: np.ndarray):
        """The live strategy: new around x0 at generation 0, else rebuilt from the buffers."""
        import cma

        if self._es is not None and self._es_generation == int(self.generation):
            return self._es
        if int(self.generation) == 0:
            es = cma.CMAEvolutionStrategy(np.asarray(x0, np.float64), self.sigma0,
                                          self._options())
        else:
            es = cma.CMAEvolutionStrategy(self.mean.numpy().copy(), float(self.sigma),
                                          self._options())
            es.sm.C = self.cov.numpy().copy()
            es.sm.update_now(-1)  # eigendecomposition of the restored covariance
            es.pc = self.path_c.numpy().copy()
            es.adapt_sigma.ps = self.path_sigma.numpy().copy()
            es.countiter = int(self.generation)  # step-size adaptation depends on it
            es.countevals = int(self.evaluations)
            # what ask() and tell() expect to exist after iteration 0
            es.timer = cma.utilities.utils.ElapsedWCTime()
            es.mean_old = es.mean.copy()
        self._es, self._es_generation = es, int(self.generation)
        return es

    def ask(self, x0: np.ndarray) -> np.ndarray:
        """A generation's candidates: (popsize, size) float64."""
        return np.stack(self.strategy(x0).ask())

    def tell(self, candidates: np.ndarray, fitness: np.ndarray) -> None:
        """Higher fitness is better (cma minimises, so it is told -fitness)."""
        es = self._es
        es.tell(list(candidates), (-np.asarray(fitness, np.float64)).tolist())
        best = int(np.argmax(fitness))
        if -fitness[best] < float(self.best_f):
            self.best_f.fill_(-float(fitness[best]))
            self.best_x.copy_(torch.from_numpy(np.asarray(candidates[best], np.float64)))
        self.generation += 1
        self.evaluations.fill_(int(es.countevals))
        self.mean.copy_(torch.from_numpy(np.asarray(es.mean, np.float64)))
        self.sigma.fill_(float(es.sigma))
        self.cov.copy_(torch.from_numpy(np.asarray(es.sm.C, np.float64)))
        self.path_c.copy_(torch.from_numpy(np.asarray(es.pc, np.float64)))
        self.path_sigma.copy_(torch.from_numpy(np.asarray(es.adapt_sigma.ps, np.float64)))
        self._es_generation = int(self.generation)

    @property
    def best_fitness(self) -> float:
        return -float(self.best_f)
