"""skyctl against a real OpenStack control plane started by up.sh in this folder."""
