from scr_core.launchargs import fit_node_count


def test_forms_and_program_boundary():
    assert fit_node_count(["-N", "4", "./app", "-N", "9"], 3) == (["-N", "3", "./app", "-N",
                                                                   "9"], 4)
    assert fit_node_count(["-N4", "./app"], 3) == (["-N3", "./app"], 4)
    assert fit_node_count(["--nodes=4", "-n", "8", "app"], 2) == (["--nodes=2", "-n", "8",
                                                                   "app"], 4)
    assert fit_node_count(["--nodes", "4", "app"], 3)[0] == ["--nodes", "3", "app"]
    # enough nodes, a range, or the option only after the program: unchanged
    assert fit_node_count(["-N", "2", "app"], 3) == (["-N", "2", "app"], None)
    assert fit_node_count(["--nodes=2-4", "app"], 1) == (["--nodes=2-4", "app"], None)
    assert fit_node_count(["-n", "4", "app", "-N", "9"], 3, takes_value={"-n"})[1] is None
    assert fit_node_count(["--", "-N", "9"], 3)[1] is None
