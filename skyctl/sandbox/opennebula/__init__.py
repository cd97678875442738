"""The sandbox's OpenNebula-compatible XML-RPC endpoint (`oned` as pyone sees it).

`methods.OpenNebulaFront` serves one `SiteWorld` on loopback over real XML-RPC/HTTP 1.1.
Modules, each importing only those before it: `xmlrpc` (server plumbing, dispatch, error
codes and faults), `template` (oned's template syntax), `views` (the XML bodies and the VM
states they show), `methods` (the `one.*` calls).

Facts this imitates (OpenNebula XML-RPC reference):
- the session string `user:password` is the first argument of every call;
- 0x100 authentication, 0x200 authorization (quota), 0x400 no such object, 0x800 action
  not available in this state, 0x1000 API, 0x2000 internal, 0x4000 allocate;
- pool calls take (filter, start, end[, state, query]); an end below -1 is a page size and
  start then an offset;
- the extra template of `one.template.instantiate` replaces whole attributes of the
  template; attributes that are not part of a VM's TEMPLATE end in its USER_TEMPLATE.

This code is written from oned's documentation and recorded replies, never from the client
driver (drivers/opennebula): where the two look alike, tests must not agree with themselves.
"""
