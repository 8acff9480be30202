"""The command line's outcome checks shared by test files (``run`` itself is a fixture in conftest.py)."""


def one_line_error(result, *needles):
    """``result`` (a ``run`` fixture's (code, stdout, stderr)) is a usage error: exit 2 and one ``error:`` line
    holding every one of ``needles``."""
    code, _, err = result
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, lines)
    for n in needles:
        assert n in lines[0], lines[0]
