"""skyctl's OpenStack driver. The entry point is `skyctl_openstack.driver:OpenStackDriver`;
openstacksdk is imported only by `transport` (and `errors`, when mapping its exceptions), on the
driver's first network call.

Modules by role, the same in every skyctl driver: driver (the Driver class), convert (Nova,
Glance and Neutron JSON -> skyctl.model), errors (the one error mapper), states (the one state
map), transport (the connection).
"""
