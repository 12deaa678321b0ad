# The services benchmark's rounds, after tests/vm/tracer.sh: on the host
# (tracepoint mode) and inside the VM (every mode), two busy unix-domain services
# sockwatch does not trace, while it traces another name. dbus-daemon answers
# $CALLS method calls over one connection (stream); rsyslogd takes $MESSAGES
# syslog datagrams from logger. Each service's CPU per call or message, from
# schedstat, interleaved over $ROUNDS rounds. Needs $DIR (a scratch directory
# holding bus.conf, the bus's dbus-daemon configuration),
# $SOCKWATCH, $MODULES (rsyslog's), $CONFIGS (none, a mode, or MODE-ip: with
# --proto tcp --proto udp, no unix-domain hook), $LOGGER (util-linux's logger),
# and dbus-daemon, rsyslogd and the dbus_calls example in PATH. Prints `service
# ROUND NAME CONFIG NS` lines.
lines() { cat "$DIR/messages" 2>/dev/null | wc -l; }
cpu() { cat /proc/$1/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f", s }'; }
waitfor() { # waitfor PATH PID NAME: until the socket PATH exists (10 s at most)
  tries=100
  until [ -S "$1" ]; do
    kill -0 $2 2>/dev/null && [ $tries != 0 ] || { echo "$3 failed"; cat "$DIR/$3.log"; return 1; }
    sleep 0.1
    tries=$((tries - 1))
  done
}
cat > "$DIR/rsyslog.conf" <<EOF
global(workDirectory="$DIR")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="$DIR/log" RateLimit.Interval="0")
*.* action(type="omfile" file="$DIR/messages")
EOF
dbus-daemon --config-file="$DIR/bus.conf" --nofork > "$DIR/dbus.log" 2>&1 &
dbus=$!
rsyslogd -n -M "$MODULES" -f "$DIR/rsyslog.conf" -i "$DIR/rsyslog.pid" > "$DIR/rsyslog.log" 2>&1 &
rsyslog=$!
waitfor "$DIR/bus" $dbus dbus && waitfor "$DIR/log" $rsyslog rsyslog
round=1
while [ $round -le $ROUNDS ]; do
  for config in $CONFIGS; do
    watch_other $config
    before=$(cpu $dbus)
    dbus_calls "$DIR/bus" $CALLS > /dev/null || echo "dbus_calls failed"
    echo "service $round dbus $config $(( ($(cpu $dbus) - before) / CALLS ))"
    # rsyslogd appends to the file it keeps open: emptied, it holds this run's lines.
    : > "$DIR/messages"
    before=$(cpu $rsyslog)
    seq $MESSAGES | "$LOGGER" -d -u "$DIR/log" -t bench
    # Until rsyslogd has written them all (a minute at most): its CPU for the last
    # ones counts too.
    tries=600
    until [ $(lines) -ge $MESSAGES ] || [ $tries = 0 ]; do
      sleep 0.1
      tries=$((tries - 1))
    done
    [ $tries = 0 ] && echo "rsyslogd wrote $(lines) of $MESSAGES"
    echo "service $round rsyslog $config $(( ($(cpu $rsyslog) - before) / MESSAGES ))"
    stop
  done
  round=$((round + 1))
done
kill $dbus $rsyslog
wait $dbus $rsyslog 2>/dev/null
