"""OpenStack driver (placeholder until issue 4 lands its body)."""
from skyctl.drivers import Driver
