"""What a sandbox VM is, seen from inside: `access` (who may log in, from what the context
delivered; pure), `boot` (when the context counts as applied), `sftp` (the rooted file server),
`server` (the SSH server every VM answers on) and `loopback` (one such guest on a loopback port
of the caller's choosing, outside any sandbox cloud)."""
