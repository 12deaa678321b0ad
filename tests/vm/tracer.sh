# The benchmarks' scripts begin with this: sockwatch started and stopped around a
# workload. SOCKWATCH: the binary (./sockwatch unless set); its stderr goes to
# DIR (/tmp unless set).
start() { # start ARGS...: sockwatch, until it is tracing
  err=${DIR:-/tmp}/sockwatch.err
  rm -f "$err"
  "${SOCKWATCH:-./sockwatch}" "$@" > /dev/null 2> "$err" &
  sw=$!
  until grep -q "sockwatch: tracing" "$err" 2>/dev/null; do
    kill -0 $sw 2>/dev/null || { echo "sockwatch $* failed"; cat "$err"; break; }
    sleep 0.1
  done
}
stop() { # stop: the sockwatch start began, if any
  if [ -n "$sw" ]; then
    kill -TERM $sw
    wait $sw
    sw=
  fi
}
watch_other() { # watch_other CONFIG: start, tracing another name in CONFIG
  # none: no sockwatch; MODE; MODE-ip: with --proto tcp --proto udp (no unix-domain hook)
  case $1 in
    none) ;;
    *-ip) start --probe ${1%-ip} --proto tcp --proto udp no-such-process ;;
    *) start --probe $1 no-such-process ;;
  esac
}
sw=
