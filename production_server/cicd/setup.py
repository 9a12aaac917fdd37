"""Set up the production side: ``python -m production_server.cicd.setup --config-json ... --model-dir DIR``.

    <production>/repo.git/          a bare repository; its first commit holds model/,
                                    the model served now; hooks/pre-receive, hooks/post-receive
    <production>/releases/0001-.../ that model again, as release 1
    <production>/current            -> releases/0001-...  (not yet what the workers read:
                                    labkit points them at it next, one worker at a time)
    <production>/cicd.json          the hooks' settings

The development side then clones the repository, so both start from the
model production serves.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from ..model import read_metadata
from ..releases import Releases
from . import PipelineError, git
from ..contract import HOOKS, MODEL_PATH, PipelineConfig

HOOK_TEXT = {
    "pre-receive": "the quality gate. For a push to {branch} it loads the pushed model in a\n"
                   "# separate process and refuses the push unless the model loads, takes 8\n"
                   "# inputs, gives probabilities and reaches the minimum accuracy in cicd.json.\n"
                   "# Pushes to other branches are accepted and not deployed.",
    "post-receive": "the deploy. For a push to {branch} it copies model/ into a new folder\n"
                    "# under releases/, switches the 'current' link the workers read, and waits\n"
                    "# until every worker serves the new version (GET /api/model).",
}


def create(config: PipelineConfig, model_dir: Path, python: str = sys.executable,
           pythonpath: str | None = None, who: str = "labkit") -> PipelineConfig:
    root = Path(config.production)
    if config.file.exists():
        raise PipelineError(f"{root} holds a pipeline set up already: move it away, then retry.")
    root.mkdir(parents=True, exist_ok=True)
    # Without cicd.json, what is here is an interrupted set-up: nothing served from it yet, or pushed
    # to it. The folder itself stays (on a VM it belongs to root, its contents to the deploy user).
    for leftover in root.iterdir():
        shutil.rmtree(leftover) if leftover.is_dir() and not leftover.is_symlink() else leftover.unlink()
    git.git("init", "--quiet", "--bare", f"--initial-branch={config.branch}", str(config.repo), cwd=root)
    _first_commit(config, Path(model_dir), who)
    releases = Releases(root)
    releases.switch(releases.add(Path(model_dir), str(read_metadata(Path(model_dir))["version"])))
    _install_hooks(config, python, pythonpath)
    config.save()  # last: its presence says the setup finished
    return config


def _first_commit(config: PipelineConfig, model_dir: Path, who: str) -> None:
    """Commit ``model_dir`` as model/ straight into the bare repository, through a scratch work tree."""
    with tempfile.TemporaryDirectory(prefix="labkit-setup-") as tmp:
        shutil.copytree(model_dir, Path(tmp) / MODEL_PATH)
        tree = ["--git-dir", str(config.repo), "--work-tree", tmp]
        # A production server often has no git identity of its own.
        identity = ["-c", f"user.name={who}", "-c", f"user.email={who}@production"]
        git.git(*identity, *tree, "add", MODEL_PATH, cwd=Path(tmp))
        git.git(*identity, *tree, "commit", "--quiet", "-m",
                "Release 1: the model production served when CI/CD was set up", cwd=Path(tmp))


def _install_hooks(config: PipelineConfig, python: str, pythonpath: str | None) -> None:
    for name in HOOKS:
        what = HOOK_TEXT[name]
        hook = config.repo / "hooks" / name
        hook.write_text(
            "#!/bin/sh\n"
            f"# {name}, installed by `labkit cicd init`: {what.format(branch=config.branch)}\n"
            f"# Its settings: {config.file}\n"
            + (f"export PYTHONPATH={shlex.quote(pythonpath)}\n" if pythonpath else "")
            + f"exec {shlex.quote(python)} -m production_server.cicd.hooks {name} --config {shlex.quote(str(config.file))}\n"
        )
        hook.chmod(0o755)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m production_server.cicd.setup", description=__doc__.splitlines()[0])
    parser.add_argument("--config-json", required=True, help="the fields of cicd.json, as JSON")
    parser.add_argument("--model-dir", type=Path, required=True, help="the model the server serves now")
    parser.add_argument("--python", default=sys.executable, help="the interpreter the hooks run with")
    parser.add_argument("--pythonpath", help="PYTHONPATH for the hooks (where production_server is)")
    parser.add_argument("--who", default="labkit", help="the first commit's author")
    args = parser.parse_args(argv)
    try:
        config = create(PipelineConfig.from_dict(json.loads(args.config_json)), args.model_dir, args.python,
                        args.pythonpath, args.who)
    except PipelineError as exc:
        print(f"[labkit setup] FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(asdict(config)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
