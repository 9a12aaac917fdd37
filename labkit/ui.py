"""The lab's widgets, as the notebooks call them: ``from labkit import ui``.

    ui.setup_form()                     00-setup: the backend and the cloud, saved for every notebook
    ui.params("deploy", workers=2)      a step's few inputs, their defaults from the saved settings

They are made in ``labkit.notebook.widgets``; this is their public name, which the notebooks use.
"""

from .notebook.widgets import Params, SetupForm, params, setup_form

__all__ = ["Params", "SetupForm", "params", "setup_form"]
