#!/bin/sh
# keepalived notify script for xvs: switches the connection sync daemons
# with xvsadm when VRRP moves this director between MASTER and BACKUP.
#
#   notify_master "/etc/keepalived/xvs-notify.sh master IFACE SYNCID"
#   notify_backup "/etc/keepalived/xvs-notify.sh backup IFACE SYNCID"
#   notify_fault  "/etc/keepalived/xvs-notify.sh fault  IFACE SYNCID"
#
# IFACE is the interface the sync messages use (ipvsadm's
# --mcast-interface), SYNCID the cluster's sync id. A fourth argument names
# xvs's control socket when it is not the default (/run/xvs/xvs.sock).
# XVSADM overrides the xvsadm binary (default: xvsadm on PATH).
#
# A master sends its connections; a backup (and a faulty node, which will
# be a backup when it comes back) takes them, and pulls the whole table
# from its peer when it starts. Errors such as "No master sync daemon is
# running" are expected and harmless; the script always succeeds so that
# keepalived's state change is never held up.

role=$1
iface=${2:-eth0}
syncid=${3:-1}
[ -n "$4" ] && export XVS_SOCKET="$4"
xvsadm=${XVSADM:-xvsadm}

# keepalived starts each notify script on its own: two transitions close
# together (BACKUP -> MASTER -> BACKUP at start-up) would run two scripts
# at once, and their stop/start pairs could interleave and leave both
# daemons running. One lock per xvs daemon (per control socket) keeps them
# in the order keepalived started them.
lockdir=/run/lock
[ -d "$lockdir" ] && [ -w "$lockdir" ] || lockdir=/tmp
lock="$lockdir/xvs-notify$(printf '%s' "${XVS_SOCKET:-default}" | tr -c 'A-Za-z0-9' '_').lock"
exec 9>"$lock"
command -v flock >/dev/null 2>&1 && flock -w 10 9

case "$role" in
master)
	"$xvsadm" --stop-daemon backup
	"$xvsadm" --start-daemon master --mcast-interface "$iface" --syncid "$syncid"
	;;
backup|fault)
	"$xvsadm" --stop-daemon master
	"$xvsadm" --start-daemon backup --mcast-interface "$iface" --syncid "$syncid"
	;;
*)
	echo "xvs-notify.sh: unknown role '$role' (master, backup or fault)" >&2
	;;
esac
exit 0
