"""Following a VM's console (labkit/infra/console.py), on console logs as real cloud-init writes them.

The lines are copied from the machine backend's real boots (cloud-init 22.4 on Debian 12).
"""

from __future__ import annotations

import pytest

from labkit import DeployError
from labkit.infra.console import follow
from labkit.notebook.progress import Progress

STEP = "[  945.52] cloud-init[119]: [labkit] step {k}/3: {what} ({s}s)"
TABLE = "ci-info: | ssh-ed25519 | 8d:2a:69:1a:7b:b5 |    -    | labkit-deployment |"


def logs(*texts: str):
    """A console that shows each text in turn (and the last one from then on), as one that grows does."""
    shown = list(texts)
    return lambda: shown.pop(0) if len(shown) > 1 else shown[0]


def test_the_vms_steps_are_recorded_after_labkits_own_as_they_appear():
    progress = Progress(2, "test", "off")
    with progress.step("launch"):
        pass
    first = STEP.format(k=1, what="install system packages", s="35.0")
    rest = "\n".join([first, STEP.format(k=2, what="configure RabbitMQ", s="5.8"),
                      STEP.format(k=3, what="wait for the server to answer", s="4.6")])
    steps = follow(logs("", first, rest), progress, timeout=10, poll=0)
    assert [s.what for s in steps] == ["install system packages", "configure RabbitMQ", "wait for the server to answer"]
    assert [(s.index, s.total, s.what) for s in progress.done] == [
        (1, 2, "launch"), (2, 5, "VM: install system packages"), (3, 5, "VM: configure RabbitMQ"),
        (4, 5, "VM: wait for the server to answer")]


def test_a_failed_step_says_which_with_its_own_output_not_cloud_inits_tables():
    log = "\n".join([STEP.format(k=1, what="install system packages", s="35.0"),
                     "[  986.12] cloud-init[119]: Error: unable to perform an operation on node 'rabbit@labkit-dbg'.",
                     "[  986.13] cloud-init[119]: [labkit] step 2/3: configure RabbitMQ FAILED (exit 69 after 4.9s)",
                     TABLE, "-----BEGIN SSH HOST KEY KEYS-----", "ssh-ed25519 AAAAC3Nza root@labkit-dbg"])
    with pytest.raises(DeployError) as raised:
        follow(logs(log), Progress(1, "test", "off"), timeout=10, poll=0)
    message = str(raised.value)
    assert "step 2/3 (configure RabbitMQ) failed: exit 69 after 4.9s" in message
    assert "unable to perform an operation on node" in message
    assert "ci-info" not in message and "AAAAC3Nza" not in message


def test_a_module_that_failed_before_any_step_ends_the_wait_at_once():
    # A runcmd that cloud-init could not turn into a script: no marker is ever printed.
    log = ("[ 570.1] cloud-init[119]: 2026-12-01 12:14:49,926 - util.py[WARNING]: Running module runcmd "
           "(<module 'cloudinit.config.cc_runcmd' from '/usr/lib/python3/dist-packages/cloudinit/config/cc_runcmd.py'>) failed")
    with pytest.raises(DeployError, match="cloud-init's module runcmd failed"):
        follow(logs(log), Progress(1, "test", "off"), timeout=10, poll=0)


def test_cloud_init_done_without_the_last_step_ends_the_wait_at_once():
    log = "\n".join([STEP.format(k=1, what="install system packages", s="35.0"),
                     "[ 883.16] cloud-init[119]: [labkit] m1: cloud-init 22.4.2 has run the user-data (the step markers above say how it went)"])
    with pytest.raises(DeployError, match="step 2 never reported"):
        follow(logs(log), Progress(1, "test", "off"), timeout=10, poll=0)


def test_a_machine_that_stopped_ends_the_wait_at_once():
    with pytest.raises(DeployError, match="stopped before its steps were done"):
        follow(logs(STEP.format(k=1, what="install system packages", s="35.0")), Progress(1, "test", "off"),
               timeout=10, poll=0, alive=lambda: False)


def test_host_keys_are_read_from_the_block_cloud_init_prints():
    from labkit.infra.console import host_keys, wait_for_host_keys

    block = "\n".join(["[ 883.1] cloud-init[119]: [labkit] step 3/3: wait for the server to answer (4.6s)",
                       "-----BEGIN SSH HOST KEY KEYS-----",
                       "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY= root@labkit-m1",
                       "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHFTb7vH root@labkit-m1",
                       "-----END SSH HOST KEY KEYS-----"])
    assert host_keys(block) == ["ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY=",
                                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHFTb7vH"]
    assert host_keys(block.split("-----BEGIN")[0]) == []
    # Printed a moment after the last marker: waited for, not missed.
    assert wait_for_host_keys(logs(block.split("-----BEGIN")[0], block), timeout=5, poll=0) == host_keys(block)
