"""`labkit cicd init --min-accuracy X` over a pipeline set up already changes production's threshold.

It is production's configuration, so labkit changes it with production's own
command line (``python -m production_server.cicd.config``), run where production
is: here over real SSH, as on a VM (test_cicd.py does the same on the local
backend, with pushes before and after). Before, a second init kept the old
threshold and said nothing.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from test_cicd_ssh import production_sshd, sides_for  # noqa: F401 - a fixture, used by name
from test_ssh import pytestmark as needs_sshd

import labkit
from labkit.cicd._pipeline import _set_up, _with_threshold
from labkit.notebook.progress import Progress
from production_server.contract import PipelineConfig

pytestmark = needs_sshd


def test_a_new_threshold_is_written_to_production_over_ssh(production_sshd, tmp_path, model_dir, data_dir,  # noqa: F811
                                                           capsys):
    sides = sides_for(production_sshd, tmp_path, model_dir, data_dir, production_sshd.host_public_key)
    config = PipelineConfig(name="ssh", deployment_id="test", url=sides.url, production=sides.production_root,
                            data_dir=sides.data_dir, min_accuracy=0.99)
    pipeline = labkit.cicd.Pipeline(_set_up(config, sides, "student", Progress(3, "set up", "off")), sides, "off")
    record = tmp_path / "labkit-side"
    record.mkdir()

    def on_production() -> float:
        text = pipeline.sides.production.run(["cat", sides.config_file]).stdout
        return json.loads(text)["min_accuracy"]

    assert on_production() == 0.99
    capsys.readouterr()
    changed = _with_threshold(pipeline, 0.5, record, "openstack", "lines")
    assert capsys.readouterr().out == ("[labkit] CI/CD of 'ssh': the gate's minimum accuracy is now 50.0% (was 99.0%), "
                                       "for every push to master from now on.\n")
    assert on_production() == 0.5 and changed.config.min_accuracy == 0.5
    # Nothing else of production's configuration changed, and labkit's own record follows it.
    assert changed.config == replace(config, min_accuracy=0.5)
    assert json.loads((record / "pipeline.json").read_text())["config"]["min_accuracy"] == 0.5
    # The same threshold again: nothing to say.
    _with_threshold(pipeline, 0.5, record, "openstack", "lines")
    assert capsys.readouterr().out == ""
    # A threshold production refuses comes back as labkit's error, with production's reason.
    with pytest.raises(labkit.CICDError, match=r"minimum accuracy failed on the production server .*between 0 and 1"):
        _with_threshold(pipeline, 1.5, record, "openstack", "lines")
    assert on_production() == 0.5
