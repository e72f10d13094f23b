"""Which tests may run at the same time when the suite runs on several workers (scripts/test.sh: pytest-xdist,
--dist loadgroup): each file's tests run together and in order on one worker (its module fixtures, such as a fleet
of network-namespace hosts, are made once), and the files that run stabilize.yml or start a supervisord run one
after another. Stabilize finds the host's supervisord by itself (the one whose program runs the app, else the only
one that runs), so a supervisord another test started at the same time would be a second one on this machine."""

import pytest

SUPERVISORD_FIXTURES = {"supervisord", "supervisords"}


def pytest_collection_modifyitems(config, items):
    shared = {item.path for item in items if "integration" in item.path.parts and (
        item.path.name.startswith(("test_stabilize", "test_supervisord"))
        or SUPERVISORD_FIXTURES & set(getattr(item, "fixturenames", ())))}
    for item in items:
        item.add_marker(pytest.mark.xdist_group("supervisords" if item.path in shared else str(item.path)))
