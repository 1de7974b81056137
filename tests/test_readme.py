"""The README's first commands are what CI runs and what a new user types."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ci_var(name: str) -> str:
    text = (ROOT / ".ci" / "run").read_text()
    return re.search(rf"^{name}='(.*)'$", text, flags=re.M).group(1)


def test_readme_starts_with_setup_and_main_job_then_tests():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:sh|bash|console)?\n(.*?)```", readme, flags=re.S)
    first = [line.strip() for line in blocks[0].splitlines() if line.strip() and not line.startswith("#")]
    assert first[0] == _ci_var("SETUP")
    assert first[1].startswith("tamc ")
    assert _ci_var("TEST") in readme


def test_readme_console_shows_the_shipped_model():
    """The printed example is of the model that ships, not of an earlier one."""
    readme = (ROOT / "README.md").read_text()
    model_id = json.loads((ROOT / "models" / "default" / "manifest.json").read_text())["model_id"]
    shown = re.findall(r"model default \(([0-9a-f]{32})\)", readme)
    assert shown and set(shown) == {model_id}
