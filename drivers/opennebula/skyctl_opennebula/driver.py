"""OpenNebula driver (placeholder until issue 5 lands its body)."""
from skyctl.drivers import Driver
