# Runs inside the VM (busybox sh, in /w): an untraced getppid() loop alone and
# while sockwatch runs in each mode, interleaved over $ROUNDS rounds; then, per
# mode, a send+recv loop while sockwatch traces another name (`other`) and while
# it traces the loop with a --port that matches none of its sockets (`filtered`).
# Last, the same loop over a unix-domain socketpair, alone and while each mode
# traces another name (`-ip`: with --proto tcp --proto udp, no unix-domain hook). Prints `bench ROUND CONFIG NS_PER_CALL`,
# `flood ROUND MODE:WHO NS_PER_PAIR` and `unixflood ROUND CONFIG NS_PER_PAIR` lines.
start() { # start ARGS...: sockwatch, until it is tracing
  rm -f /tmp/err
  ./sockwatch "$@" > /dev/null 2> /tmp/err &
  sw=$!
  until grep -q "sockwatch: tracing" /tmp/err 2>/dev/null; do
    kill -0 $sw 2>/dev/null || { echo "sockwatch $* failed"; cat /tmp/err; break; }
    sleep 0.1
  done
}
round=1
while [ $round -le $ROUNDS ]; do
  for config in none fentry kprobe tracepoint; do
    [ $config != none ] && start --probe $config no-such-process
    echo "bench $round $config $(./getppid_loop $CALLS | cut -d' ' -f2)"
    if [ $config != none ]; then
      kill -TERM $sw
      wait $sw
    fi
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
      kill -TERM $sw
      wait $sw
    done
  done
  round=$((round + 1))
done
round=1
while [ $round -le $ROUNDS ]; do
  for config in none fentry kprobe tracepoint fentry-ip kprobe-ip; do
    case $config in
      none) ;;
      *-ip) start --probe ${config%-ip} --proto tcp --proto udp no-such-process ;;
      *) start --probe $config no-such-process ;;
    esac
    echo "unixflood $round $config $(./send_recv_loop $PAIRS unix | cut -d' ' -f2)"
    if [ $config != none ]; then
      kill -TERM $sw
      wait $sw
    fi
  done
  round=$((round + 1))
done
