#!/bin/bash
# Stop what up.sh started, by the PIDs it recorded in $DIR/run (each daemon leads its own
# session and process group, so its workers go with it). Exits non-zero if anything it started
# is still alive afterwards. --purge also deletes the state (databases, queues, images, logs):
# the next up.sh starts afresh but keeps the installed packages.
DIR=${SKYCTL_OPENSTACK_DIR:-$HOME/.cache/skyctl-openstack}
cd "$DIR" 2>/dev/null || exit 0
# Clients before the services they use; the database and the queue last.
NAMES="nova-compute nova-scheduler nova-conductor nova-api neutron-server glance-api placement keystone
       rabbitmq epmd mysqld"
group_alive() { kill -0 -- "-$1" 2>/dev/null || kill -0 "$1" 2>/dev/null; }
pid_of() { [ -f "run/$1.pid" ] && cat "run/$1.pid"; }

# All at once (each takes ~2 s to shut down cleanly), then wait, then KILL what is left.
for name in $NAMES; do
  pid=$(pid_of "$name") || continue
  if [ -n "$pid" ] && group_alive "$pid"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  else
    rm -f "run/$name.pid"
  fi
done
for _ in $(seq 1 80); do   # up to 20 s
  alive=0
  for name in $NAMES; do pid=$(pid_of "$name") && group_alive "$pid" && alive=1; done
  [ "$alive" = 0 ] && break
  sleep 0.25
done
left=()
for name in $NAMES; do
  pid=$(pid_of "$name") || continue
  if group_alive "$pid"; then
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
    # A loaded machine may take a few seconds to reap a killed group (neutron-server's workers).
    for _ in $(seq 1 20); do group_alive "$pid" || break; sleep 0.25; done
    if group_alive "$pid"; then left+=("$name($pid)"); continue; fi
    echo "stopped $name (pid $pid, after SIGKILL)"
  else
    echo "stopped $name (pid $pid)"
  fi
  rm -f "run/$name.pid"
done
if [ ${#left[@]} -gt 0 ]; then echo "still running: ${left[*]}" >&2; exit 1; fi
if [ "${1:-}" = "--purge" ]; then rm -rf state log run etc bin clouds.yaml; echo "state purged"; fi
exit 0
