"""Settings of scr itself and of its plugins: a YAML file with one section per plugin.

SCR's own ``SCR_*`` parameters keep SCR's files and syntax (:mod:`scr_core.params`); this file
is for what SCR never had: which backend to use and each plugin's options::

    core:
      resource_manager: slurm      # else auto-detected
      remote_exec: clustershell
    local:
      nodes: "8"
    slurm:
      prerun_hostname: false

Files, lowest precedence first: ``/etc/scr/settings.yaml``, ``$XDG_CONFIG_HOME/scr/settings.yaml``
(``~/.config/...``), then ``$SCR_SETTINGS_FILE``. A field may also name an environment variable
(``json_schema_extra={"env": ...}``), which wins over every file. Plugins declare sections
through the ``scr_settings_sections`` hook, as pydantic models whose field descriptions are the
help text (``scr config template`` prints them as a commented file). Files are only parsed if
they exist, and pydantic is only imported when a section is used: start-up time matters.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

from .errors import ConfigError, PluginError

SETTINGS_FILE_ENV = "SCR_SETTINGS_FILE"
SYSTEM_FILE = "/etc/scr/settings.yaml"


def default_files(environ: Mapping[str, str]) -> list[str]:
    xdg = environ.get("XDG_CONFIG_HOME") or os.path.join(
        environ.get("HOME", os.path.expanduser("~")), ".config")
    files = [SYSTEM_FILE, os.path.join(xdg, "scr", "settings.yaml")]
    if environ.get(SETTINGS_FILE_ENV):
        files.append(environ[SETTINGS_FILE_ENV])
    return files


def core_settings_model() -> type:
    from pydantic import BaseModel, Field

    class CoreSettings(BaseModel):
        resource_manager: Optional[str] = Field(
            None, description="resource manager to use (else detected); env SCR_RESOURCE_MANAGER")
        launcher: Optional[str] = Field(
            None, description="launcher when scr run is given none; env SCR_LAUNCHER")
        remote_exec: Optional[str] = Field(
            None, description="remote execution method (else detected); env SCR_REMOTE_EXEC")
        remote_fanout: int = Field(64, description="nodes contacted at once by remote exec")
        remote_timeout: float = Field(60.0, description="seconds before a node is timed out")

    return CoreSettings


def _load_yaml(path: str) -> tuple[dict, dict]:
    """(data, {(section, key): line}) of one settings file."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte {exc.object[exc.start]:#04x} "
                          f"at offset {exc.start})") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from exc
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    lines: dict = {}
    for key_node, value_node in getattr(node, "value", []):
        section = key_node.value
        lines[(section, None)] = key_node.start_mark.line + 1
        if not isinstance(data.get(section), (dict, type(None))):
            raise ConfigError(f"{path}:{lines[(section, None)]}: section '{section}' "
                              "must be a mapping")
        if isinstance(value_node, yaml.MappingNode):
            for k, _v in value_node.value:
                if hasattr(k, "value"):
                    lines[(section, k.value)] = k.start_mark.line + 1
    return data, lines


class Settings:
    """Merged settings of all files, validated per section on first use."""

    def __init__(
        self,
        sections: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        files: list[str] | None = None,
    ) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self.files = default_files(self.environ) if files is None else files
        #: section name -> SettingsSectionSpec-like (with .load(), .description)
        self.specs = dict(sections or {})
        self.raw: dict[str, dict[str, Any]] = {}
        self.sources: dict[tuple[str, str], str] = {}
        self._models: dict[str, Any] = {}
        for path in self.files:
            if not os.path.exists(path):
                if path == self.environ.get(SETTINGS_FILE_ENV):
                    raise ConfigError(f"settings file {path} (from {SETTINGS_FILE_ENV}) "
                                      "does not exist")
                continue
            data, lines = _load_yaml(path)
            for section, values in data.items():
                for key, value in (values or {}).items():
                    self.raw.setdefault(str(section), {})[str(key)] = value
                    line = lines.get((section, key))
                    self.sources[(str(section), str(key))] = f"{path}:{line}" if line else path

    def _model_class(self, name: str) -> type:
        if name == "core":
            return core_settings_model()
        if name not in self.specs:
            raise ConfigError(f"unknown settings section '{name}'; known: "
                              f"{', '.join(['core', *sorted(self.specs)])}")
        try:
            return self.specs[name].load()
        except Exception as exc:  # a plugin's "module:Model" that does not import
            raise PluginError(f"settings section '{name}': cannot load its model "
                              f"{getattr(self.specs[name], 'model', '?')!r}: "
                              f"{type(exc).__name__}: {exc}") from exc

    def section(self, name: str) -> Any:
        """The validated settings of a section (defaults where nothing is set)."""
        if name in self._models:
            return self._models[name]
        model = self._model_class(name)
        values = dict(self.raw.get(name, {}))
        fields = model.model_fields
        for key in values:
            if key not in fields:
                where = self.sources.get((name, key), "settings")
                raise ConfigError(f"{where}: unknown setting '{name}.{key}'; known: "
                                  f"{', '.join(fields)}")
        for fname, field in fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            env_name = extra.get("env")
            if env_name and self.environ.get(env_name) not in (None, ""):
                values[fname] = self.environ[env_name]
                self.sources[(name, fname)] = f"env {env_name}"
        from pydantic import ValidationError

        try:
            obj = model(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = str(err["loc"][0]) if err.get("loc") else "?"
            where = self.sources.get((name, key), "settings")
            raise ConfigError(f"{where}: {name}.{key}: {err['msg']}") from exc
        self._models[name] = obj
        return obj

    def get_raw(self, section: str, key: str) -> Any:
        """A value straight from the files (no validation, no pydantic import)."""
        return self.raw.get(section, {}).get(key)

    def describe(self) -> list[tuple[str, str, Any, str, str]]:
        """(section, key, value, source, description) of every known setting."""
        rows = []
        for name in ["core", *sorted(self.specs)]:
            obj = self.section(name)
            for fname, field in type(obj).model_fields.items():
                src = self.sources.get((name, fname), "default")
                rows.append((name, fname, getattr(obj, fname), src, field.description or ""))
        for name in sorted(set(self.raw) - set(self.specs) - {"core"}):
            for key, value in self.raw[name].items():
                rows.append((name, key, value, self.sources.get((name, key), "?"),
                             "(section of a plugin that is not installed or not loaded)"))
        return rows

    def template(self) -> str:
        """A commented settings file with every section, default and help text."""
        lines = ["# scr settings file (YAML). Copy to ~/.config/scr/settings.yaml,",
                 f"# /etc/scr/settings.yaml, or point {SETTINGS_FILE_ENV} at it.", ""]
        for name in ["core", *sorted(self.specs)]:
            model = self._model_class(name)
            desc = "scr itself" if name == "core" else self.specs[name].description
            lines.append(f"# {desc}")
            lines.append(f"#{name}:")
            for fname, field in model.model_fields.items():
                # default_factory fields (lists, dicts) have no .default: call the factory
                default = field.get_default(call_default_factory=True)
                extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) \
                    else {}
                help_text = field.description or ""
                if extra.get("env"):
                    help_text += f" (env {extra['env']})"
                lines.append(f"#  # {help_text}")
                import json

                # JSON is YAML flow syntax: strings quoted, lists/dicts inline, null/true/false
                shown = json.dumps(default, default=str)
                lines.append(f"#  {fname}: {shown}")
            lines.append("")
        return "\n".join(lines)
