# Runs inside the VM (busybox sh, in /w), after tests/vm/tracer.sh: an untraced
# getppid() loop alone and while sockwatch runs in each mode, interleaved over
# $ROUNDS rounds; then, per mode, a send+recv loop while sockwatch traces another
# name (`other`) and while it traces the loop with a --port that matches none of
# its sockets (`filtered`). Last, the same loop over a unix-domain socketpair,
# alone and while each mode traces another name (`-ip`: with --proto tcp --proto
# udp, no unix-domain hook), and redis-server on a unix socket (below). Prints
# `bench ROUND CONFIG NS_PER_CALL`, `flood ROUND MODE:WHO NS_PER_PAIR` and
# `unixflood ROUND CONFIG NS_PER_PAIR` lines.
round=1
while [ $round -le $ROUNDS ]; do
  for config in none fentry kprobe tracepoint; do
    watch_other $config
    echo "bench $round $config $(./getppid_loop $CALLS | cut -d' ' -f2)"
    stop
  done
  round=$((round + 1))
done
round=1
while [ $round -le $ROUNDS ]; do
  for mode in fentry kprobe; do
    for who in other filtered; do
      if [ $who = other ]; then
        start --probe $mode no-such-process
      else
        start --probe $mode --port 1 send_recv_loop
      fi
      echo "flood $round $mode:$who $(./send_recv_loop $PAIRS | cut -d' ' -f2)"
      stop
    done
  done
  round=$((round + 1))
done
round=1
while [ $round -le $ROUNDS ]; do
  for config in none fentry kprobe tracepoint fentry-ip kprobe-ip; do
    watch_other $config
    echo "unixflood $round $config $(./send_recv_loop $PAIRS unix | cut -d' ' -f2)"
    stop
  done
  round=$((round + 1))
done
# A real server on a unix socket: redis-server, untraced, under redis-benchmark -s
# while each mode traces another name. Prints `redisunix ROUND CONFIG
# SERVER_CPU_NS_PER_REQUEST REQUESTS_PER_S` lines.
./redis-server --port 0 --unixsocket /tmp/redis.sock --save '' --appendonly no > /tmp/redis.log &
redis=$!
until grep -q "eady to accept connections" /tmp/redis.log; do
  kill -0 $redis 2>/dev/null || { echo "redis-server failed"; cat /tmp/redis.log; break; }
  sleep 0.1
done
cpu() { cat /proc/$redis/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f", s }'; }
round=1
while [ $round -le $ROUNDS ]; do
  for config in none fentry kprobe tracepoint; do
    watch_other $config
    before=$(cpu)
    rps=$(./redis-benchmark -s /tmp/redis.sock -t set -n $REQUESTS -c 10 --csv | grep '^"SET"' | cut -d, -f2 | tr -d '"')
    echo "redisunix $round $config $(( ($(cpu) - before) / REQUESTS )) $rps"
    stop
  done
  round=$((round + 1))
done
kill $redis
