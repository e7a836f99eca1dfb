#!/bin/sh
# keepalived notify script for xvs: switches the connection sync daemons
# with xvsadm when VRRP moves this director between MASTER and BACKUP.
#
#   notify_master "/etc/keepalived/xvs-notify.sh master IFACE SYNCID VIP"
#   notify_backup "/etc/keepalived/xvs-notify.sh backup IFACE SYNCID VIP"
#   notify_fault  "/etc/keepalived/xvs-notify.sh fault  IFACE SYNCID VIP"
#
# IFACE is the interface the sync messages use (ipvsadm's
# --mcast-interface) and the one the VIP is on; SYNCID the cluster's sync
# id; VIP one of the instance's virtual addresses ("-": none). A fifth
# argument names xvs's control socket when it is not the default
# (/run/xvs/xvs.sock); XVSADM overrides the xvsadm binary (default: xvsadm
# on PATH).
#
# A master sends its connections; a backup (and a faulty node, which will
# be a backup when it comes back) takes them, and pulls the whole table
# from its peer when it starts.
#
# keepalived starts each notify script on its own, so the scripts of two
# transitions close together (BACKUP -> MASTER -> BACKUP while priorities
# settle at start-up) run at the same time, in no particular order. So the
# script takes a lock and then looks at the VIP: keepalived adds it before
# notify_master and removes it before notify_backup, so whichever script
# runs last sets the roles for the state keepalived is in now.

role=$1
iface=${2:-eth0}
syncid=${3:-1}
vip=${4:--}
[ -n "$5" ] && export XVS_SOCKET="$5"
xvsadm=${XVSADM:-xvsadm}

lockdir=/run/lock
[ -d "$lockdir" ] && [ -w "$lockdir" ] || lockdir=/tmp
lock="$lockdir/xvs-notify$(printf '%s' "${XVS_SOCKET:-default}" | tr -c 'A-Za-z0-9' '_').lock"
exec 9>"$lock"
command -v flock >/dev/null 2>&1 && flock -w 10 9

if [ "$vip" != "-" ]; then
	if ip -o addr show dev "$iface" 2>/dev/null | grep -q " $vip/"; then
		role=master
	else
		role=backup
	fi
fi

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
