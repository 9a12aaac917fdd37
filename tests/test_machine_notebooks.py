"""Notebooks 01 and 02 on the machine backend, as a student who chose `machine` in 00-setup runs them.

Notebook 01's VM is then a machine contextualized by cloud-init, whose own
apt, pip and RabbitMQ steps are what it times (Question 3's evidence, live);
notebook 02's is a docker-server machine running the Compose stack. Each
must show what it shows on the local backend, and leave nothing behind.
"""

from __future__ import annotations

import pytest
from test_notebooks import EXPECTED, REPO, notebook_env, run_and_check

# On the machine backend the VM's own steps are what notebook 01 times: Question 3's evidence, live.
ON_A_MACHINE = {
    "01-single-server.ipynb": [("times = labkit.step_times(lab)", "install system packages"),
                               ("times = labkit.step_times(lab)", "install Python packages")],
    "02-docker-scaling.ipynb": [("engines = labkit.compare_engines(", "local backend")],
}


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("name", list(ON_A_MACHINE))
def test_notebook_runs_on_the_machine_backend(name, tmp_path, model_dir, data_dir, machine_images, report):
    """As a student who chose `machine` in 00-setup: the notebook's VM is a machine contextualized by
    cloud-init (Task 2's a docker-server machine), and the notebook shows what it shows on `local`."""
    env = notebook_env(tmp_path, model_dir, data_dir, LABKIT_BACKEND="machine",
                       LABKIT_MACHINE_IMAGES=str(machine_images))
    run_and_check(REPO / "notebooks" / name, tmp_path / "home", env, EXPECTED[name] + ON_A_MACHINE[name], report,
                  where=" on the machine backend")
