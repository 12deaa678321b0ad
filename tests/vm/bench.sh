# Runs inside the VM (busybox sh, in /w): an untraced getppid() loop alone and
# while sockwatch runs in each mode, interleaved over $ROUNDS rounds.
# Prints `bench ROUND CONFIG NS_PER_CALL` lines.
round=1
while [ $round -le $ROUNDS ]; do
  for config in none fentry kprobe tracepoint; do
    if [ $config != none ]; then
      rm -f /tmp/err
      ./sockwatch --probe $config no-such-process > /dev/null 2> /tmp/err &
      sw=$!
      until grep -q "sockwatch: tracing" /tmp/err 2>/dev/null; do
        kill -0 $sw 2>/dev/null || { echo "bench $round $config failed"; cat /tmp/err; break; }
        sleep 0.1
      done
    fi
    echo "bench $round $config $(./getppid_loop $CALLS | cut -d' ' -f2)"
    if [ $config != none ]; then
      kill -TERM $sw
      wait $sw
    fi
  done
  round=$((round + 1))
done
