"""The catalogue's one shared run: every catalogued bug trained once per session next to the
textbook, the outcomes kept for the tests and printed in pytest's terminal summary, so CI's
log shows every bug's diagnosis, the rates and each miss, pass or fail."""

from __future__ import annotations

import pytest

from tests.bug_catalogue import scoring
from tests.bug_catalogue.bugs import CATALOGUE

OUTCOMES = pytest.StashKey[list[scoring.Outcome]]()


@pytest.fixture(scope="session")
def outcomes(request: pytest.FixtureRequest) -> list[scoring.Outcome]:
    found = [scoring.run_bug(bug) for bug in CATALOGUE]
    request.config.stash[OUTCOMES] = found
    return found


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    found = config.stash.get(OUTCOMES, None)
    if found is None:
        return
    terminalreporter.write_sep("=", "bug catalogue: diagnosis of every catalogued bug")
    for line in scoring.report(found):
        terminalreporter.write_line(line)
