"""Into the VMs over SSH (paramiko, imported lazily so `skyctl --help` never pays for it).

target: where and as whom to log in (and the system ssh's argv); hostkeys: skyctl's known-hosts
file and the console's fingerprints; session: connect, authenticate, run one command;
transfer: commands and SFTP copies on many nodes. Waiting for nodes to be ready is
skyctl.ops.ready (it asks the cloud too).
"""
