"""The entry-point cache (scr_core.entry_points): hits, invalidation, corruption, switch.

Distributions here are real ``*.dist-info`` directories in a scratch path entry, read by the
real importlib.metadata; the scan is counted by wrapping :func:`entry_points.scan`. A real
``pip install``/``pip uninstall`` with the cache on is in test_third_party_plugin.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from scr_core.plugins import Registry

from scr_core import entry_points as ep_mod

GROUP = "scr.plugins"


def make_dist(site, name, version="1.0", plugins=None):
    d = site / f"{name.replace('-', '_')}-{version}.dist-info"
    d.mkdir()
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if plugins:
        lines = "".join(f"{k} = {v}\n" for k, v in plugins.items())
        (d / "entry_points.txt").write_text(f"[{GROUP}]\n{lines}")
    return d


@pytest.fixture
def site(tmp_path):
    s = tmp_path / "site"
    s.mkdir()
    make_dist(s, "alpha-scr", plugins={"alpha": "alpha_scr.plugin"})
    make_dist(s, "unrelated", plugins=None)
    return s


@pytest.fixture
def env(tmp_path):
    return {"XDG_CACHE_HOME": str(tmp_path / "cache"), "HOME": str(tmp_path / "home")}


@pytest.fixture
def scans(monkeypatch):
    calls = []
    real = ep_mod.scan

    def counting(group, path=None):
        calls.append(group)
        return real(group, path)

    monkeypatch.setattr(ep_mod, "scan", counting)
    return calls


def names(eps):
    return sorted(e[0] for e in eps)


def test_second_call_is_a_hit(site, env, scans):
    first = ep_mod.entry_points(GROUP, env, path=[str(site)])
    assert first == [("alpha", "alpha_scr.plugin", "alpha-scr", "1.0")]
    file = ep_mod.cache_file(env)
    assert file.startswith(env["XDG_CACHE_HOME"] + "/scr/") and os.path.isfile(file)
    assert ep_mod.entry_points(GROUP, env, path=[str(site)]) == first
    assert len(scans) == 1
    assert not [n for n in os.listdir(os.path.dirname(file)) if n.endswith(".tmp")]


def test_default_location_is_home_cache(site, tmp_path):
    env = {"HOME": str(tmp_path / "h")}
    ep_mod.entry_points(GROUP, env, path=[str(site)])
    assert os.path.dirname(ep_mod.cache_file(env)) == str(tmp_path / "h" / ".cache" / "scr")
    assert os.listdir(tmp_path / "h" / ".cache" / "scr")


def test_install_and_uninstall_invalidate(site, env, scans):
    assert names(ep_mod.entry_points(GROUP, env, path=[str(site)])) == ["alpha"]
    beta = make_dist(site, "beta-scr", plugins={"beta": "beta_scr.plugin"})
    assert names(ep_mod.entry_points(GROUP, env, path=[str(site)])) == ["alpha", "beta"]
    import shutil

    shutil.rmtree(beta)
    assert names(ep_mod.entry_points(GROUP, env, path=[str(site)])) == ["alpha"]
    assert len(scans) == 3
    ep_mod.entry_points(GROUP, env, path=[str(site)])
    assert len(scans) == 3  # and then a hit again


def test_rewritten_entry_points_file_invalidates(site, env, scans):
    ep_mod.entry_points(GROUP, env, path=[str(site)])
    ep_file = site / "alpha_scr-1.0.dist-info" / "entry_points.txt"
    ep_file.write_text(f"[{GROUP}]\nalpha = alpha_scr.plugin2\n")  # an editable re-install
    st = ep_file.stat()
    os.utime(ep_file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a later mtime, surely
    assert ep_mod.entry_points(GROUP, env, path=[str(site)])[0][1] == "alpha_scr.plugin2"
    assert len(scans) == 2


def test_other_path_or_group_is_a_miss(site, env, tmp_path, scans):
    ep_mod.entry_points(GROUP, env, path=[str(site)])
    other = tmp_path / "other"
    other.mkdir()
    assert ep_mod.entry_points(GROUP, env, path=[str(other)]) == []
    assert ep_mod.entry_points("other.group", env, path=[str(site)]) == []
    assert len(scans) == 3


def test_several_paths_are_remembered(site, env, tmp_path, scans):
    """scr and python -m scr_core from several directories: no eviction of each other."""
    paths = []
    for i in range(ep_mod.MAX_ENTRIES):
        cwd = tmp_path / f"cwd{i}"
        cwd.mkdir()
        paths.append([str(cwd), str(site)])
    for path in paths * 2:
        assert names(ep_mod.entry_points(GROUP, env, path=path)) == ["alpha"]
    assert len(scans) == ep_mod.MAX_ENTRIES
    extra = tmp_path / "one-more"
    extra.mkdir()
    ep_mod.entry_points(GROUP, env, path=[str(extra), str(site)])  # evicts the oldest
    ep_mod.entry_points(GROUP, env, path=paths[-1])
    assert len(scans) == ep_mod.MAX_ENTRIES + 1
    ep_mod.entry_points(GROUP, env, path=paths[0])
    assert len(scans) == ep_mod.MAX_ENTRIES + 2


@pytest.mark.parametrize("garbage", [b"", b"\x00garbage", b"not marshal at all" * 10, None])
def test_corrupt_cache_file_is_ignored_and_rewritten(site, env, scans, garbage):
    expected = ep_mod.entry_points(GROUP, env, path=[str(site)])
    file = ep_mod.cache_file(env)
    if garbage is None:  # valid marshal, wrong shape
        import marshal

        garbage = marshal.dumps((ep_mod.FORMAT, [(ep_mod.cache_key(GROUP, [str(site)]), [1])]))
    with open(file, "wb") as fh:
        fh.write(garbage)
    assert ep_mod.entry_points(GROUP, env, path=[str(site)]) == expected
    assert len(scans) == 2
    assert ep_mod.entry_points(GROUP, env, path=[str(site)]) == expected
    assert len(scans) == 2  # rewritten: a hit again


def test_unwritable_cache_dir_still_works(site, tmp_path, scans):
    blocker = tmp_path / "file"
    blocker.write_text("")  # XDG_CACHE_HOME is a file: the cache cannot be written
    env = {"XDG_CACHE_HOME": str(blocker)}
    assert names(ep_mod.entry_points(GROUP, env, path=[str(site)])) == ["alpha"]
    assert names(ep_mod.entry_points(GROUP, env, path=[str(site)])) == ["alpha"]
    assert len(scans) == 2


@pytest.mark.parametrize("value", ["0", "no", "off", "false"])
def test_disabled_by_environment(site, env, scans, value):
    env = dict(env, SCR_PLUGINS_CACHE=value)
    for _ in range(2):
        assert names(ep_mod.entry_points(GROUP, env, path=[str(site)])) == ["alpha"]
    assert len(scans) == 2
    assert not os.path.exists(ep_mod.cache_file(env))


def test_registry_uses_the_cache(env, scans, monkeypatch):
    """The real sys.path: the built-in plugins are found, the second Registry hits."""
    monkeypatch.delenv("SCR_PLUGINS_CACHE", raising=False)
    first = Registry(environ=env)
    second = Registry(environ=env)
    assert {"local", "core-remote"} <= set(first.plugins)
    assert list(first.plugins) == list(second.plugins)
    assert len(scans) == 1
    Registry(environ=dict(env, SCR_PLUGINS_CACHE="0"))
    assert len(scans) == 2


def test_scr_plugins_through_the_cache_matches_a_scan(tmp_path):
    """The console script with a cold cache, a warm one, and none: the same listing."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.pop("SCR_PLUGINS_CACHE", None)
    scr = os.path.join(os.path.dirname(sys.executable), "scr")

    def listing(extra):
        r = subprocess.run([scr, "plugins", "--json"], env=dict(env, **extra),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    cold = listing({})
    assert os.listdir(tmp_path / "cache" / "scr")
    assert listing({}) == cold
    assert listing({"SCR_PLUGINS_CACHE": "0"}) == cold
