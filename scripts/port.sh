# Sourced by the walk-through scripts: port prints a loopback TCP port nothing listens on
# (a connection to it is refused), chosen below the kernel's ephemeral range, where an
# outgoing connection's source port could take it between the probe and the daemon's bind.
port() {
  local low=32768 p
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  while :; do
    p=$((10000 + RANDOM % (low - 10000)))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
