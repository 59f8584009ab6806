"""binder/ alone is enough to run the notebooks: a fresh venv gets exactly what it installs.

mybinder.org (repo2docker) installs the Debian packages of ``binder/apt.txt``, the Python of
``binder/runtime.txt``, then runs ``binder/postBuild`` from the repository root. This test does the
same on this machine without touching anything global: the apt packages must already be present
(``./dev setup`` installs them), a new venv in a temporary folder gets the ``pip install`` lines of
``postBuild`` (and ``requirements.txt`` if there is one), and that venv's own ``jupyter nbconvert``
executes every notebook with that venv's own kernel. A dependency the notebooks need but binder
does not install fails here rather than on mybinder.org.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

from tests.helpers.notebooks import EXPECTED, output_text  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
NOTEBOOKS = ROOT / "notebooks"

#: Debian package of binder/apt.txt -> a command it provides.
APT_COMMANDS = {"graphviz": "dot", "redis-server": "redis-server"}


def apt_packages() -> list[str]:
    lines = (BINDER / "apt.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def runtime_python() -> str:
    """'3.11' from binder/runtime.txt ('python-3.11')."""
    match = re.fullmatch(r"python-(\d+\.\d+)", (BINDER / "runtime.txt").read_text().strip())
    assert match, "binder/runtime.txt must read python-X.Y"
    return match.group(1)


def pip_installs() -> list[list[str]]:
    """The arguments of every ``pip install`` of postBuild (and of requirements.txt, if any).

    ``--no-cache-dir`` is dropped: on mybinder.org it keeps the image small; here the cache makes
    the test fast and installs the same packages.
    """
    installs = []
    for line in (BINDER / "postBuild").read_text().splitlines():
        words = shlex.split(line, comments=True)
        if "pip" in words and "install" in words:
            args = words[words.index("install") + 1 :]
            installs.append([arg for arg in args if arg != "--no-cache-dir"])
    if (BINDER / "requirements.txt").is_file():
        installs.append(["-r", str(BINDER / "requirements.txt")])
    assert not (BINDER / "environment.yml").exists(), "conda environments are not covered by this test"
    return installs


def test_binder_files_cover_what_the_notebooks_need() -> None:
    assert set(apt_packages()) == set(APT_COMMANDS), "a new apt package needs its command in APT_COMMANDS"
    installs = pip_installs()
    assert installs, "binder/postBuild installs nothing"
    extras = {e for args in installs for arg in args for e in re.findall(r"\.\[([^\]]*)\]", arg)}
    wanted = {"notebook", "redis", "dask"}  # widgets and pictures; scale_out's Redis and Dask
    assert any(wanted <= set(e.split(",")) for e in extras), f"postBuild installs {extras}, needs {wanted}"


@pytest.mark.e2e  # builds a venv and executes every notebook in it
@pytest.mark.timeout(900)
def test_a_fresh_venv_built_from_binder_runs_every_notebook(tmp_path: Path) -> None:
    missing = [f"{cmd} ({pkg})" for pkg, cmd in APT_COMMANDS.items() if shutil.which(cmd) is None]
    assert missing == [], f"binder/apt.txt packages missing here: {missing}; run ./dev setup"
    version = runtime_python()
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == version, (
        f"binder/runtime.txt asks for Python {version}; this test runs on {sys.version.split()[0]}"
    )

    # Nothing global: Jupyter and IPython look in the temporary folder instead of ~ for user-level
    # kernels and config, so only the venv's own python3 kernel can be found.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON", "JUPYTER"))}
    env.pop("FLOW_WORKBENCH_GO_FILES", None)  # the notebooks must find the golden files themselves
    venv = tmp_path / "venv"
    env |= {
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    }

    def run(*command: str | Path, cwd: Path = ROOT) -> str:
        done = subprocess.run(
            [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"{shlex.join(map(str, command))} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    for args in pip_installs():  # from the repository root, as repo2docker runs postBuild
        run(python, "-m", "pip", "install", "--quiet", *args)

    # The kernel nbconvert will start is the venv's, not one registered elsewhere on this machine.
    specs = json.loads(run(venv / "bin" / "jupyter", "kernelspec", "list", "--json"))["kernelspecs"]
    assert "python3" in specs, specs
    kernel_dir = Path(specs["python3"]["resource_dir"]).resolve()
    assert kernel_dir.is_relative_to(venv.resolve()), f"python3 kernel found outside the venv: {kernel_dir}"

    work = tmp_path / "notebooks"  # the notebooks write their workbench-data/ folders here
    work.mkdir()
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    for path in paths:
        shutil.copy(path, work / path.name)
    run(
        venv / "bin" / "jupyter",
        "nbconvert",
        "--to",
        "notebook",
        "--execute",
        "--inplace",
        "--ExecutePreprocessor.timeout=300",
        "--ExecutePreprocessor.kernel_name=python3",
        *(path.name for path in paths),
        cwd=work,
    )
    for path in paths:
        notebook = nbformat.read(work / path.name, as_version=4)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), path.name
        errors = [o for c in code for o in c.outputs if o.get("output_type") == "error"]
        assert errors == [], f"{path.name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
        text = output_text(notebook)
        missing = [snippet for snippet in EXPECTED[path.name] if snippet not in text]
        assert missing == [], f"in the binder venv, {path.name} lacks {missing}"
