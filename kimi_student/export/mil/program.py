"""MilProgram: one function of a saved ML program, loaded into steps and run op by op with numpy."""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kimi_student.export.errors import CorruptPackageError, MilExecError, UnsupportedOpError
from kimi_student.export.mil.dtypes import DType, to_storage
from kimi_student.export.mil.loader import Loader, tensor_type
from kimi_student.export.mil.ops import EXACT_OPS, OPS, SUPPORTED_OPS
from kimi_student.export.mil.steps import Args, StateRef, Step, TensorType

# Ops that may write their result into one of their inputs (named here) when `_reusable` allows it:
# the stateful decoder's KV-cache writes, which would otherwise copy the whole cache each time.
IN_PLACE = {"slice_update": "x", "scatter_nd": "data"}

_CONSTEXPR_PREFIX = "constexpr_"

# Threads of the BLAS (numpy's matmuls) and of torch (fp16 casts) while a program runs. One each: the ops
# are small, and two pools on two cores spin against each other. Measured on SmolLM2-135M's stateful
# decoder, 2-core AMD EPYC: 271 -> 178 ms for one token, 703 -> 275 ms for an 8-token chunk.
THREADS: int | None = 1  # None: leave both pools as they are
_blas: Any = None


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    global _blas
    if n is None:
        yield
        return
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController()
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with _blas.limit(limits=n, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


class MilProgram:
    """One function (normally ``main``) of a saved ML program, runnable with numpy."""

    def __init__(self) -> None:  # use MilProgram.load
        self.path = Path()
        self.input_names: list[str] = []
        self.output_names: list[str] = []
        self.state_names: list[str] = []
        self.opset = ""
        self._input_types: dict[str, TensorType] = {}
        self._state_types: dict[str, TensorType] = {}
        self._input_specs: dict[str, Any] = {}
        self._consts: dict[str, Any] = {}
        self._weights: dict[str, tuple[np.ndarray, TensorType | None]] = {}
        self._output_types: dict[str, DType] = {}
        self._steps: list[Step] = []
        self._histogram: Counter[str] = Counter()

    # -- loading -------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, function: str | None = None) -> MilProgram:
        """Parse an ``.mlpackage``; constants and compressed weights are materialised now.

        `function` picks one function of a multifunction package (iOS18); by default ``main``,
        or the package's default function when it has no ``main``."""
        loader = Loader(Path(path))
        model = loader.parse_model()
        functions = model.mlProgram.functions
        if function is None:
            function = "main" if "main" in functions else model.description.defaultFunctionName or "main"
        return cls._load_function(loader, model, function)

    @classmethod
    def load_all(cls, path: str | Path) -> dict[str, MilProgram]:
        """Every function of a package by name, parsed once, sharing one copy of the weights."""
        loader = Loader(Path(path))
        model = loader.parse_model()
        return {name: cls._load_function(loader, model, name) for name in sorted(model.mlProgram.functions)}

    @classmethod
    def _load_function(cls, loader: Loader, model: Any, function: str) -> MilProgram:
        prog = cls()
        prog.path = loader.package
        functions = model.mlProgram.functions
        if function not in functions:
            raise CorruptPackageError(
                loader.model_path, f"no function {function!r} (has {sorted(functions)})"
            )
        fn = functions[function]
        blocks = fn.block_specializations
        if fn.opset in blocks:
            block = blocks[fn.opset]
        elif len(blocks) == 1:
            block = next(iter(blocks.values()))
        else:
            raise CorruptPackageError(
                loader.model_path, f"function {function!r} has no block for opset {fn.opset!r}"
            )
        prog.opset = fn.opset
        prog._histogram = Counter(op.type for op in block.operations)
        unsupported = [t for t in prog._histogram if t not in SUPPORTED_OPS]
        unsupported += [op.type for op in block.operations if len(op.blocks)]  # control flow
        if unsupported:
            raise UnsupportedOpError.in_executor(unsupported, str(prog.path))

        for inp in fn.inputs:
            tt = tensor_type(inp.type, f"input {inp.name!r}", loader.model_path)
            if tt is None:
                raise UnsupportedOpError.in_executor(
                    [inp.type.WhichOneof("type")], f"{prog.path}: input {inp.name!r}", what="input type"
                )
            if tt.is_state:
                prog.state_names.append(inp.name)
                prog._state_types[inp.name] = tt
            else:
                prog.input_names.append(inp.name)
                prog._input_types[inp.name] = tt
        described = model.description.input
        for fd in model.description.functions:  # multifunction packages describe each function
            if fd.name == function:
                described = fd.input
        prog._input_specs = {f.name: f.type for f in described}
        prog.output_names = list(block.outputs)
        prog._build(block, loader)
        return prog

    def _build(self, block: Any, loader: Loader) -> None:
        """Turn the block into steps; consts are read and constexpr weights expanded now, once."""
        defined: set[str] = set(self.input_names) | set(self.state_names)
        states = {n: StateRef(n) for n in self.state_names}
        last_use: dict[str, int] = {}
        model_file = loader.model_path
        for op in block.operations:
            name = _op_name(op)
            where = f"op {name!r} ({op.type})"
            outputs = [(o.name, tensor_type(o.type, where, model_file)) for o in op.outputs]
            if op.type == "const":
                if "val" not in op.attributes or len(outputs) != 1:
                    raise CorruptPackageError(model_file, f"{where}: const without a value")
                value = loader.value(op.attributes["val"], where)
                self._consts[outputs[0][0]] = value
                if op.attributes["val"].WhichOneof("value") == "blobFileValue":
                    self._weights[outputs[0][0]] = (value, outputs[0][1])
                defined.add(outputs[0][0])
                continue
            inputs = self._bind_inputs(op, where, defined, states, loader)
            step = Step(op.type, name, inputs, outputs)
            if op.type.startswith(_CONSTEXPR_PREFIX):
                # Weights: decompress once (per package) and keep the dense result with the constants.
                key = _expansion_key(step)
                if key not in loader.expanded:  # the step rides along: ids in the key stay its arrays'
                    loader.expanded[key] = (self._run_step(step, {}, None), step)
                values = loader.expanded[key][0]
                for (out_name, tt), v in zip(outputs, values):
                    self._consts[out_name] = v
                    self._weights[out_name] = (v, tt)
                    defined.add(out_name)
                continue
            for is_var, ref in (b for bs in inputs.values() for b in bs):
                if is_var:
                    last_use[ref] = len(self._steps)
            self._steps.append(step)
            defined.update(n for n, _ in outputs)
        self._finish(defined, last_use, model_file)

    def _bind_inputs(
        self, op: Any, where: str, defined: set[str], states: dict[str, StateRef], loader: Loader
    ) -> dict[str, list[tuple[bool, Any]]]:
        """An op's inputs resolved now: constants and states by value, other variables by name."""
        model_file = loader.model_path
        inputs: dict[str, list[tuple[bool, Any]]] = {}
        for param, arg in op.inputs.items():
            bound: list[tuple[bool, Any]] = []
            for binding in arg.arguments:
                if binding.WhichOneof("binding") == "name":
                    ref = binding.name
                    if ref not in defined:
                        raise CorruptPackageError(
                            model_file, f"{where}: input {param!r} uses undefined {ref!r}"
                        )
                    if ref in self._consts:
                        bound.append((False, self._consts[ref]))
                    elif ref in states:
                        bound.append((False, states[ref]))
                    else:
                        bound.append((True, ref))
                else:
                    bound.append((False, loader.value(binding.value, f"{where} input {param!r}")))
            inputs[param] = bound
        for param, attr in op.attributes.items():
            # iOS16/17 constexpr ops carry their parameters as attributes, not inputs.
            if param != "name" and param not in inputs:
                inputs[param] = [(False, loader.value(attr, f"{where} attribute {param!r}"))]
        return inputs

    def _finish(self, defined: set[str], last_use: dict[str, int], model_file: Path) -> None:
        """Check the outputs exist, free variables after their last use and unused constants."""
        for out in self.output_names:
            if out not in defined:
                raise CorruptPackageError(model_file, f"program output {out!r} is never computed")
        keep = set(self.output_names)
        for ref, i in last_use.items():
            if ref not in keep:
                self._steps[i].drop.append(ref)
        # Steps hold their constant inputs directly; keep only constants the program returns, and
        # only weights some op reads, so quantized sources of dequantized weights are freed.
        used = {
            id(ref) for st in self._steps for bs in st.inputs.values() for is_var, ref in bs if not is_var
        }
        self._consts = {n: v for n, v in self._consts.items() if n in keep}
        self._weights = {n: w for n, w in self._weights.items() if id(w[0]) in used or n in keep}
        types = {n: t for s in self._steps for n, t in s.outputs if t is not None}
        types.update((n, t) for n, t in self._input_types.items())
        self._output_types = {n: types[n].dtype for n in self.output_names if n in types}

    # -- running -------------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"MilProgram({str(self.path)!r}, opset={self.opset}, inputs={self.input_names}, "
            f"outputs={self.output_names}, states={self.state_names}, ops={len(self._steps)})"
        )

    def input_shape(self, name: str) -> tuple[int, ...]:
        """The declared shape of input `name` (its default shape when the input is flexible)."""
        return tuple(self._input_types[name].shape)

    def new_state(self) -> dict[str, np.ndarray]:
        """Zero-filled states with the declared shapes and dtypes (fp16 states are float16)."""
        out = {}
        for name, tt in self._state_types.items():
            if tt.shape is None or any(d is None for d in tt.shape):
                raise MilExecError(f"{self.path}: state {name!r} has no fixed shape")
            out[name] = np.zeros(tt.shape, dtype=tt.dtype.public)  # type: ignore[arg-type]
        return out

    def weights(self) -> dict[str, np.ndarray]:
        """The dense weight tensors the ops read, by MIL name: blob-file constants and the outputs
        of ``constexpr_*`` ops (dequantized / de-palettized / densified), fp16 as float16."""
        out = {}
        for name, (arr, tt) in self._weights.items():
            out[name] = (
                arr.astype(tt.dtype.public) if tt is not None and arr.dtype != np.object_ else arr.copy()
            )
        return out

    def op_histogram(self) -> dict[str, int]:
        """How many ops of each type the ``main`` block holds (consts included)."""
        return dict(self._histogram)

    def predict(
        self, inputs: dict[str, np.ndarray], state: dict[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """Run ``main``. `state` (from :meth:`new_state`) is updated in place; omitted, a fresh
        zero state is used and discarded."""
        missing = [n for n in self.input_names if n not in inputs]
        extra = [n for n in inputs if n not in self._input_types]
        if missing or extra:
            raise MilExecError(
                f"{self.path}: inputs expected {self.input_names}, missing {missing}, unexpected {extra}"
            )
        env: dict[str, Any] = {n: self._check_input(n, v) for n, v in inputs.items()}
        states = self._check_state(state)
        with _threads(THREADS):
            for step in self._steps:
                values = self._run_step(step, env, states)
                for (out_name, _), v in zip(step.outputs, values):
                    env[out_name] = v
                for ref in step.drop:
                    env.pop(ref, None)
        result = {}
        for out in self.output_names:
            v = env[out] if out in env else self._consts[out]
            result[out] = self._public(out, v)
        return result

    def _public(self, name: str, v: Any) -> np.ndarray:
        dt = self._output_types.get(name)
        arr = np.asarray(v)
        if dt is not None and arr.dtype != np.object_:
            return arr.astype(dt.public)  # copies: never hands out a cached constant
        return np.array(arr, copy=True)

    def _check_input(self, name: str, value: Any) -> np.ndarray:
        tt = self._input_types[name]
        arr = np.asarray(value)
        if tt.dtype.storage.kind in "iub" and arr.dtype.kind == "f":
            raise MilExecError(f"{self.path}: input {name!r} must be {tt.dtype.name}, got {arr.dtype}")
        if tt.shape is not None:
            ok = arr.ndim == len(tt.shape) and all(d is None or d == s for d, s in zip(tt.shape, arr.shape))
            if not ok:
                raise MilExecError(
                    f"{self.path}: input {name!r} has shape {arr.shape}, program expects {_fmt(tt.shape)}"
                )
        self._check_flexible_shape(name, arr.shape)
        return to_storage(arr, tt.dtype)

    def _check_flexible_shape(self, name: str, shape: tuple[int, ...]) -> None:
        spec = self._input_specs.get(name)
        if spec is None or spec.WhichOneof("Type") != "multiArrayType":
            return
        ma = spec.multiArrayType
        flex = ma.WhichOneof("ShapeFlexibility")
        if flex == "enumeratedShapes":
            allowed = [tuple(s.shape) for s in ma.enumeratedShapes.shapes]
            if tuple(shape) not in allowed:
                raise MilExecError(
                    f"{self.path}: input {name!r} has shape {shape}, allowed shapes are {allowed}"
                )
        elif flex == "shapeRange":
            for dim, r in zip(shape, ma.shapeRange.sizeRanges):
                upper = r.upperBound if r.upperBound >= 0 else None
                if dim < r.lowerBound or (upper is not None and dim > upper):
                    raise MilExecError(
                        f"{self.path}: input {name!r} has shape {shape}, outside the declared ranges"
                    )

    def _check_state(self, state: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
        if not self.state_names:
            return None
        if state is None:
            return self.new_state()
        for name, tt in self._state_types.items():
            arr = state.get(name)
            if not isinstance(arr, np.ndarray):
                raise MilExecError(f"{self.path}: state {name!r} is missing (use new_state())")
            if arr.dtype != tt.dtype.public or (tt.shape is not None and arr.shape != tt.shape):
                raise MilExecError(
                    f"{self.path}: state {name!r} is {arr.dtype}{list(arr.shape)}, "
                    f"program declares {tt.dtype.public}{_fmt(tt.shape)}"
                )
        return state

    def _run_step(
        self, step: Step, env: dict[str, Any], states: dict[str, np.ndarray] | None
    ) -> tuple[Any, ...]:
        values = {p: [env[ref] if is_var else ref for is_var, ref in bs] for p, bs in step.inputs.items()}
        target = IN_PLACE.get(step.type)
        args = Args(step, values, states, target is not None and self._reusable(step, env, target))
        try:
            result = OPS[step.type](args)
        except MilExecError:
            raise
        except Exception as e:  # numpy errors: say which op, keep the cause
            raise MilExecError(
                f"{self.path}: op {step.name!r} ({step.type}) failed: {type(e).__name__}: {e}"
            ) from e
        results = result if isinstance(result, tuple) else (result,)
        if len(results) != len(step.outputs):
            raise MilExecError(
                f"op {step.name!r} ({step.type}): {len(results)} results for {len(step.outputs)} outputs"
            )
        return tuple(self._coerce(step, i, v) for i, v in enumerate(results))

    def _reusable(self, step: Step, env: dict[str, Any], param: str) -> bool:
        """Whether `step` may write into its input `param`: a variable (not a constant, not the caller's
        input) whose last use is this step, an array that owns its memory (not a view of a constant
        or of a state), and that no other live value shares."""
        bound = step.inputs.get(param, [])
        if len(bound) != 1 or not bound[0][0]:
            return False
        name = bound[0][1]
        x = env.get(name)
        if name not in step.drop or name in self.input_names or not isinstance(x, np.ndarray):
            return False
        if not (x.flags.owndata and x.flags.writeable):
            return False
        return not any(
            k != name and isinstance(v, np.ndarray) and np.may_share_memory(x, v) for k, v in env.items()
        )

    def _coerce(self, step: Step, i: int, value: Any) -> Any:
        """Bring an op result to its declared type and check its declared shape."""
        name, tt = step.outputs[i]
        if tt is None:
            return value
        arr = np.asarray(value)
        if tt.dtype.name == "fp16" and step.type in EXACT_OPS and arr.dtype == np.float32:
            pass  # values were fp16 already; moving them cannot create new ones
        else:
            arr = to_storage(arr, tt.dtype)
        if tt.shape is not None:
            if arr.ndim != len(tt.shape) or any(
                d is not None and d != s for d, s in zip(tt.shape, arr.shape)
            ):
                raise MilExecError(
                    f"{self.path}: op {step.name!r} ({step.type}) output {name!r} has shape {arr.shape}, "
                    f"program declares {_fmt(tt.shape)}"
                )
        return arr


def _expansion_key(step: Step) -> tuple[Any, ...]:
    """What a constexpr op's result depends on: its type and constant inputs, large ones by identity
    (blob values are shared arrays, Loader.blob_values), small ones by their bytes."""
    parts: list[Any] = [step.type]
    for param, bound in sorted(step.inputs.items()):
        for _, v in bound:
            arr = np.asarray(v)
            tag = ("id", id(v)) if arr.nbytes > 4096 else (arr.dtype.str, arr.shape, arr.tobytes())
            parts.append((param, tag))
    return tuple(parts)


def _op_name(op: Any) -> str:
    attr = op.attributes.get("name") if "name" in op.attributes else None
    if attr is not None and attr.immediateValue.tensor.strings.values:
        return str(attr.immediateValue.tensor.strings.values[0])
    return op.outputs[0].name if op.outputs else op.type


def _fmt(shape: tuple[int | None, ...] | None) -> str:
    if shape is None:
        return "[*]"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def predict_with_coreml(path: str | Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Reference prediction with Core ML itself (macOS only), for comparison with MilProgram."""
    if sys.platform != "darwin":
        raise MilExecError("Core ML prediction needs macOS; use MilProgram.load(path).predict(inputs)")
    import coremltools as ct

    model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)
    return {k: np.asarray(v) for k, v in model.predict(inputs).items()}
