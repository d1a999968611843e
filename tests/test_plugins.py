"""Discovery, isolation and selection of plugins (scr_core.plugins), in-process."""

from __future__ import annotations

import sys
import types

import pytest
from scr_core.errors import PluginError
from scr_core.hookspecs import LauncherSpec, ResourceManagerSpec, hookimpl
from scr_core.plugins import Registry


def make_plugin(name: str, rms=(), launchers=(), raise_in_hook: bool = False):
    mod = types.ModuleType(f"fake_plugin_{name}")

    @hookimpl
    def scr_resource_managers():
        if raise_in_hook:
            raise RuntimeError("boom in hook")
        return list(rms)

    @hookimpl
    def scr_launchers():
        return list(launchers)

    mod.scr_resource_managers = scr_resource_managers
    mod.scr_launchers = scr_launchers
    sys.modules[mod.__name__] = mod
    return mod


def rm(name, env_var=None, priority=0):
    return ResourceManagerSpec(
        name=name, description=f"{name} rm", backend="scr_core.local.backend:LocalResourceManager",
        detect=(lambda env, v=env_var: bool(v and env.get(v))) if env_var else None,
        priority=priority)


def registry(*plugins, environ=None, warn=None):
    eps = [(p.__name__, p.__name__, f"dist-{p.__name__}", "1.0") for p in plugins]
    # the built-in local plugin is always there
    eps.insert(0, ("local", "scr_core.local.plugin", "scr-core", "0.1.0"))
    return Registry(environ=environ or {}, entry_points=eps, warn=warn)


def test_nothing_detected_selects_local():
    reg = registry(make_plugin("a", rms=[rm("alpha", "ALPHA_JOB")]))
    assert reg.select("resource_manager").spec.name == "local"


def test_detect_and_priority():
    p = make_plugin("b", rms=[rm("low", "JOB", 1), rm("high", "JOB", 5)])
    reg = registry(p, environ={"JOB": "1"})
    assert reg.select("resource_manager").spec.name == "high"


def test_tie_is_an_error_listing_candidates():
    p = make_plugin("c", rms=[rm("one", "JOB", 3), rm("two", "JOB", 3)])
    reg = registry(p, environ={"JOB": "1"})
    with pytest.raises(PluginError, match=r"one \(plugin fake_plugin_c\).*two"):
        reg.select("resource_manager")


def test_explicit_choice_precedence_and_validation():
    p = make_plugin("d", rms=[rm("alpha", "JOB", 9), rm("beta")])
    env = {"JOB": "1", "SCR_RESOURCE_MANAGER": "beta"}
    reg = registry(p, environ=env)
    # CLI > env > settings > detection
    assert reg.select("resource_manager", "local").spec.name == "local"
    assert reg.select("resource_manager").spec.name == "beta"
    reg2 = registry(p, environ={"JOB": "1"})
    assert reg2.select("resource_manager", setting="beta").spec.name == "beta"
    with pytest.raises(PluginError, match=r"unknown resource manager 'gamma'.*available: "
                                          r"alpha, beta, local"):
        reg2.select("resource_manager", "gamma")
    # SCR's configure-time names: upper case, NONE
    assert reg2.select("resource_manager", "NONE").spec.name == "local"
    assert reg2.select("resource_manager", "BETA").spec.name == "beta"


def test_duplicate_backend_names_are_an_error():
    p1 = make_plugin("e1", rms=[rm("same")])
    p2 = make_plugin("e2", rms=[rm("same")])
    reg = registry(p1, p2)
    with pytest.raises(PluginError, match="duplicate resource manager 'same'"):
        reg.specs("resource_manager")


def test_duplicate_plugin_names_are_an_error():
    eps = [("x", "scr_core.local.plugin", "dist-one", "1"),
           ("x", "scr_core.local.plugin", "dist-two", "1")]
    with pytest.raises(PluginError, match="duplicate plugin name 'x'"):
        Registry(environ={}, entry_points=eps)


def test_import_failure_is_isolated_and_strict_makes_it_fatal():
    warnings = []
    eps = [("local", "scr_core.local.plugin", "scr-core", "0"),
           ("broken", "no_such_module_for_scr_test", "broken-dist", "9")]
    reg = Registry(environ={}, entry_points=eps, warn=warnings.append)
    assert reg.plugins["broken"].error.startswith("failed to load: ModuleNotFoundError")
    assert "broken" in warnings[0] and "broken-dist" in warnings[0]
    assert reg.select("launcher").spec.name == "local"  # the others still work
    with pytest.raises(PluginError, match="SCR_PLUGINS_STRICT"):
        Registry(environ={"SCR_PLUGINS_STRICT": "1"}, entry_points=eps)


def test_hook_raising_is_isolated():
    warnings = []
    bad = make_plugin("f", rms=[rm("never")], raise_in_hook=True)
    good = make_plugin("g", rms=[rm("fine")])
    reg = registry(bad, good, warn=warnings.append)
    assert "fine" in reg.specs("resource_manager")
    assert "never" not in reg.specs("resource_manager")
    assert "boom in hook" in reg.plugins[bad.__name__].error


def test_block_list():
    p = make_plugin("h", rms=[rm("blocked_rm")])
    reg = registry(p, environ={"SCR_PLUGINS_BLOCK": f"{p.__name__}, other"})
    assert reg.plugins[p.__name__].blocked
    assert "blocked_rm" not in reg.specs("resource_manager")


def test_launcher_for_command():
    spec = LauncherSpec(name="mylaunch", description="d",
                        backend="scr_core.local.backend:LocalLauncher", commands=("mpiexec",))
    reg = registry(make_plugin("i", launchers=[spec]))
    assert reg.launcher_for_command("mpiexec").spec.name == "mylaunch"
    assert reg.launcher_for_command("local").spec.name == "local"
    with pytest.raises(PluginError, match="no launcher plugin handles 'aprun'"):
        reg.launcher_for_command("aprun")


def test_wrong_record_type_is_reported():
    warnings = []
    mod = types.ModuleType("fake_plugin_wrongtype")

    @hookimpl
    def scr_resource_managers():
        return ["not a record"]

    mod.scr_resource_managers = scr_resource_managers
    sys.modules[mod.__name__] = mod
    reg = registry(mod, warn=warnings.append)
    assert reg.specs("resource_manager").keys() == {"local"}
    assert "expected ResourceManagerSpec" in reg.plugins[mod.__name__].error
