"""The production server's side of CI/CD: what its git hooks run.

Everything here runs on the production server (a VM, or the student's own
machine with the local backend), as git's child or over SSH, with nothing but
the standard library and the production server's own packages: labkit itself
is not installed there.

    setup.py    a bare repository whose first commit is the model served now,
                release 1, the hooks, and cicd.json (``python -m production_server.cicd.setup``)
    hooks.py    pre-receive (the gate), post-receive (the rollout), and the
                ``init`` and ``rollback`` commands labkit runs
    gate.py     may this model go live? (in a process of its own)
    rollout.py  switch the serving pointer, then see every worker serve the release
    config.py   cicd.json, what the hooks need to know
"""


from ..contract import PipelineError as PipelineError  # the hooks' error, declared where labkit sees it too
