"""Which tests may run at the same time when the suite runs on several workers (scripts/test.sh: pytest-xdist).

Each file's tests run together and in order on one worker (its module fixtures, such as a fleet of
network-namespace hosts, are made once), and the integration files that run stabilize.yml or start a supervisord
run one after another: stabilize finds the host's supervisord by itself (the one whose program runs the app, else
the only one that runs), so a supervisord another test started at the same time would be a second one here.
"""

import os

import pytest

# Integration test files (names, or their beginnings) that run one after another.
ONE_AT_A_TIME = ("test_stabilize", "test_supervisord", "test_diagnose_hostile_io.py",
                 "test_diagnose_runners_and_restarts.py", "test_diagnose_server_layers.py")
SUPERVISORD_FIXTURES = {"supervisord", "supervisords"}


def file_of(nodeid):
    return nodeid.split("::", 1)[0]


def one_at_a_time(nodeid):
    path = file_of(nodeid)
    return "integration" in path.split("/") and os.path.basename(path).startswith(ONE_AT_A_TIME)


def pytest_xdist_make_scheduler(config, log):
    """A file's tests as one unit of work, and all ONE_AT_A_TIME files as one (pytest-xdist's loadgroup would do it
    from marks, but pytest 9 no longer lets it tag the test ids it groups by)."""
    from xdist.scheduler import LoadScopeScheduling

    class OneFileAtATime(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return "one at a time" if one_at_a_time(nodeid) else file_of(nodeid)

    return OneFileAtATime(config, log)


def pytest_collection_modifyitems(config, items):
    """A file that starts a supervisord must be in ONE_AT_A_TIME: stop before anything runs when one is not."""
    for item in items:
        if SUPERVISORD_FIXTURES & set(getattr(item, "fixturenames", ())) and not one_at_a_time(item.nodeid):
            raise pytest.UsageError("%s starts a supervisord: add its file to ONE_AT_A_TIME in tests/conftest.py"
                                    % item.nodeid)
