# Runs inside the VM (busybox sh, in /w): for each item of $MODES (a --probe value,
# or `auto`; `:perf` after it selects the perf buffer; `:nobody` runs sockwatch as
# uid 65534 with only CAP_BPF and CAP_PERFMON, through util-linux's setpriv),
# sockwatch around the same workloads, then its output in sections:
#   === mode SPEC / key value lines / --- stdout / --- stderr / --- end
NOBODY="./setpriv --reuid=65534 --regid=65534 --clear-groups"
# `at PART SECONDS`: where the scenario is, by the guest's uptime; the test times
# each mode and part by these.
stamp() { echo "at $1 $(cut -d' ' -f1 /proc/uptime)"; }
start_sockwatch() {
  rm -f /tmp/out /tmp/err
  $as ./sockwatch "$@" > /tmp/out 2> /tmp/err &
  sw=$!
  n=0
  until grep -q "sockwatch: tracing" /tmp/err 2>/dev/null; do
    n=$((n + 1))
    if [ $n -gt 1200 ] || ! kill -0 $sw 2>/dev/null; then break; fi
    sleep 0.1
  done
}
ready() { # ready PID FILE: waits for the `ready PORT` line, sets $port
  until [ -s "$2" ]; do
    kill -0 "$1" 2>/dev/null || { echo "workload $1 died"; return 1; }
    sleep 0.05
  done
  port=$(cut -d' ' -f2 "$2")
}
serve() { # serve ARGS...: starts echo_server, sets $srv and $port
  rm -f /tmp/ready
  ./echo_server "$@" > /tmp/ready &
  srv=$!
  ready $srv /tmp/ready
}
serve_two() { # two TCP echo servers of one connection: $s1 on $p1, $srv on $port
  serve tcp 127.0.0.1:0 1
  p1=$port
  s1=$srv
  serve tcp 127.0.0.1:0 1
}

mkdir -p /tmp/www
# --cgroup needs cgroup v2.
mkdir -p /sys/fs/cgroup
grep -q " cgroup2 " /proc/mounts || mount -t cgroup2 none /sys/fs/cgroup
head -c 10000 /dev/zero | tr '\0' x > /tmp/www/file
# netem, from the kernel's own package (scripts/vm-kernel), for real delay and loss.
if insmod ./sch_netem.ko 2> /tmp/insmod; then
  echo "netem_module loaded"
else
  echo "netem_module $(cat /tmp/insmod)"
fi

for spec in $MODES; do
  mode=${spec%%:*}
  buffer=ring
  as=
  case $spec in *:perf*) buffer=perf ;; esac
  paranoid=$(cat /proc/sys/kernel/perf_event_paranoid)
  case $spec in
    *:nobody*)
      as="$NOBODY --inh-caps=-all,+bpf,+perfmon --ambient-caps=-all,+bpf,+perfmon"
      # Debian's level 3 keeps perf events (kprobes) from all but CAP_SYS_ADMIN.
      [ "$mode" = kprobe ] && echo 2 > /proc/sys/kernel/perf_event_paranoid
      ;;
  esac
  probe="--probe $mode"
  [ "$mode" = auto ] && probe=
  echo "=== mode $spec"
  stamp main
  start_sockwatch $probe --buffer $buffer echo_server echo_client nb_connect \
    exec_with_sock release_ways accept_storm httpd wget
  if kill -0 $sw 2>/dev/null; then
    serve tcp 127.0.0.1:0 1
    echo "tcp_port $port"
    ./echo_client tcp 127.0.0.1:$port 5 1000
    wait $srv

    serve tcp [::1]:0 2 --threads
    echo "tcp6_port $port"
    ./echo_client tcp [::1]:$port 11
    ./echo_client tcp [::1]:$port 22
    wait $srv

    ./nb_connect 127.0.0.1:1
    ./nb_connect [::ffff:127.0.0.1]:9 --v6only

    serve udp 127.0.0.1:0 2
    echo "udp_port $port"
    ./echo_client udp-unconnected 127.0.0.1:$port 7 300
    wait $srv
    serve udp [::1]:0 1
    echo "udp6_port $port"
    ./echo_client udp [::1]:$port 9
    wait $srv

    serve tcp 127.0.0.1:0 1
    echo "exec_port $port"
    ./exec_with_sock 127.0.0.1:$port 4
    wait $srv

    serve tcp 127.0.0.1:0 3
    echo "release_port $port"
    ./release_ways 127.0.0.1:$port
    wait $srv

    rm -f /tmp/storm
    ./accept_storm serve 127.0.0.1:0 64 > /tmp/storm &
    storm=$!
    ready $storm /tmp/storm
    echo "storm_port $port"
    ./accept_storm connect 127.0.0.1:$port 64
    wait $storm

    httpd -f -p 127.0.0.1:8080 -h /tmp/www &
    web=$!
    sleep 0.5
    wget -q -O /tmp/got http://127.0.0.1:8080/file
    echo "got_bytes $(wc -c < /tmp/got)"
    # The connection's handler is a child of httpd: let it finish first.
    n=0
    while [ "$(pidof httpd | wc -w)" -gt 1 ] && [ $n -lt 100 ]; do
      n=$((n + 1))
      sleep 0.1
    done
    echo "httpd_child_wait $n"
    kill $web
    wait $web

    sleep 0.5
    kill -TERM $sw
  fi
  wait $sw
  echo "sockwatch_rc $?"
  echo "--- stdout"
  cat /tmp/out
  echo "--- stderr"
  cat /tmp/err
  if ! grep -q "sockwatch: tracing" /tmp/err; then
    # This mode cannot run on this kernel: its refusal is all there is to see.
    echo "$paranoid" > /proc/sys/kernel/perf_event_paranoid
    echo "--- end"
    stamp end
    continue
  fi

  # COMMAND mode with the kernel filters: a grandchild's connects to two ports,
  # one kept by --port; COMMAND's status comes back.
  echo "--- command run"
  stamp command
  serve_two
  echo "cmd_ports $p1 $port"
  $as ./sockwatch $probe --buffer $buffer --no-header -e connect,close --port $p1 \
    --proto tcp --peer 127.0.0.0/8 --cgroup /sys/fs/cgroup -- sh -c \
    "./echo_client tcp 127.0.0.1:$p1 3 > /dev/null; ./echo_client tcp 127.0.0.1:$port 4 > /dev/null; exit 5" \
    > /tmp/out 2> /tmp/err
  echo "cmd_rc $?"
  # Where sockwatch could not start, no client came: the servers wait for none.
  kill $s1 $srv 2>/dev/null
  wait $s1 $srv
  echo "--- command"
  cat /tmp/out
  echo "--- command stderr"
  cat /tmp/err

  # No NAME: --port traces every process behind that port, and no other.
  echo "--- every run"
  stamp every
  serve_two
  start_sockwatch $probe --buffer $buffer -e connect,accept,close --port $p1
  ./echo_client tcp 127.0.0.1:$p1 3 | sed 's/^local /every_local /'
  ./echo_client tcp 127.0.0.1:$port 4 > /dev/null
  wait $s1 $srv
  echo "every_ports $p1 $port"
  kill -INT $sw
  wait $sw
  echo "every_rc $?"
  echo "--- every"
  cat /tmp/out
  echo "--- every stderr"
  cat /tmp/err

  # TCP health on CLOSE: a close with SO_LINGER 0 resets (the client hears of it:
  # a RESET line under its name), and a plain exchange ends with the client's FIN.
  echo "--- ends run"
  stamp ends
  start_sockwatch $probe --buffer $buffer -e close,reset tcp_ends
  for how in linger0 read; do
    rm -f /tmp/ready
    ./tcp_ends listen 127.0.0.1:0 $how 1000 > /tmp/ready &
    srv=$!
    ready $srv /tmp/ready
    ./tcp_ends connect 127.0.0.1:$port 1000 | sed -n "s/^local /ends_${how}_client /p"
    wait $srv
    echo "ends_${how}_port $port"
  done
  kill -INT $sw
  wait $sw
  echo "ends_rc $?"
  echo "--- ends"
  cat /tmp/out
  echo "--- ends stderr"
  cat /tmp/err

  # netem on lo: 20 ms each way makes every RTT 40 ms or more; one packet in ten
  # lost makes retransmits, each on a line under the process that owns the
  # socket, adding up to what its CLOSE says. lo sends up to 64 KiB at once, so a
  # megabyte is a few dozen packets and about one transfer in sixteen loses none
  # of the client's: lossy transfers go on, up to eight, until one retransmits.
  echo "--- netem run"
  stamp netem
  start_sockwatch $probe --buffer $buffer -e close,retrans tcp_ends
  for how in delay loss loss loss loss loss loss loss loss; do
    rm -f /tmp/ready /tmp/client /tmp/go
    bytes=1000
    [ $how = loss ] && bytes=1000000
    ./tcp_ends listen 127.0.0.1:0 read $bytes > /tmp/ready &
    srv=$!
    ready $srv /tmp/ready
    # The delay from the handshake on (every RTT sample has it); the loss once the
    # client is connected (a lost SYN would cost seconds).
    [ $how = delay ] && ./tc qdisc add dev lo root netem delay 20ms
    # Ethernet-sized segments: packets for the loss to choose from.
    [ $how = loss ] && ip link set lo mtu 1500
    ./tcp_ends connect 127.0.0.1:$port $bytes --hold-before /tmp/go > /tmp/client &
    cli=$!
    until grep -q holding /tmp/client || ! kill -0 $cli 2>/dev/null; do sleep 0.05; done
    [ $how = loss ] && ./tc qdisc add dev lo root netem loss 10%
    touch /tmp/go
    wait $cli $srv
    sed -n "s/^local /netem_${how}_client /p" /tmp/client
    echo "netem_${how}_port $port"
    echo "netem_${how}_qdisc $(./tc qdisc show dev lo | grep -o 'netem.*')"
    ./tc qdisc del dev lo root
    ip link set lo mtu 65536
    [ $how = loss ] || continue
    client=$(sed -n 's/^local //p' /tmp/client)
    n=0
    until grep -q "CLOSE *tcp *$client " /tmp/out || [ $n -ge 100 ]; do
      n=$((n + 1))
      sleep 0.05
    done
    grep -q "CLOSE *tcp *$client .* retrans=[1-9]" /tmp/out && break
  done
  kill -INT $sw
  wait $sw
  echo "netem_rc $?"
  echo "--- netem"
  cat /tmp/out
  echo "--- netem stderr"
  cat /tmp/err

  # Who: every event says the uid, parent and cgroup of its process, those made
  # where another task runs (a handshake's end, in softirq) too.
  echo "--- who run"
  stamp who
  serve tcp 127.0.0.1:0 1
  start_sockwatch $probe --buffer $buffer --json -e connect,accept,close echo_server echo_client
  $NOBODY ./echo_client tcp 127.0.0.1:$port 5 > /dev/null
  wait $srv
  echo "who_shell $$"
  kill -INT $sw
  wait $sw
  echo "who_rc $?"
  echo "--- who"
  cat /tmp/out
  echo "--- who stderr"
  cat /tmp/err

  # -c: the kernel adds sends and receives up per row; none crosses one by one.
  echo "--- tally run"
  stamp tally
  serve tcp 127.0.0.1:0 1
  echo "tally_port $port"
  $as ./sockwatch $probe --buffer $buffer -c --no-header -e send,recv -- sh -c \
    "./echo_client tcp 127.0.0.1:$port 1000 2000 --repeat 50 > /dev/null" > /tmp/out 2> /tmp/err
  echo "tally_rc $?"
  kill $srv 2>/dev/null
  wait $srv
  echo "--- tally"
  cat /tmp/out
  echo "--- tally stderr"
  cat /tmp/err

  # Unix-domain sockets of every kind: paths, peers, bytes (examples/unix_sockets).
  echo "--- unix run"
  stamp unix
  rm -rf /tmp/ux
  mkdir -p /tmp/ux
  chmod 777 /tmp/ux
  $as ./sockwatch $probe --buffer $buffer -- sh -c "./unix_sockets /tmp/ux > /tmp/ux/out" \
    > /tmp/out 2> /tmp/err
  echo "unix_rc $?"
  sed 's/^/unix_/' /tmp/ux/out
  echo "--- unix"
  cat /tmp/out
  echo "--- unix stderr"
  cat /tmp/err
  # -c over them: the owner's stream and seqpacket bytes add up in the kernel under
  # their path, the rest (datagrams, a passed socket) as events, in the same rows.
  rm -rf /tmp/ux
  mkdir -p /tmp/ux
  chmod 777 /tmp/ux
  $as ./sockwatch $probe --buffer $buffer -c --no-header -e send,recv -- \
    sh -c "./unix_sockets /tmp/ux > /tmp/ux/out" > /tmp/out 2> /tmp/err
  echo "uxtally_rc $?"
  sed 's/^/uxtally_/' /tmp/ux/out
  echo "--- uxtally"
  cat /tmp/out
  echo "--- uxtally stderr"
  cat /tmp/err
  # The same with unix-domain sockets left out: none of their hooks is loaded.
  rm -rf /tmp/ux
  mkdir -p /tmp/ux
  chmod 777 /tmp/ux
  $as ./sockwatch $probe --buffer $buffer --proto tcp --proto udp -- \
    sh -c "./unix_sockets /tmp/ux > /dev/null" > /tmp/out 2> /tmp/err
  echo "ipunix_rc $?"
  echo "--- ipunix"
  cat /tmp/out
  echo "--- ipunix stderr"
  cat /tmp/err

  # Releases: a close while another thread reads (let go when the read gives up),
  # and bytes received with splice(), as COMMAND's tree.
  echo "--- release run"
  stamp release
  serve_two
  echo "release_ports $p1 $port"
  rm -f /tmp/t1 /tmp/t2
  $as ./sockwatch $probe --buffer $buffer --no-header -- sh -c \
    "./thread_close 127.0.0.1:$p1 1500 > /tmp/t1; ./splice_recv 127.0.0.1:$port 100000 > /tmp/t2" \
    > /tmp/out 2> /tmp/err
  echo "release_rc $?"
  kill $s1 $srv 2>/dev/null
  wait $s1 $srv
  sed 's/^local/thread_local/' /tmp/t1
  sed 's/^local/splice_local/' /tmp/t2
  echo "--- release"
  cat /tmp/out
  echo "--- release stderr"
  cat /tmp/err

  # 64 threads blocked in recv() at once, then 1000+i bytes to each: every byte
  # received is counted (a return probe with room for them all), or the returns
  # missed are.
  echo "--- blocked run"
  stamp blocked
  rm -f /tmp/blocked
  $as ./sockwatch $probe --buffer $buffer --no-header -e recv,close -- sh -c \
    "./blocked_recv 64 > /tmp/blocked" > /tmp/out 2> /tmp/err
  echo "blocked_rc $?"
  sed 's/^/blocked_/' /tmp/blocked
  echo "--- blocked"
  cat /tmp/out
  echo "--- blocked stderr"
  cat /tmp/err

  # A full socket table costs CLOSE lines only: 51 connects, one tracked.
  echo "--- churn run"
  stamp churn
  serve tcp 127.0.0.1:0 51
  echo "churn_port $port"
  $as ./sockwatch $probe --buffer $buffer --no-header -e connect --max-sockets 1 -- \
    sh -c "./socket_churn 127.0.0.1:$port 100 50 > /dev/null" > /tmp/out 2> /tmp/err
  echo "churn_rc $?"
  kill $srv 2>/dev/null
  wait $srv
  echo "--- churn"
  cat /tmp/out
  echo "--- churn stderr"
  cat /tmp/err

  # A reader stopped while COMMAND floods, then makes a forbidden connect: events
  # are lost, and the kernel's matching still fails the run (exit 4).
  echo "--- stall run"
  stamp stall
  serve tcp 127.0.0.1:0 1
  rm -f /tmp/started /tmp/done
  $as ./sockwatch $probe --buffer $buffer --buffer-size 16K --no-header \
    --forbid 'connect rport=1' -- sh -c \
    "touch /tmp/started; sleep 1; ./echo_client tcp 127.0.0.1:$port 1 --repeat 2000 > /dev/null; ./echo_client tcp 127.0.0.1:1 1 2> /dev/null; touch /tmp/done" \
    > /tmp/out 2> /tmp/err &
  stalled=$!
  # Stopped once COMMAND runs (it starts only after the ready line).
  n=0
  until [ -e /tmp/started ] || [ $n -gt 1200 ] || ! kill -0 $stalled 2>/dev/null; do
    n=$((n + 1))
    sleep 0.1
  done
  kill -STOP $stalled 2>/dev/null
  # Until COMMAND is done (or sockwatch could not start at all).
  n=0
  while [ ! -e /tmp/done ] && kill -0 $stalled 2>/dev/null && [ $n -lt 600 ]; do
    n=$((n + 1))
    sleep 0.1
  done
  kill -CONT $stalled 2>/dev/null
  kill $srv 2>/dev/null
  wait $srv
  wait $stalled
  echo "stall_rc $?"
  echo "--- stall"
  cat /tmp/out
  echo "--- stall stderr"
  cat /tmp/err

  # --allow: a connect outside it fails with EPERM inside COMMAND (the guest has
  # no route out: without the hook it would fail with ENETUNREACH). Attaching to
  # a cgroup needs CAP_NET_ADMIN, which the nobody runs do not have.
  if [ -z "$as" ]; then
    echo "--- deny run"
    stamp deny
    serve tcp 127.0.0.1:0 1
    ./sockwatch $probe --buffer $buffer --no-header -e connect,deny \
      --allow 'connect peer=127.0.0.0/8' -- sh -c \
      "./echo_client tcp 127.0.0.1:$port 1 > /dev/null; ./echo_client tcp 10.1.2.3:80 1 2> /tmp/cerr; true" \
      > /tmp/out 2> /tmp/err
    echo "deny_rc $?"
    kill $srv 2>/dev/null
    wait $srv
    echo "deny_client $(grep -o 'code: [0-9]*' /tmp/cerr)"
    echo "deny_cgroups_left $(ls /sys/fs/cgroup | grep -c sockwatch)"
    echo "--- deny"
    cat /tmp/out
    echo "--- deny stderr"
    cat /tmp/err
  fi
  echo "$paranoid" > /proc/sys/kernel/perf_event_paranoid
  echo "--- end"
  stamp end
done

# Without CAP_PERFMON, the error names it; so does Debian's perf_event_paranoid 3
# for kprobes (asked of the boot that runs the non-root modes).
if [ -n "$NONROOT_ERRORS" ] && [ -x ./setpriv ]; then
  echo "nocap_error $($NOBODY --inh-caps=-all,+bpf --ambient-caps=-all,+bpf ./sockwatch x 2>&1)"
  echo "paranoid_error $($NOBODY --inh-caps=-all,+bpf,+perfmon --ambient-caps=-all,+bpf,+perfmon \
    ./sockwatch --probe kprobe x 2>&1)"
fi
