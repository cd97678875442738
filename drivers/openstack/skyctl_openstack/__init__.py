"""skyctl's OpenStack driver. The entry point is `skyctl_openstack.driver:OpenStackDriver`;
openstacksdk is imported only by `_sdk`, on the driver's first network call."""
