"""The README's plug-in example must work as written."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.heavy
def test_readme_agent_example_runs_from_the_command_line(tmp_path):
    code = re.search(r"```python\n(# my_agents.py\n.*?)```", README.read_text(), re.S).group(1)
    (tmp_path / "my_agents.py").write_text(code)
    result = subprocess.run(
        [sys.executable, "-m", "rl2bench", "run", "--task", "mab", "--algos", "greedy,my_agents:SoftmaxBandit",
         "--cells", "n20-k3", "--instances", "100", "--out", str(tmp_path / "run"), "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "softmax" in result.stdout
    run_json = (tmp_path / "run" / "run.json").read_text()
    assert '"n20-k3/softmax"' in run_json and "temperature" in run_json
