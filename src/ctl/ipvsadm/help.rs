//! `-h` and `-v`: ipvsadm's help, adapted to what xvs does, with examples.

/// The version line (`-v`).
pub fn version() -> String {
    format!(
        "xvsadm v{} (xvs; ipvsadm v1.31 command language, IPVS v1.2.1 listing format)\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// The help text (`-h`), for program name `prog`.
pub fn help(prog: &str) -> String {
    let p = prog;
    format!(
        "{version}\
Usage:
  {p} -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags]
  {p} -D virtual-service
  {p} -C
  {p} -R
  {p} -S [-n]
  {p} -a|e virtual-service -r server-address [options]
  {p} -d virtual-service -r server-address
  {p} -L|l [virtual-service] [options]
  {p} -Z [virtual-service]
  {p} --set tcp tcpfin udp
  {p} --sloppy-tcp on|off
  {p} --add-laddr|--del-laddr -t|u service-address -z local-address
  {p} --get-laddr [-t|u service-address]
  {p} --reload
  {p} --stats
  {p} -h

Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin (all or nothing)
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values (0 = unchanged)
  --sloppy-tcp on|off         (xvs) IPVS's sloppy_tcp: schedule mid-connection
                              TCP packets of unknown flows (not RST)
  --add-laddr       -P        add a FULLNAT local address to a service
  --del-laddr       -Q        delete a FULLNAT local address
  --get-laddr       -G        list FULLNAT local addresses
  --reload                    re-read the configuration file (as SIGHUP)
  --stats                     (alone) show the daemon's own counters
  --start-daemon state        start connection sync daemon (master|backup)
  --stop-daemon state         stop connection sync daemon (master|backup)
  --sync-status               (xvs) sync status; exit 0 only when in sync
  --help            -h        display this help message
  --version         -v        display the version

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port]
  --udp-service|-u  service-address   service-address is host[:port]
  --fwmark-service|-f fwmark          fwmark is the id (> 0) of a service
                                      group defined in the config file

  host is numeric: 10.0.0.1, 2001:db8::1, or [2001:db8::1]:80 with a port.
  Port 0 (or no port) matches every port and needs -p.

Options:
  --ipv6         -6                   fwmark entry uses IPv6
  --scheduler    -s scheduler         one of {scheds},
                                      the default scheduler is wlc.
  --persistent   -p [timeout]         persistent service (default 300 s)
  --netmask      -M netmask           persistent granularity mask:
                                      255.255.255.0 or 24 (IPv4), 64 (IPv6)
  --sched-flags  -b flags             scheduler flags (comma-separated):
                                      flag-1|sh-fallback|mh-fallback,
                                      flag-2|sh-port|mh-port, flag-3
  --real-server  -r server-address    server-address is host (and port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --fullnat                           full NAT (needs local addresses: -P)
  --tun-type      ipip                the tunnel type (ipip is the only one)
  --weight       -w weight            capacity of real server (0-65535,
                                      0 = no new connections; default 1)
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --laddr        -z local-address     FULLNAT local address (with -P|-Q)
  --proxy-protocol v1|v2              send the real server a PROXY protocol
                                      header first (xvs; -m or --fullnat)
  --synproxy     -j                   answer SYNs with SYN cookies, open a
                                      connection on a valid ACK only (xvs,
                                      as DPVS; with -A|-E, -m or --fullnat)
  --ifname       -F ifname            accepted for DPVS scripts; not used
  --mcast-interface interface         multicast interface for connection sync
  --syncid sid                        syncid for connection sync (default=0:
                                      a backup takes every syncid)
  --sync-maxlen length                Max sync message length (default=1472)
  --mcast-group address               IPv4/IPv6 group (default=224.0.0.81)
  --mcast-port port                   UDP port (default=8848)
  --mcast-ttl ttl                     Multicast TTL (default=1)
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --daemon                            output of daemon information
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --tun-info                          output of tunnel information
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --numeric      -n                   numeric output of addresses and ports
                                      (xvs always prints numbers)

xvs options (anywhere on the line, not part of ipvsadm):
  --socket PATH                       the control socket of `xvs run`
                                      (default /run/xvs/xvs.sock, or $XVS_SOCKET)

Not in xvs: --sctp-service, --ops, --pe, GUE/GRE tunnels.

Examples:
  # NAT: real servers answer through the director
  {p} -A -t 172.16.29.4:80 -s wrr
  {p} -a -t 172.16.29.4:80 -r 192.168.95.2 -m -w 1
  {p} -a -t 172.16.29.4:80 -r 192.168.95.3 -m -w 2
  # DR: real servers hold the VIP on lo and answer the client directly
  {p} -a -t 172.16.29.4:80 -r 172.16.29.10 -g -w 1
  # Persistence per /24 for 10 minutes
  {p} -E -t 172.16.29.4:80 -s wrr -p 600 -M 255.255.255.0
  # FULLNAT: local address first, then the real servers
  {p} --add-laddr -t 10.0.0.100:80 -z 10.0.0.200
  {p} -a -t 10.0.0.100:80 -r 192.168.1.10:8080 --fullnat
  # Look, save, restore
  {p} -L -n
  {p} -L -n --stats
  {p} -S -n > /etc/xvs/rules
  {p} -R < /etc/xvs/rules

Edits are all-or-nothing: a change that would leave the table invalid is
refused with the reason, and nothing changes. Note that -E and -e, like
ipvsadm's, set every attribute: what the line does not say takes its
default (-E without -p turns persistence off; -e without -w sets weight 1).
Exit codes: 0 ok, 1 refused by xvs, 2 bad command line or no daemon.
",
        version = version(),
        scheds = crate::ipvs::sched::names().join("|"),
    )
}
