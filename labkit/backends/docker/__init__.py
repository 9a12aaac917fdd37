"""The docker backend (Task 2): the server as a Compose project wherever a Docker engine answers.

    backend.py  ``DockerBackend``: stage the project, ``compose up``, scale the workers

The Compose command lines themselves live in ``labkit.infra.compose``: a VM's
Task 2 stack runs the same ones over SSH.
"""
