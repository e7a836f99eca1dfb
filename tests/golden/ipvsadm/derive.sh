#!/usr/bin/env bash
# Derives the golden listings in this folder from ipvsadm 1.31's own
# printf formats (ipvsadm.c: print_title, print_service_entry,
# print_largenum, list_conn/print_conn, list_timeout; DPVS's
# list_laddrs_print_*), written out here in bash's printf, independently
# of xvs's Rust code. The state is the one tests/ipvsadm_golden.rs builds.
#
#   tests/golden/ipvsadm/derive.sh   # rewrites the *.txt fixtures
set -euo pipefail
cd "$(dirname "$0")"

# Services in ipvsadm's sorted order: id|name|sched|flags-and-persistence
SERVICES='S1|TCP  10.0.0.100:0|rr| persistent 300
S2|TCP  10.0.0.100:80|wrr|
S3|TCP  10.0.0.200:80|rr|
S4|UDP  10.0.0.100:53|rr| persistent 600 mask 255.255.255.0
S5|TCP  [2001:db8::100]:443|wrr| (flag-2)
S6|FWM  5|rr|'
# Configuration order (for --nosort): services, and S2's real servers.
NOSORT_SERVICES='S2 S4 S5 S1 S6 S3'

# Real servers, sorted within each service:
# svc|dest|forward|weight|u|l|active|inactive|persist|conns|inpkts|outpkts|inbytes|outbytes|cps|inpps|outpps|inbps|outbps
DESTS='S1|10.0.1.3:0|Tunnel|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0
S2|10.0.1.1:80|Route|1|0|0|12|3|0|1234|98765|0|123456789|0|5|120|0|98000|0
S2|10.0.1.2:80|Route|2|0|0|7|1|0|100000000|2000000000|0|150000000000|0|1|2|0|123456789|0
S3|10.0.2.1:8080|FullNat|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0
S4|10.0.1.1:5353|Masq|1|100|50|0|4|2|4|4|4|300|500|0|0|0|0|0
S5|[2001:db8::10]:8443|Masq|3|0|0|1|0|0|1|10|8|1000|9000|0|0|0|0|250000000000000
S6|10.0.1.4:0|Route|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0'

largenum() { # value exact
    local i=$1
    if [ "$2" = 1 ]; then
        local len=${#i} w
        w=$(( len <= 8 ? 9 : len + 1 ))
        printf "%*s" "$w" "$i"
    elif (( i < 100000000 )); then printf "%9s" "$i"
    elif (( i < 1000000000 )); then printf "%8sK" $(( i / 1000 ))
    elif (( i < 100000000000 )); then printf "%8sM" $(( i / 1000000 ))
    elif (( i < 100000000000000 )); then printf "%8sG" $(( i / 1000000000 ))
    else printf "%8sT" $(( i / 1000000000000 )); fi
}

title() { # format
    case $1 in
    stats) printf "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n" "Prot LocalAddress:Port" Conns InPkts OutPkts InBytes OutBytes ;;
    rate) printf "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n" "Prot LocalAddress:Port" CPS InPPS OutPPS InBPS OutBPS ;;
    thresholds) printf "%-33s %-10s %-10s %-10s %-10s\n  -> RemoteAddress:Port\n" "Prot LocalAddress:Port" Uthreshold Lthreshold ActiveConn InActConn ;;
    pconn) printf "%-33s %-9s %-11s %-10s %-10s\n  -> RemoteAddress:Port\n" "Prot LocalAddress:Port" Weight PersistConn ActiveConn InActConn ;;
    tuninfo) printf "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n" ;;
    *) printf "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" ;;
    esac
}

service() { # id format exact [nosort]
    local id=$1 fmt=$2 exact=$3 nosort=${4:-0} name sched extra
    IFS='|' read -r _ name sched extra < <(grep "^$id|" <<<"$SERVICES")
    local dests
    dests=$(grep "^$id|" <<<"$DESTS")
    if [ "$nosort" = 1 ] && [ "$id" = S2 ]; then dests=$(tac <<<"$dests"); fi
    # A service's figures are its real servers' summed.
    local sum=(0 0 0 0 0 0 0 0 0 0)
    while IFS='|' read -r _ _ _ _ _ _ _ _ _ c ip op ib ob cps ipps opps ibps obps; do
        local v=("$c" "$ip" "$op" "$ib" "$ob" "$cps" "$ipps" "$opps" "$ibps" "$obps")
        for k in 0 1 2 3 4 5 6 7 8 9; do sum[k]=$(( sum[k] + v[k] )); done
    done <<<"$dests"
    case $fmt in
    stats) printf "%-33s" "$name"; for k in 0 1 2 3 4; do largenum "${sum[k]}" "$exact"; done; printf "\n" ;;
    rate) printf "%-33s" "$name"; for k in 5 6 7 8 9; do largenum "${sum[k]}" "$exact"; done; printf "\n" ;;
    *) printf "%s %s%s\n" "$name" "$sched" "$extra" ;;
    esac
    while IFS='|' read -r _ d fwd w u l act inact pers c ip op ib ob cps ipps opps ibps obps; do
        case $fmt in
        stats) printf "  -> %-28s" "$d"; for v in "$c" "$ip" "$op" "$ib" "$ob"; do largenum "$v" "$exact"; done; printf "\n" ;;
        rate) printf "  -> %-28s %8s %8s %8s" "$d" "$cps" "$ipps" "$opps"; largenum "$ibps" "$exact"; largenum "$obps" "$exact"; printf "\n" ;;
        thresholds) printf "  -> %-28s %-10s %-10s %-10s %-10s\n" "$d" "$u" "$l" "$act" "$inact" ;;
        pconn) printf "  -> %-28s %-9s %-11s %-10s %-10s\n" "$d" "$w" "$pers" "$act" "$inact" ;;
        tuninfo)
            local ti=n/a
            [ "$fwd" = Tunnel ] && ti=ipip
            printf "  -> %-28s %-7s %-13s %-6s %-10s %-10s\n" "$d" "$fwd" "$ti" "$w" "$act" "$inact" ;;
        *) printf "  -> %-28s %-7s %-6s %-10s %-10s\n" "$d" "$fwd" "$w" "$act" "$inact" ;;
        esac
    done <<<"$dests"
}

list_all() { # format exact [nosort]
    local order
    order=$(cut -d'|' -f1 <<<"$SERVICES")
    [ "${3:-0}" = 1 ] && order=$NOSORT_SERVICES
    printf "IP Virtual Server version 1.2.1 (size=4096)\n"
    title "$1"
    for id in $order; do service "$id" "$1" "$2" "${3:-0}"; done
}

list_all default 0 >list_n.txt
list_all stats 0 >list_stats.txt
list_all stats 1 >list_stats_exact.txt
list_all rate 0 >list_rate.txt
list_all rate 1 >list_rate_exact.txt
list_all thresholds 0 >list_thresholds.txt
list_all pconn 0 >list_persistent_conn.txt
list_all tuninfo 0 >list_tun_info.txt
list_all default 0 1 >list_nosort.txt
{ title default; service S2 default 0; } >list_service.txt
{ title stats; service S5 stats 0; } >list_service_stats.txt

printf "Timeout (tcp tcpfin udp): %d %d %d\n" 3600 120 60 >timeout.txt

conn() { # proto expire-seconds state client virtual destination
    printf "%-3s %-6s %-11s %-18s %-18s %s\n" "$1" "$(printf "%02d:%02d" $(( $2 / 60 )) $(( $2 % 60 )))" "$3" "$4" "$5" "$6"
}
{
    printf "IPVS connection entries\n"
    printf "pro expire %-11s %-18s %-18s %s\n" state source virtual destination
    conn TCP 899 ESTABLISHED 198.51.100.7:40001 10.0.0.100:80 10.0.1.1:80
    conn UDP 299 UDP 198.51.100.8:5353 10.0.0.100:53 10.0.1.1:5353
    conn TCP 65 FIN_WAIT "[2001:db8::77]:50000" "[2001:db8::100]:443" "[2001:db8::10]:8443"
    conn TCP 300 NONE 198.51.100.9:0 10.0.0.100:0 10.0.1.3:0
} >conns.txt

{
    printf "%-20s %-8s %-20s %-10s %-10s\n" VIP:VPORT TOTAL SNAT_IP CONFLICTS CONNS
    printf "%-20s %-8u \n" 10.0.0.200:80 2
    printf "%-20s %-8s %-20s %-10u %-10u\n" "" "" 10.0.0.250 3 17
    printf "%-20s %-8s %-20s %-10u %-10u\n" "" "" 10.0.0.251 0 0
} >get_laddr.txt

# ipvsadm-save (print_service_entry with FMT_RULE), in configuration
# order, plus xvs's -x/-y and --add-laddr lines (see save.rs).
cat >save.txt <<'RULES'
-A -t 10.0.0.100:80 -s wrr
-a -t 10.0.0.100:80 -r 10.0.1.2:80 -g -w 2
-a -t 10.0.0.100:80 -r 10.0.1.1:80 -g -w 1
-A -u 10.0.0.100:53 -s rr -p 600 -M 255.255.255.0
-a -u 10.0.0.100:53 -r 10.0.1.1:5353 -m -w 1 -x 100 -y 50
-A -t [2001:db8::100]:443 -s wrr -b flag-2
-a -t [2001:db8::100]:443 -r [2001:db8::10]:8443 -m -w 3
-A -t 10.0.0.100:0 -s rr -p 300
-a -t 10.0.0.100:0 -r 10.0.1.3:0 -i -w 1 --tun-type ipip
-A -f 5 -s rr
-a -f 5 -r 10.0.1.4:0 -g -w 1
-A -t 10.0.0.200:80 -s rr
--add-laddr -t 10.0.0.200:80 -z 10.0.0.250
--add-laddr -t 10.0.0.200:80 -z 10.0.0.251
-a -t 10.0.0.200:80 -r 10.0.2.1:8080 --fullnat -w 1
RULES
