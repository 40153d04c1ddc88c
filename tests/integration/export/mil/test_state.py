"""Stateful programs: a KV cache in Core ML states, updated in place step by step like torch's buffers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

ct = pytest.importorskip("coremltools")

from kimi_student.export.mil import MilExecError, MilProgram  # noqa: E402
from tests.integration.export.mil.conversion import CONVERTER_CHATTER, convert, seeded, torch_logits  # noqa: E402
from tests.integration.export.mil.models import DIM, HEADS, KV_HEADS, MAXLEN, VOCAB, KVCacheLlama  # noqa: E402

pytestmark = [*CONVERTER_CHATTER, pytest.mark.slow]


@pytest.mark.parametrize(("via", "sdpa"), [("export", False), ("trace", True)])
def test_stateful_kv_cache_step_by_step(pkgdir: Path, via: str, sdpa: bool) -> None:
    module = seeded(KVCacheLlama, sdpa=sdpa)
    path = pkgdir / f"kv_{via}_{sdpa}.mlpackage"
    seq, end = ct.RangeDim(1, MAXLEN, default=1), ct.RangeDim(1, MAXLEN, default=1)
    dyn = None
    if via == "export":
        s, e = torch.export.Dim("s", min=1, max=MAXLEN - 1), torch.export.Dim("e", min=1, max=MAXLEN - 1)
        dyn = {"ids": {1: s}, "mask": {2: s, 3: e}}
    state_shape = (1, KV_HEADS, MAXLEN, DIM // HEADS)
    convert(
        module,
        (torch.zeros(1, 3, dtype=torch.int32), torch.zeros(1, 1, 3, 5)),
        path,
        [
            ct.TensorType(name="ids", shape=(1, seq), dtype=np.int32),
            ct.TensorType(name="mask", shape=(1, 1, seq, end), dtype=np.float16),
        ],
        precision=ct.precision.FLOAT16,
        target=ct.target.iOS18,
        via=via,
        dynamic_shapes=dyn,
        outputs=[ct.TensorType(name="logits", dtype=np.float16)],
        states=[
            ct.StateType(wrapped_type=ct.TensorType(shape=state_shape), name="k_cache"),
            ct.StateType(wrapped_type=ct.TensorType(shape=state_shape), name="v_cache"),
        ],
    )
    module.k_cache.zero_()
    module.v_cache.zero_()
    prog = MilProgram.load(path)
    hist = prog.op_histogram()
    assert prog.state_names == ["k_cache", "v_cache"] and prog.output_names == ["logits"]
    assert {"read_state", "write_state", "slice_update"} <= set(hist)
    assert ("scaled_dot_product_attention" in hist) == sdpa
    state = prog.new_state()
    assert state["k_cache"].dtype == np.float16 and state["k_cache"].shape == state_shape

    rng = np.random.default_rng(1)
    prompt = rng.integers(0, VOCAB, (1, 4)).astype(np.int32)
    steps = [prompt] + [rng.integers(0, VOCAB, (1, 1)).astype(np.int32) for _ in range(5)]
    pos = 0
    for ids in steps:
        n = ids.shape[1]
        mask = np.zeros((1, 1, n, pos + n), np.float32)
        mask[0, 0] = np.triu(np.full((n, pos + n), -1e4, np.float32), k=pos + 1)
        ref = torch_logits(module, ids, mask)
        out = prog.predict({"ids": ids, "mask": mask.astype(np.float16)}, state)["logits"]
        assert out.shape == ref.shape
        assert np.abs(out.astype(np.float32) - ref).max() < 5e-3 * np.abs(ref).max()  # ~5e-4 measured
        assert (out.argmax(-1) == ref.argmax(-1)).all()
        pos += n
    # The caches were updated in place, position by position, like torch's buffers.
    for name in ("k_cache", "v_cache"):
        ours, theirs = state[name].astype(np.float32), getattr(module, name).detach().numpy()
        assert np.abs(ours[:, :, :pos] - theirs[:, :, :pos]).max() < 5e-3 * np.abs(theirs).max()
        assert not ours[:, :, pos:].any()

    # Without a state the call starts from zeros (and keeps nothing): the prompt step again.
    first = {"ids": prompt, "mask": np.triu(np.full((4, 4), -1e4, np.float16), k=1)[None, None]}
    again = prog.predict(first)["logits"]
    assert np.array_equal(again, prog.predict(first, prog.new_state())["logits"])
    with pytest.raises(MilExecError, match="state 'k_cache'"):
        prog.predict(first, {**state, "k_cache": state["k_cache"].astype(np.float32)})
