"""python/README.md's example runs, and prints what the README says."""

import os
import re
import subprocess
import sys


def blocks(text, lang):
    return re.findall(r"```" + lang + r"\n(.*?)```", text, re.S)


def test_readme_example_runs(repo, tmp_path, data_dir, models_dir):
    with open(os.path.join(repo, "python", "README.md")) as f:
        readme = f.read()
    (code,) = blocks(readme, "python")
    (expected,) = blocks(readme, "text")
    (tmp_path / "example.py").write_text(code)
    env = dict(os.environ, PYTHONPATH=os.path.join(repo, "python"), LETHE_TEST_DATA=data_dir,
               LETHE_MODELS=models_dir)
    run = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout == expected
    assert (tmp_path / "faces" / "catalog.db").is_file()
