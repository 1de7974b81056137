"""The README's first commands are what CI runs and what a new user types."""
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
