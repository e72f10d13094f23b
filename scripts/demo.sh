#!/usr/bin/env bash
# The main job on this machine: set everything up, start the bundled demo voice app under gunicorn
# (a standalone pidfile runner), and diagnose it with playbooks/diagnose.yml.
# Stop the demo with: kill "$(cat demo-run/gunicorn.pid)"
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/bootstrap.sh

run="$root/demo-run"
port=${PORT:-8000}
mkdir -p "$run"
# No PUBLIC_BASE_URL: the demo has no public name, so the external layer says how to enable it.
cat > "$run/agentlocator.env" <<ENV
PORT=$port
ENV
pid=$(cat "$run/gunicorn.pid" 2>/dev/null || true)
if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
  echo "Starting the demo service on 0.0.0.0:$port (log: $run/gunicorn.log)"
  (cd examples/agentlocator && set -a && . "$run/agentlocator.env" && set +a &&
   "$root/.venv/bin/python" -m gunicorn AgentLocator.main:app -k sync -w 1 -b "0.0.0.0:$PORT" \
     --timeout 60 --keep-alive 30 --log-level debug --capture-output \
     --error-logfile "$run/gunicorn.log" --pid "$run/gunicorn.pid" --daemon)
  # Wait for the master to say it listens (bounded; no fixed sleep).
  for _ in $(seq 100); do grep -q "Listening at" "$run/gunicorn.log" 2>/dev/null && break; sleep 0.1; done
fi

cat > "$run/inventory.yml" <<INV
all:
  hosts:
    demo:
      ansible_connection: local
      ansible_python_interpreter: $root/.venv/bin/python
      doctor_app: AgentLocator.main:app
      doctor_chdir: $root/examples/agentlocator
      doctor_python: $root/.venv/bin/python
      doctor_env_file: $run/agentlocator.env
      doctor_log_file: $run/gunicorn.log
      doctor_report_dir: $run/reports
INV
.venv/bin/ansible-playbook -i "$run/inventory.yml" playbooks/diagnose.yml "$@"
echo "Reports: $run/reports/demo.json and $run/reports/demo.md"
echo "Stop the demo service: kill \$(cat $run/gunicorn.pid)"
