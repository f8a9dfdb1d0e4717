# Shared by the bench/*.sh scripts (sourced).

# Waits up to 30 s for something to listen on 127.0.0.1:$1.
wait_port() {
  for _ in $(seq 1 300); do
    (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  return 1
}
