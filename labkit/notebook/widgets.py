"""Widgets for the lab's notebooks.

Every input has a default, and an environment variable can override it, so
each notebook also runs headless from top to bottom (CI, nbval): later cells
read ``.value``, they never wait for a click. Callbacks write into a
message line of the form, never with ``print`` (nbval would record it), and
a password typed here stays in this kernel's memory only.
"""

from __future__ import annotations

import html
from dataclasses import replace
from typing import Callable

import ipywidgets as w

from .. import _config, _userconfig
from .._config import Settings
from .._errors import LabkitError
from . import checks
from .display import EMPTY, Sentence, Table


def available_backends() -> tuple[str, ...]:
    """The backends this host can run: the machine backend only with root and its tools."""
    from ..backends import NAMES
    from ..backends import machine as machines

    return tuple(b for b in NAMES if b != "machine" or not machines.missing())


def _cloud_fields() -> dict[str, tuple[str, str]]:
    """Saved variable -> (label, default); the defaults are the openstack backend's own."""
    from ..backends.openstack.backend import CloudSettings

    defaults = CloudSettings()
    return {_config.OS_IMAGE: ("Image", defaults.image), _config.OS_FLAVOR: ("Flavor", defaults.flavor),
            _config.OS_NETWORK: ("Network", defaults.network or ""),
            _config.OS_KEYPAIR: ("Key pair", defaults.keypair)}
STYLE = {"description_width": "110px"}


def _connect(cloud: str | None, password: str | None):
    from ..backends.openstack.cloud import OpenStackCloud

    return OpenStackCloud.connect(cloud, password=password or None)


class Choices(dict):
    """The saved variables by name; a notebook shows them as a table."""

    def _repr_html_(self) -> str:
        return Table(["variable", "value"], [[name, value or EMPTY] for name, value in self.items()]).html()


class SetupForm:
    """00-setup: the backend and, for OpenStack, the cloud and what to launch there.

    ``save()`` writes the choices (never the password) to labkit's settings
    file, which every later notebook and ``labkit`` command reads.
    """

    def __init__(self, connect: Callable[[str | None, str | None], object] = _connect) -> None:
        self._connect = connect
        env = _userconfig.environ()
        backend = env.get("LABKIT_BACKEND", "local")
        offered = available_backends()
        self.backend = w.Dropdown(options=offered, value=backend if backend in offered else "local",
                                  description="Backend", style=STYLE)
        clouds = self._cloud_names()
        chosen = env.get("OS_CLOUD")
        self.cloud = w.Dropdown(options=clouds or ["(no clouds.yaml found)"],
                                value=chosen if chosen in clouds else (clouds or ["(no clouds.yaml found)"])[0],
                                description="Cloud", style=STYLE)
        self.password = w.Password(description="Password", placeholder="only if clouds.yaml holds none",
                                   style=STYLE)
        self.fields = {
            name: w.Combobox(value=env.get(name, default), options=[env.get(name, default)] if env.get(name, default)
                             else [], description=label, ensure_option=False, style=STYLE)
            for name, (label, default) in _cloud_fields().items()
        }
        self.message = w.HTML()
        buttons = [("Load choices from the cloud", self.load_choices), ("Test", self.test),
                   ("Save", self.save)]
        self.buttons = [w.Button(description=label, layout=w.Layout(width="auto")) for label, _ in buttons]
        for button, (_, action) in zip(self.buttons, buttons):
            button.on_click(lambda _b, action=action: self._run(action))
        self.openstack_box = w.VBox([self.cloud, self.password, *self.fields.values(), self.buttons[0]])
        self.backend.observe(lambda _change: self._show_cloud_fields(), names="value")
        self._show_cloud_fields()
        self.widget = w.VBox([self.backend, self.openstack_box, w.HBox(self.buttons[1:]), self.message])

    # -- what the notebook calls ------------------------------------------------
    @property
    def value(self) -> "Choices":
        """The choices as the variables labkit reads (no password)."""
        values = Choices(LABKIT_BACKEND=self.backend.value)
        if self.backend.value == "openstack":
            if self.cloud.value in self._cloud_names():
                values["OS_CLOUD"] = self.cloud.value
            values.update({name: field.value.strip() for name, field in self.fields.items()})
        return values

    def save(self) -> Sentence:
        """Write the choices to labkit's settings file; returns the sentence that says where."""
        path = _userconfig.save(self.value)
        self._say(f"Saved to {html.escape(str(path))}. Every notebook and <code>labkit</code> command reads it; "
                  "environment variables still take precedence.", markup=True)
        return Sentence(f"Saved to {path}: every notebook and labkit command reads it from now on.")

    def test(self) -> Sentence:
        """Check what the chosen backend needs; returns the verdict in one line."""
        if self.backend.value == "openstack":
            who = self._cloud().check_credentials()
            verdict = (f"Logged in to {who.get('auth_url') or who.get('cloud')} as {who.get('username') or 'you'}, "
                       f"project {who.get('project_name') or who.get('project_id')}.")
        else:
            settings = replace(Settings.from_env(), backend=self.backend.value)
            problems = checks.check_environment(settings, docker=self.backend.value == "docker").problems
            if problems:
                raise LabkitError("; ".join(f"{c.what}: {c.detail} ({c.todo})" for c in problems))
            verdict = f"Everything the {self.backend.value} backend needs is here."
        self._say(verdict)
        return Sentence(verdict)

    def load_choices(self) -> dict[str, list[str]]:
        """Fill the image, flavor, network and key pair lists from the cloud itself."""
        choices = self._cloud().choices()
        for name, key in zip(_cloud_fields(), ("images", "flavors", "networks", "keypairs")):
            field = self.fields[name]
            field.options = tuple(choices.get(key, []))
            if choices.get(key) and field.value not in choices[key]:
                field.value = choices[key][0]
        self._say("Loaded: " + ", ".join(f"{len(v)} {k}" for k, v in choices.items()) + ".")
        return choices

    # -- plumbing ---------------------------------------------------------------
    def _cloud(self):
        cloud = self.cloud.value if self.cloud.value in self._cloud_names() else None
        return self._connect(cloud, self.password.value)

    @staticmethod
    def _cloud_names() -> list[str]:
        try:
            from openstack.config import loader
        except ImportError:
            return []
        try:
            return checks.cloud_names(loader.OpenStackConfig(load_envvars=True))
        except Exception:  # a broken clouds.yaml is reported by the Test button, not here
            return []

    def _show_cloud_fields(self) -> None:
        self.openstack_box.layout.display = "" if self.backend.value == "openstack" else "none"

    def _run(self, action: Callable[[], object]) -> None:
        try:
            action()
        except LabkitError as exc:
            self._say(str(exc), problem=True)

    def _say(self, text: str, problem: bool = False, markup: bool = False) -> None:
        colour = "#b00020" if problem else "#1b5e20"
        body = text if markup else html.escape(text)
        self.message.value = f"<span style='color:{colour}'>{body}</span>"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def _typed(default, raw: str):
    if isinstance(default, bool):
        return raw.strip().lower() in ("1", "true", "yes")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


class Params:
    """A few named inputs with defaults, e.g. ``ui.params("train", epochs=150, hidden="12,8")``.

    ``LABKIT_TRAIN_EPOCHS=5`` (the prefix upper-cased, then the name), in the
    environment or the settings file, overrides a default, which is how CI
    runs a notebook quickly.
    """

    def __init__(self, prefix: str, **defaults) -> None:
        self.prefix = prefix
        self.inputs: dict[str, w.Widget] = {}
        saved = _userconfig.environ()  # the settings file, overlaid by the environment, as Settings reads them
        for name, default in defaults.items():
            variable = f"LABKIT_{prefix}_{name}".upper()
            value = _typed(default, saved[variable]) if saved.get(variable) else default
            kind = (w.Checkbox if isinstance(value, bool) else w.IntText if isinstance(value, int)
                    else w.FloatText if isinstance(value, float) else w.Text)
            self.inputs[name] = kind(value=value, description=name.replace("_", " "), style=STYLE)
        self.widget = w.VBox(list(self.inputs.values()))

    @property
    def value(self) -> dict:
        return {name: field.value for name, field in self.inputs.items()}

    def __getitem__(self, name: str):
        return self.inputs[name].value

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def setup_form() -> SetupForm:
    return SetupForm()


def params(prefix: str, **defaults) -> Params:
    return Params(prefix, **defaults)
