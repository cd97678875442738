#!/bin/bash
# Start a real OpenStack control plane on loopback for skyctl's integration tier.
#
# Debian 12 packages (OpenStack Zed): Keystone, Glance (file store), Placement, Nova (api,
# conductor, scheduler, compute with the fake virt driver: servers go ACTIVE, nothing boots),
# Neutron server (ML2, no agents), MariaDB and RabbitMQ, all bound to 127.0.0.1 on their
# usual ports. Needs root or sudo for apt-get only; the daemons run as the calling user.
# Idempotent: a second run only starts what is not running (state and databases are kept).
#
# State lives under $SKYCTL_OPENSTACK_DIR (default ~/.cache/skyctl-openstack); every daemon's
# PID is in $DIR/run/NAME.pid and down.sh stops them by those PIDs.
# Afterwards: export OS_CLIENT_CONFIG_FILE=$DIR/clouds.yaml (clouds 'skyctl' = member demo/demo
# in project demo, 'skyctl-admin' = admin/admin). Seeded: flavors m1.tiny/small/medium/large,
# image cirros (1 KiB), shared network skyctl-net.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${SKYCTL_OPENSTACK_DIR:-$HOME/.cache/skyctl-openstack}
mkdir -p "$DIR" && cd "$DIR"
mkdir -p etc/{keystone,nova,placement,glance,neutron/plugins/ml2} log run bin debs \
  state/{fernet-keys,credential-keys,nova/instances,images,glance-cache,glance-tasks,glance-staging,locks,neutron,rabbit,mysql}
cp "$HERE"/stack/wsgi_serve.py "$HERE"/stack/seed.py "$DIR"/
SYSPY=/usr/bin/python3   # the services run on Debian's python, never on a virtualenv's
T0=$(date +%s)
log() { echo "[up +$(( $(date +%s) - T0 ))s] $*"; }

# ---------------------------------------------------------------- 1. packages
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
PKGS="python3-nova python3-keystone python3-placement python3-glance python3-neutron
      python3-openstacksdk rabbitmq-server mariadb-server curl"
missing=$(for p in $PKGS; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
done | tr '\n' ' ')
if [ -n "${missing// /}" ]; then
  log "apt-get install $missing"
  # Keep the packages' scripts from starting system-wide mariadb/rabbitmq: we run our own.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    $SUDO sh -c "printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d"
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  APT0=$(date +%s)
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing \
    > log/apt.log 2>&1 || { tail -20 log/apt.log >&2; exit 1; }
  log "apt-get took $(( $(date +%s) - APT0 ))s"
fi
# The paste pipelines live in the *-common service packages, whose scripts want systemd:
# unpack them without installing.
if [ ! -f debs/.unpacked ]; then
  fetch_common() { (cd debs && apt-get -o APT::Sandbox::User="$(id -un)" download nova-common glance-common \
                    neutron-common >/dev/null 2>&1); }
  fetch_common || { $SUDO apt-get update -qq && fetch_common; }
  (cd debs && for f in *.deb; do dpkg -x "$f" x; done && touch .unpacked)
fi
cp debs/x/usr/share/nova-common/api-paste.ini etc/nova/api-paste.ini
cp debs/x/usr/share/glance-common/glance-api-paste.ini etc/glance/glance-api-paste.ini
cp debs/x/usr/share/neutron-common/api-paste.ini etc/neutron/api-paste.ini
log "packages ready"

# ---------------------------------------------------------------- 2. entry points + config
entry() {  # the console scripts are in the service packages too: call the modules directly
  printf '#!/bin/sh\nexec %s -c "import sys; sys.argv[0]=\\"%s\\"; from %s import main; sys.exit(main())" "$@"\n' \
    "$SYSPY" "$1" "$2" > "bin/$1"
  chmod +x "bin/$1"
}
entry nova-manage nova.cmd.manage; entry nova-api nova.cmd.api; entry nova-conductor nova.cmd.conductor
entry nova-scheduler nova.cmd.scheduler; entry nova-compute nova.cmd.compute
entry glance-manage glance.cmd.manage; entry glance-api glance.cmd.api
entry neutron-server neutron.cmd.eventlet.server; entry neutron-db-manage neutron.db.migration.cli
entry keystone-manage keystone.cmd.manage; entry placement-manage placement.cmd.manage

DB="mysql+pymysql://os:os@127.0.0.1"
RABBIT="rabbit://guest:guest@127.0.0.1:5672/"
SERVICE_AUTH="auth_type = password
auth_url = http://127.0.0.1:5000/v3
project_domain_name = Default
user_domain_name = Default
project_name = admin
username = admin
password = admin
region_name = RegionOne"
AUTHTOKEN="www_authenticate_uri = http://127.0.0.1:5000/
memcached_servers =
$SERVICE_AUTH"
LEGACY_POLICY="[oslo_policy]
enforce_scope = false
enforce_new_defaults = false"

cat > etc/keystone/keystone.conf <<EOF
[DEFAULT]
log_file = $DIR/log/keystone.log
[database]
connection = $DB/keystone
[token]
provider = fernet
expiration = 86400
[fernet_tokens]
key_repository = $DIR/state/fernet-keys
[credential]
key_repository = $DIR/state/credential-keys
EOF
cat > etc/nova/nova.conf <<EOF
[DEFAULT]
transport_url = $RABBIT
compute_driver = fake.FakeDriver
host = fake-host-1
my_ip = 127.0.0.1
state_path = $DIR/state/nova
instances_path = $DIR/state/nova/instances
enabled_apis = osapi_compute
osapi_compute_listen = 127.0.0.1
osapi_compute_listen_port = 8774
osapi_compute_workers = 1
heal_instance_info_cache_interval = -1
instance_usage_audit = false
[api]
auth_strategy = keystone
[api_database]
connection = $DB/nova_api
[database]
connection = $DB/nova
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = 30
[filter_scheduler]
enabled_filters = ComputeFilter,ComputeCapabilitiesFilter,ImagePropertiesFilter
[oslo_concurrency]
lock_path = $DIR/state/locks
[keystone_authtoken]
$AUTHTOKEN
[placement]
$SERVICE_AUTH
[neutron]
$SERVICE_AUTH
[glance]
api_servers = http://127.0.0.1:9292
[wsgi]
api_paste_config = $DIR/etc/nova/api-paste.ini
$LEGACY_POLICY
[vnc]
enabled = false
[oslo_messaging_notifications]
driver = noop
EOF
cat > etc/placement/placement.conf <<EOF
[DEFAULT]
log_file = $DIR/log/placement.log
[api]
auth_strategy = keystone
[placement_database]
connection = $DB/placement
[keystone_authtoken]
$AUTHTOKEN
EOF
cat > etc/glance/glance-api.conf <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = 9292
workers = 1
log_file = $DIR/log/glance-api.log
image_cache_dir = $DIR/state/glance-cache
enabled_backends = fs:file
[database]
connection = $DB/glance
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $DIR/state/images
[os_glance_tasks_store]
filesystem_store_datadir = $DIR/state/glance-tasks
[os_glance_staging_store]
filesystem_store_datadir = $DIR/state/glance-staging
[keystone_authtoken]
$AUTHTOKEN
[paste_deploy]
flavor = keystone
config_file = $DIR/etc/glance/glance-api-paste.ini
$LEGACY_POLICY
EOF
cat > etc/neutron/neutron.conf <<EOF
[DEFAULT]
core_plugin = ml2
service_plugins =
auth_strategy = keystone
bind_host = 127.0.0.1
bind_port = 9696
api_workers = 1
rpc_workers = 0
rpc_state_report_workers = 0
transport_url = $RABBIT
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
api_paste_config = $DIR/etc/neutron/api-paste.ini
state_path = $DIR/state/neutron
log_file = $DIR/log/neutron-server.log
# The agent row inserted below never heartbeats: count agents as alive for good.
agent_down_time = 100000000
[database]
connection = $DB/neutron
[keystone_authtoken]
$AUTHTOKEN
[nova]
$SERVICE_AUTH
[oslo_concurrency]
lock_path = $DIR/state/locks
$LEGACY_POLICY
EOF
cat > etc/neutron/plugins/ml2/ml2_conf.ini <<EOF
[ml2]
type_drivers = flat,vlan,vxlan,local
tenant_network_types = vxlan
mechanism_drivers = openvswitch
extension_drivers = port_security
[ml2_type_flat]
flat_networks = *
[ml2_type_vxlan]
vni_ranges = 1:1000
EOF
cat > etc/my.cnf <<EOF
[mysqld]
user = $(id -un)
datadir = $DIR/state/mysql
socket = $DIR/run/mysqld.sock
pid-file = $DIR/run/mysqld.own.pid
bind-address = 127.0.0.1
port = 3306
log-error = $DIR/log/mysqld.err
skip-name-resolve
innodb_buffer_pool_size = 64M
innodb_log_file_size = 16M
innodb_flush_log_at_trx_commit = 2
max_connections = 500
performance_schema = off
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
[client]
socket = $DIR/run/mysqld.sock
EOF
cat > etc/rabbitmq.conf <<EOF
listeners.tcp.default = 127.0.0.1:5672
loopback_users = none
EOF
echo "[]." > etc/rabbit_enabled_plugins
umask 077
cat > clouds.yaml <<EOF
clouds:
  skyctl-admin:
    auth: {auth_url: "http://127.0.0.1:5000/v3", username: admin, password: admin, project_name: admin,
           user_domain_name: Default, project_domain_name: Default}
    region_name: RegionOne
    identity_api_version: 3
  skyctl:
    auth: {auth_url: "http://127.0.0.1:5000/v3", username: demo, password: demo, project_name: demo,
           user_domain_name: Default, project_domain_name: Default}
    region_name: RegionOne
    identity_api_version: 3
EOF
umask 022
export OS_CLIENT_CONFIG_FILE=$DIR/clouds.yaml

# ---------------------------------------------------------------- 3. daemons
running() { [ -f "run/$1.pid" ] && kill -0 "$(cat "run/$1.pid")" 2>/dev/null; }
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start() {  # start NAME PORT|- CMD...: its own session, so down.sh can end the whole process group
  local name=$1 port=$2; shift 2
  if running "$name"; then log "$name already running (pid $(cat "run/$name.pid"))"; return; fi
  if [ "$port" != - ] && port_taken "$port"; then
    echo "port $port (for $name) is taken by a process this script did not start; stop it first" >&2; exit 1
  fi
  rm -f "run/$name.pid"
  setsid sh -c 'echo $$ > "$0"; exec "$@"' "run/$name.pid" "$@" > "log/$name.out" 2>&1 < /dev/null &
  until [ -s "run/$name.pid" ]; do sleep 0.05; done
  log "started $name (pid $(cat "run/$name.pid"))"
}
wait_for() {  # wait_for NAME SECONDS CMD...
  local name=$1 secs=$2; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then echo "timed out waiting for $name; logs in $DIR/log" >&2; exit 1; fi
    sleep 0.25
  done
  log "$name ready"
}
http_up() { curl -s -o /dev/null --max-time 2 "$1"; }

# ---------------------------------------------------------------- 4. mariadb, rabbitmq
SQL="mariadb --defaults-file=$DIR/etc/my.cnf -uroot"
if [ ! -d state/mysql/mysql ]; then
  mariadb-install-db --defaults-file="$DIR/etc/my.cnf" --user="$(id -un)" --auth-root-authentication-method=normal \
    > log/mysql-install.log 2>&1
fi
start mysqld 3306 mariadbd --defaults-file="$DIR/etc/my.cnf"
# RabbitMQ/epmd: private HOME and loopback-only distribution.
export HOME=$DIR/state/rabbit ERL_EPMD_ADDRESS=127.0.0.1
start epmd 4369 /usr/bin/epmd -address 127.0.0.1
export RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=5672 \
  RABBITMQ_DIST_PORT=25672 RABBITMQ_MNESIA_BASE=$DIR/state/rabbit/mnesia RABBITMQ_LOG_BASE=$DIR/log/rabbit \
  RABBITMQ_CONFIG_FILE=$DIR/etc/rabbitmq RABBITMQ_ENABLED_PLUGINS_FILE=$DIR/etc/rabbit_enabled_plugins \
  RABBITMQ_PID_FILE=$DIR/run/rabbitmq.own.pid \
  RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
  RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
start rabbitmq 5672 /usr/lib/rabbitmq/bin/rabbitmq-server
wait_for mariadb 60 mariadb-admin --defaults-file="$DIR/etc/my.cnf" ping
$SQL -e "CREATE USER IF NOT EXISTS 'os'@'127.0.0.1' IDENTIFIED BY 'os';
$(for d in keystone nova_api nova_cell0 nova placement glance neutron; do
    echo "CREATE DATABASE IF NOT EXISTS $d; GRANT ALL ON $d.* TO 'os'@'127.0.0.1';"; done)"

# ---------------------------------------------------------------- 5. keystone
export OS_PLACEMENT_CONFIG_DIR=$DIR/etc/placement OS_KEYSTONE_CONFIG_FILES=$DIR/etc/keystone/keystone.conf
KM="bin/keystone-manage --config-file $DIR/etc/keystone/keystone.conf"
if [ ! -f state/.keystone-done ]; then
  { $KM db_sync && $KM fernet_setup --keystone-user root --keystone-group root \
    && $KM credential_setup --keystone-user root --keystone-group root \
    && $KM bootstrap --bootstrap-password admin --bootstrap-region-id RegionOne \
         --bootstrap-admin-url http://127.0.0.1:5000/v3 --bootstrap-internal-url http://127.0.0.1:5000/v3 \
         --bootstrap-public-url http://127.0.0.1:5000/v3; } > log/keystone-manage.log 2>&1
  touch state/.keystone-done
  log "keystone database ready"
fi
start keystone 5000 $SYSPY "$DIR/wsgi_serve.py" keystone.server.wsgi:initialize_public_application 5000 keystone
wait_for keystone 60 curl -sf http://127.0.0.1:5000/v3
if [ ! -f state/.catalog-done ]; then $SYSPY seed.py catalog && touch state/.catalog-done; fi

# ---------------------------------------------------------------- 6. schemas
NM="bin/nova-manage --config-file $DIR/etc/nova/nova.conf"
NEUTRON_CONF="--config-file $DIR/etc/neutron/neutron.conf --config-file $DIR/etc/neutron/plugins/ml2/ml2_conf.ini"
if [ ! -f state/.schemas-done ]; then
  { bin/placement-manage --config-file etc/placement/placement.conf db sync
    $NM api_db sync
    $NM cell_v2 map_cell0 --database_connection "$DB/nova_cell0"
    $NM cell_v2 list_cells | grep -q ' cell1 ' || $NM cell_v2 create_cell --name cell1
    $NM db sync
    bin/glance-manage --config-file etc/glance/glance-api.conf db_sync
    bin/neutron-db-manage $NEUTRON_CONF upgrade heads; } > log/db-sync.log 2>&1
  touch state/.schemas-done
  log "database schemas ready"
fi
# A fake, forever-alive OVS agent on the compute host lets ML2/openvswitch bind ports
# (no real agent, no dataplane: addresses are allocated, nothing is plugged).
$SQL neutron -e "INSERT INTO agents (id, agent_type, \`binary\`, topic, host, admin_state_up, created_at,
  started_at, heartbeat_timestamp, configurations, \`load\`, availability_zone, resources_synced)
  SELECT UUID(), 'Open vSwitch agent', 'neutron-openvswitch-agent', 'N/A', 'fake-host-1', 1, UTC_TIMESTAMP(),
  UTC_TIMESTAMP(), UTC_TIMESTAMP(), '{\"bridge_mappings\": {\"public\": \"br-ex\"}, \"tunnel_types\": [\"vxlan\"],
  \"tunneling_ip\": \"127.0.0.1\", \"ovs_hybrid_plug\": false, \"datapath_type\": \"system\",
  \"integration_bridge\": \"br-int\"}', 0, 'nova', 1 FROM DUAL
  WHERE NOT EXISTS (SELECT 1 FROM agents WHERE host='fake-host-1' AND agent_type='Open vSwitch agent')"

# ---------------------------------------------------------------- 7. services
# Order matters: nova-compute registers its resource provider in placement on start and needs
# the conductor, and a server booted before compute finished init_host ends in ERROR.
start placement 8778 $SYSPY "$DIR/wsgi_serve.py" placement.wsgi:init_application 8778 placement
start glance-api 9292 bin/glance-api --config-file etc/glance/glance-api.conf
start neutron-server 9696 bin/neutron-server $NEUTRON_CONF
wait_for rabbitmq 90 /usr/lib/rabbitmq/bin/rabbitmqctl -q -n rabbit@localhost await_startup --timeout 5
SINCE=$($SQL -N -e "SELECT UTC_TIMESTAMP()")
# reported(BINARY): the service has (re)started and reported its state since $SINCE
reported() {
  $SQL -N nova -e "SELECT COUNT(*) FROM services WHERE \`binary\`='$1' AND deleted=0 AND updated_at >= '$SINCE'" \
    | grep -qv '^0$'
}
port_of() { [ "$1" = nova-api ] && echo 8774 || echo -; }
for s in conductor scheduler api; do
  start nova-$s "$(port_of nova-$s)" bin/nova-$s --config-file etc/nova/nova.conf --log-file "$DIR/log/nova-$s.log"
done
wait_for placement 60 http_up http://127.0.0.1:8778/
wait_for nova-conductor 90 reported nova-conductor
start nova-compute - bin/nova-compute --config-file etc/nova/nova.conf --log-file "$DIR/log/nova-compute.log"
wait_for glance 60 http_up http://127.0.0.1:9292/
wait_for neutron 60 http_up http://127.0.0.1:9696/
wait_for nova-api 60 http_up http://127.0.0.1:8774/
wait_for nova-scheduler 90 reported nova-scheduler
wait_for nova-compute 120 reported nova-compute
$NM cell_v2 discover_hosts > log/discover.log 2>&1
if [ ! -f state/.resources-done ]; then $SYSPY seed.py resources && touch state/.resources-done; fi
$SYSPY seed.py probe
log "all services up; export OS_CLIENT_CONFIG_FILE=$DIR/clouds.yaml OS_CLOUD=skyctl"
