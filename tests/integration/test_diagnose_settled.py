"""A settled, healthy service costs the probe no dry import - unless its code changed since its workers booted."""

import os
import time

import psutil

from doctor_run import cause, cause_ids, diagnose, layer
from test_diagnose_server_layers import base_vars, healthy_service

WINDOW = 1


def check(report, layer_name, name):
    return next(c for c in layer(report, layer_name)["checks"] if c["name"] == name)


def settle(service):
    """Until every process of the service is older than the window (a settled service)."""
    procs = [psutil.Process(service.pid)] + psutil.Process(service.pid).children()
    time.sleep(max(0.0, max(p.create_time() for p in procs) + WINDOW + 0.2 - time.time()))


def test_a_settled_healthy_service_is_not_imported_again(services, tmp_path, port):
    service = healthy_service(services, tmp_path, port)
    settle(service)
    report = diagnose(tmp_path, base_vars(service, tmp_path, doctor_stability_window=WINDOW))[0]
    assert report["verdict"] == "healthy", report["causes"]
    dry = check(report, "boot", "dry import")
    assert dry["status"] == "skip", dry
    assert dry["detail"].startswith("not needed: a settled service: /healthz answered a stable 200 from workers that "
                                    "imported the code on disk (no source file of AgentLocator.main changed"), dry
    assert "master %d started" % service.pid in dry["detail"]
    assert "dry_import" not in report["timings"], report["timings"]
    assert layer(report, "boot")["status"] == "pass"


def test_a_deploy_the_workers_have_not_loaded_yet_is_imported(services, tmp_path, port):
    """The code on disk changed after the workers booted (a deploy waiting for its restart): the dry import is the
    only evidence that the next restart fails, and it runs."""
    service = healthy_service(services, tmp_path, port)
    settle(service)
    main = os.path.join(service.app_dir, "AgentLocator", "main.py")
    with open(main, "a") as f:
        f.write("\nraise RuntimeError('the new release cannot reach its database')\n")
    report = diagnose(tmp_path, base_vars(service, tmp_path, doctor_stability_window=WINDOW))[0]
    assert layer(report, "healthz")["status"] == "pass"   # the running workers still serve the old code
    assert "boot_exception" in cause_ids(report), report["causes"]
    assert "the new release cannot reach its database" in " ".join(cause(report, "boot_exception")["evidence"])
    assert report["timings"]["dry_import"] > 0
