"""Registration of the node health tests: ping, echo, dir_capacity (run by default, in that
order) and the site ``script`` test (only when named in SCR_NODE_TESTS).

Cheap to import: the test classes and the settings model are named as strings.
"""

from __future__ import annotations

from scr_core.hookspecs import NodeTestSpec, SettingsSectionSpec, hookimpl


@hookimpl
def scr_node_tests() -> list:
    return [
        NodeTestSpec(
            name="ping",
            description="ICMP ping from the batch node, in parallel, one retry "
                        "(skipped on the local backend: virtual nodes have no address)",
            backend="scr_plugins_nodetests.ping:PingTest",
            settings="nodetests", default=True, order=10,
            # cheap, bounded (ping -W), harmless to a running step: scr run's step watch
            in_step=True,
        ),
        NodeTestSpec(
            name="echo",
            description="'echo UP' on each node through the remote executor",
            backend="scr_plugins_nodetests.echo:EchoTest",
            settings="nodetests", default=True, order=20,
        ),
        NodeTestSpec(
            name="dir_capacity",
            description="control and cache dirs exist, are writable and large enough "
                        "(scr check-node on each node)",
            backend="scr_plugins_nodetests.dir_capacity:DirCapacityTest",
            settings="nodetests", default=True, order=30,
        ),
        NodeTestSpec(
            name="script",
            description="a site command run on each node (nodetests.script); non-zero or a "
                        "FAIL line marks the node down",
            backend="scr_plugins_nodetests.script:ScriptTest",
            settings="nodetests", default=False, order=40,
        ),
    ]


@hookimpl
def scr_settings_sections() -> list:
    return [SettingsSectionSpec(
        name="nodetests",
        description="node health tests (ping, echo, dir_capacity, script)",
        model="scr_plugins_nodetests.settings:NodeTestsSettings",
    )]
