# Runs inside the VM (busybox sh, in /w): sockwatch around a TCP echo, a refused
# connect, a UDP echo and an exec that drops a socket, then prints its output in
# sections. $SOCKWATCH_ARGS: sockwatch's options.
start_sockwatch() {
  ./sockwatch "$@" > /tmp/out 2> /tmp/err &
  sw=$!
  n=0
  until grep -q "sockwatch: tracing" /tmp/err; do
    n=$((n + 1))
    if [ $n -gt 1200 ] || ! kill -0 $sw 2>/dev/null; then break; fi
    sleep 0.1
  done
}
serve() { # serve PROTO ADDR COUNT: starts echo_server, sets $port and $srv
  rm -f /tmp/ready
  ./echo_server "$@" > /tmp/ready &
  srv=$!
  until [ -s /tmp/ready ]; do sleep 0.05; done
  port=$(cut -d' ' -f2 /tmp/ready)
}

start_sockwatch $SOCKWATCH_ARGS echo_server echo_client nb_connect exec_with_sock
if kill -0 $sw 2>/dev/null; then
  serve tcp 127.0.0.1:0 1
  echo "tcp_port $port"
  ./echo_client tcp 127.0.0.1:$port 5 1000
  wait $srv
  ./nb_connect 127.0.0.1:1
  serve udp 127.0.0.1:0 2
  echo "udp_port $port"
  ./echo_client udp-unconnected 127.0.0.1:$port 7 300
  wait $srv
  serve tcp 127.0.0.1:0 1
  echo "exec_port $port"
  ./exec_with_sock 127.0.0.1:$port 4
  wait $srv
  sleep 0.5
  kill -TERM $sw
fi
wait $sw
echo "sockwatch_rc $?"
echo "--- stdout"
cat /tmp/out
echo "--- stderr"
cat /tmp/err
echo "--- end"
