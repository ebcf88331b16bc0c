#!/bin/sh
# Runs nginx in its container and carries out the service's requests to validate and reload the
# configuration (no Docker socket, no shared PID namespace): the service writes
#   $DATA/nginx/control/requests/<id>.req   "test <config path>" or "reload <config path>"
# and this script answers in
#   $DATA/nginx/control/results/<id>.res    "ok" or "failed", then nginx's output
# A reload is answered only when every old worker has stopped accepting connections.
set -eu
DATA=${DROPHOST_DATA_DIR:-/var/lib/drophost}
NGX=$DATA/nginx
CTL=$NGX/control
NGINX=${NGINX_BINARY:-nginx}

log() { echo "drophost-watcher: $*" >&2; }

while [ ! -f "$NGX/nginx.conf" ] || [ ! -d "$CTL/requests" ]; do
  log "waiting for the service to write $NGX/nginx.conf"
  sleep 0.5
done

"$NGINX" -e "$NGX/error.log" -c "$NGX/nginx.conf" &
NGINX_PID=$!
trap 'kill -QUIT "$NGINX_PID" 2>/dev/null; wait "$NGINX_PID"; exit 0' TERM INT
log "nginx started (pid $NGINX_PID)"

# Workers of our nginx that still accept connections (not yet "shutting down").
accepting_workers() {
  for dir in /proc/[0-9]*; do
    parent=$(cut -d' ' -f4 "$dir/stat" 2>/dev/null) || continue
    [ "$parent" = "$NGINX_PID" ] || continue
    title=$(tr '\0' ' ' < "$dir/cmdline" 2>/dev/null) || continue
    case "$title" in
      *"shutting down"*) ;;
      *"worker process"*) echo "${dir#/proc/}" ;;
    esac
  done
}

reload_nginx() {
  old=$(accepting_workers)
  kill -HUP "$NGINX_PID"
  tries=0
  while [ $tries -lt 2000 ]; do
    current=$(accepting_workers)
    replaced=yes
    for pid in $old; do
      case " $(echo $current) " in *" $pid "*) replaced=no ;; esac
    done
    if [ $replaced = yes ] && [ -n "$current" ]; then
      return 0
    fi
    tries=$((tries + 1))
    sleep 0.005
  done
  echo "nginx did not replace its workers in time"
  return 1
}

answer() { # id status output
  printf '%s\n%s\n' "$2" "$3" > "$CTL/results/.$1.tmp"
  mv "$CTL/results/.$1.tmp" "$CTL/results/$1.res"
}

while kill -0 "$NGINX_PID" 2>/dev/null; do
  touch "$CTL/heartbeat"
  for request in "$CTL"/requests/*.req; do
    [ -e "$request" ] || continue
    id=$(basename "$request" .req)
    read -r action conf < "$request" || true
    rm -f "$request"
    # Only configs DropHost writes, under its own nginx folder, with plain characters.
    case "$conf" in
      "$NGX"/*) ;;
      *) answer "$id" failed "refused: $conf is not under $NGX"; continue ;;
    esac
    case "$conf" in *[!A-Za-z0-9/._-]*) answer "$id" failed "refused: unexpected characters"; continue ;; esac
    case "$action" in
      test)
        if output=$("$NGINX" -t -q -e "$NGX/error.log" -c "$conf" 2>&1); then
          answer "$id" ok "$output"
        else
          answer "$id" failed "$output"
        fi
        ;;
      reload)
        if output=$(reload_nginx 2>&1); then answer "$id" ok "$output"; else answer "$id" failed "$output"; fi
        ;;
      *) answer "$id" failed "refused: unknown action" ;;
    esac
  done
  sleep 0.01
done
log "nginx exited"
wait "$NGINX_PID"
