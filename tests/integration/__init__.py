"""Integration tier: skyctl against real services (marker `integration`, own CI step)."""
