"""aeon_trl's TensorDict.from_any shortcut returns what tensordict's own from_any returns, minus its file search."""
import importlib.util

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule

import aeon_trl  # noqa: F401  (installs the shortcut)
from aeon_trl import _tensordict_fastpath


def test_plain_tensors_come_back_as_they_are_other_inputs_take_tensordicts_path():
    t = torch.arange(3.0)
    assert TensorDict.from_any(t) is t is _tensordict_fastpath._from_any(TensorDict, t)
    td = TensorDict.from_any({"a": torch.ones(2, 3)}, auto_batch_size=True)
    assert isinstance(td, TensorDict) and td.batch_size == torch.Size([2, 3])


def test_a_module_call_searches_no_files(monkeypatch):
    # tensordict 0.14 looks for pandas on every TensorDictModule output; the shortcut must make that go away
    searches = []
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: searches.append(name) or real(name, *a))
    module = TensorDictModule(torch.nn.Linear(3, 2), in_keys=["x"], out_keys=["y"])
    out = module(TensorDict({"x": torch.ones(4, 3)}, batch_size=[4]))
    assert out["y"].shape == (4, 2) and searches == []
