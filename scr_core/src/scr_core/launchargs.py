"""Helpers for launcher plugins that rewrite the user's launcher arguments.

After a node failure the survivors may be fewer than the ``-N`` the user asked for (``srun
-N4`` in a 4-node allocation that lost one). ``scr run`` then asks the launcher to fit the
step to the nodes left (:meth:`scr_core.interfaces.Launcher.fit_to_nodes`); launchers with a
node-count option implement that with :func:`fit_node_count`.
"""

from __future__ import annotations

from typing import Collection, Sequence


def fit_node_count(
    args: Sequence[str],
    available: int,
    names: Collection[str] = ("-N", "--nodes"),
    takes_value: Collection[str] = (),
) -> tuple[list[str], int | None]:
    """Lower the node-count option among the launcher options of ``args`` to ``available``.

    Only options before the program are looked at: the program starts at ``--`` or at the
    first word that is neither an option nor the value of an option in ``takes_value`` (or
    ``names``). Handles ``-N 4``, ``-N4``, ``--nodes 4`` and ``--nodes=4``; a range such as
    ``--nodes=2-4`` is left alone. Returns the new arguments and the count that was replaced
    (``None`` when nothing changed).
    """
    out = list(args)
    valued = set(takes_value) | set(names)
    longs = [n for n in names if n.startswith("--")]
    shorts = [n for n in names if not n.startswith("--")]
    i = 0
    while i < len(out):
        a = out[i]
        if a == "--" or not a.startswith("-") or a == "-":
            break
        value_index = None
        if a in names and i + 1 < len(out):
            value_index, value = i + 1, out[i + 1]
            prefix = None
        else:
            prefix = next((n + "=" for n in longs if a.startswith(n + "=")), None) or \
                next((n for n in shorts if a.startswith(n) and len(a) > len(n)), None)
            value = a[len(prefix):] if prefix else None
        if value is not None and value.isdigit() and int(value) > available:
            new = str(max(available, 1))
            if value_index is not None:
                out[value_index] = new
            else:
                out[i] = prefix + new
            return out, int(value)
        if a in valued or (a.startswith("-") and not a.startswith("--") and a[:2] in valued
                           and len(a) == 2):
            i += 2
            continue
        i += 1
    return out, None
