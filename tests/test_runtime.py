"""The runtime stands alone: it imports no torch and no training, data or benchmark code, and on
the committed tiny model it still codes exactly the bytes it coded when the model was made."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tamc_codec"
DATA = Path(__file__).resolve().parent / "data"
#: what encoding and decoding must never load (subpackages of tamc_codec, and outside packages)
FORBIDDEN_PACKAGES = ("data", "train", "nets", "bench", "grouping", "dag", "cli")
FORBIDDEN_OUTSIDE = ("torch", "torchvision", "compressai")


def _module_imports(path: Path, module: str) -> set[str]:
    """Every module `path` imports, at any depth of its code, as absolute names."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            name = f"{base}.{node.module}" if node.level and node.module else (node.module if not node.level else base)
            found.add(name)
            found.update(f"{name}.{a.name}" for a in node.names)  # `from . import x` may name a module
    return found


def _source(module: str) -> Path | None:
    parts = module.split(".")[1:]
    if not parts:
        return PACKAGE / "__init__.py"
    for path in (PACKAGE.joinpath(*parts, "__init__.py"), PACKAGE.joinpath(*parts[:-1], parts[-1] + ".py")):
        if path.is_file():
            return path
    return None


def test_the_runtime_and_what_it_imports_never_reach_torch_or_training_code():
    # the closure of tamc_codec modules reachable from the runtime package and the top-level API
    todo = ["tamc_codec", "tamc_codec.runtime", *(f"tamc_codec.runtime.{p.stem}" for p in (PACKAGE / "runtime").glob("*.py"))]
    seen: dict[str, set[str]] = {}
    while todo:
        module = todo.pop()
        path = _source(module)
        if module in seen or path is None:
            continue
        seen[module] = _module_imports(path, module)
        todo += [m for m in seen[module] if m.startswith("tamc_codec.")]
    bad = []
    for module, imports in sorted(seen.items()):
        for name in sorted(imports):
            top = name.split(".")
            if top[0] in FORBIDDEN_OUTSIDE or (top[0] == "tamc_codec" and len(top) > 1 and top[1] in FORBIDDEN_PACKAGES):
                bad.append(f"{module} imports {name}")
    assert "tamc_codec.runtime.layer_codec" in seen and "tamc_codec.bitstream" in seen  # the walk found the codec
    assert not bad, "\n".join(bad)


_BLOCKER = """
import sys
from importlib.abc import MetaPathFinder

class Block(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        parts = name.split(".")
        if parts[0] in {outside!r} or (parts[0] == "tamc_codec" and len(parts) > 1 and parts[1] in {inside!r}):
            raise ImportError("the runtime must not import " + name)
        return None

sys.meta_path.insert(0, Block())
"""


def _run_blocked(code: str, inside: tuple[str, ...]) -> subprocess.CompletedProcess:
    prog = _BLOCKER.format(outside=FORBIDDEN_OUTSIDE, inside=inside) + code
    return subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=300)


def test_tiny_model_codes_the_recorded_bytes_and_outputs_without_torch():
    expected = json.loads((DATA / "tiny_model_expected.json").read_text())
    code = f"""
import hashlib, json
import numpy as np
from tamc_codec.runtime import decode_task, encode_image, load_model
rt = load_model({str(DATA / "tiny_model")!r})
out = {{"model_id": rt.id, "qualities": {{}}}}
for q in range(1, rt.qualities + 1):
    data = encode_image({str(DATA / expected["scene"])!r}, "all", q, rt).data
    tasks = {{t: hashlib.sha256(np.ascontiguousarray(decode_task(data, t, rt).output).tobytes()).hexdigest()
             for t in rt.serving}}
    out["qualities"][str(q)] = {{"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "tasks": tasks}}
print(json.dumps(out))
"""
    r = _run_blocked(code, FORBIDDEN_PACKAGES)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout)
    assert got["model_id"] == expected["model_id"]
    assert got["qualities"] == expected["qualities"]
    sizes = [expected["qualities"][q]["bytes"] for q in sorted(expected["qualities"])]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]  # the recorded qualities really differ


def test_the_cli_encodes_decodes_and_shows_files_without_torch(tmp_path):
    scene = DATA / json.loads((DATA / "tiny_model_expected.json").read_text())["scene"]
    out = tmp_path / "scene.tamc"
    code = f"""
from tamc_codec.cli import main
for args in (["encode", {str(scene)!r}, "-o", {str(out)!r}, "--tasks", "seg,rgb", "--quality", "2",
              "--model", {str(DATA / "tiny_model")!r}],
             ["decode", {str(out)!r}, "--task", "seg", "--model", {str(DATA / "tiny_model")!r}],
             ["info", {str(out)!r}, "--json"]):
    try:
        main(args)
    except SystemExit as exc:
        assert not exc.code, (args, exc.code)
"""
    r = _run_blocked(code, tuple(p for p in FORBIDDEN_PACKAGES if p != "cli"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.is_file() and (tmp_path / "scene.seg.png").is_file()
