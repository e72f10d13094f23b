"""Run ansible-playbook with cProfile in the controller's main process and in every worker it forks.

    .venv/bin/python benchmarks/profile_controller.py OUT_DIR .venv/bin/ansible-playbook -i INVENTORY PLAYBOOK ...
    .venv/bin/python benchmarks/profile_controller.py --show OUT_DIR [N]

Writes OUT_DIR/main.prof (the strategy's loop, the callbacks, the results) and OUT_DIR/ACTION-PID.prof for each
task a worker ran (ACTION: the task's action, e.g. probe, report, set_fact). --show prints, per kind, how many
profiles, their total CPU time and the N functions with the most cumulative time (default 12): the
controller's cost per host and per task, which `python -m cProfile` alone cannot see (the workers are forked).
audit_bench.py --profile DIR runs every playbook through this.
"""

import cProfile
import glob
import os
import pstats
import runpy
import sys
import time


def profile(out, argv):
    from ansible.executor.process import worker

    original = worker.WorkerProcess._run

    def _run(self):
        prof = cProfile.Profile(time.process_time)    # CPU, not waits; replaces the main process's profiler the fork inherited
        prof.enable()
        try:
            return original(self)
        finally:
            prof.disable()
            prof.dump_stats(os.path.join(out, "%s-%d.prof" % (self._task.action.split(".")[-1], os.getpid())))

    worker.WorkerProcess._run = _run
    os.makedirs(out, exist_ok=True)
    main = cProfile.Profile(time.process_time)
    sys.argv = argv
    main.enable()
    try:
        runpy.run_path(argv[0], run_name="__main__")
    finally:
        main.disable()
        main.dump_stats(os.path.join(out, "main.prof"))


def show(out, top):
    kinds = {}
    for path in sorted(glob.glob(os.path.join(out, "*.prof"))):
        kinds.setdefault(os.path.basename(path).rsplit("-", 1)[0].replace(".prof", ""), []).append(path)
    for kind, paths in sorted(kinds.items()):
        stats = pstats.Stats(*paths)
        each = 1000 * stats.total_tt / len(paths)
        print("== %s: %d profile(s), %.2f s CPU in all, %.1f ms each" % (kind, len(paths), stats.total_tt, each))
        stats.sort_stats("cumulative").print_stats(top)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--show":
        show(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 12)
    elif len(sys.argv) >= 3:
        profile(sys.argv[1], sys.argv[2:])
    else:
        sys.exit(__doc__)
