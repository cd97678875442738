"""skyctl's OpenNebula driver. The entry point is `skyctl_opennebula.driver:OpenNebulaDriver`;
pyone is imported only by `transport` (and `errors`, when mapping its exceptions), on the
driver's first call.

Modules by role, the same in every skyctl driver: driver (the Driver class), convert (oned's XML
-> skyctl.model), errors (the one error mapper), states (the one state map), transport (the
connection); auth (endpoint and ONE_AUTH) and template (the VM template sent) are OpenNebula's own.
"""
